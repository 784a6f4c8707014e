//go:build kerneldebug

package kernel

import "testing"

func TestDebugUseAfterTransfer(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ra := mustSlot(t, a, "r")
	mustPanic := func(t *testing.T, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("got no panic, want one")
			}
		}()
		f()
	}
	x, _ := a.AllocBuf()
	keep := x
	if n, err := a.Push(ra, []*Buf{x}); n != 1 || err != nil {
		t.Fatalf("Push: %d, %v", n, err)
	}
	t.Run("Bytes after push", func(t *testing.T) { mustPanic(t, func() { keep.Bytes() }) })
	t.Run("Extend after push", func(t *testing.T) { mustPanic(t, func() { keep.Extend(1) }) })
	t.Run("push again", func(t *testing.T) { mustPanic(t, func() { a.Push(ra, []*Buf{keep}) }) })
	t.Run("free by the sender", func(t *testing.T) { mustPanic(t, func() { a.FreeBuf(keep) }) })
	out := make([]*Buf, 1)
	if n, _ := b.Pop(mustSlot(t, b, "r"), out); n != 1 {
		t.Fatalf("Pop: got %d, want 1", n)
	}
	t.Run("free by a non-holder after pop", func(t *testing.T) { mustPanic(t, func() { a.FreeBuf(out[0]) }) })
	out[0].Bytes() // the consumer may
	b.FreeBuf(out[0])
	t.Run("Bytes after free", func(t *testing.T) { mustPanic(t, func() { keep.Bytes() }) })
}
