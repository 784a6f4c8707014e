package identity

import "testing"

// TestMemo: Get finds what Put remembered under the same bytes' key and
// nothing under others; at its bound the Memo starts over.
func TestMemo(t *testing.T) {
	var m Memo[int]
	if _, ok := m.Get(MemoKey([]byte("a"))); ok {
		t.Fatal("an empty Memo remembers something")
	}
	m.Put(MemoKey([]byte("a")), 1, 2)
	m.Put(MemoKey([]byte("b")), 2, 2)
	if v, ok := m.Get(MemoKey([]byte("a"))); !ok || v != 1 {
		t.Fatalf("a: %d %v, want 1 true", v, ok)
	}
	if _, ok := m.Get(MemoKey([]byte("c"))); ok {
		t.Fatal("c found, never put")
	}
	m.Put(MemoKey([]byte("c")), 3, 2) // full: starts over
	if _, ok := m.Get(MemoKey([]byte("a"))); ok || m.Len() != 1 {
		t.Fatalf("after the bound: a still there or %d entries, want only c", m.Len())
	}
}
