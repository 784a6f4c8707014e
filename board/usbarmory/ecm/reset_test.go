package ecm

import (
	"bytes"
	"testing"
)

// The gadget's reset (usbarmory.ECM.Reset) is these three pieces of
// protocol state started over; the hardware is not touched.

// TestQueueFlush: Flush drops the frames waiting, frees their buffers
// (the queue takes as many frames again) and leaves a frame the caller
// holds alone.
func TestQueueFlush(t *testing.T) {
	q := NewQueue(3, 8)
	for i := range 3 {
		if !q.Put([]byte{byte(i)}) {
			t.Fatalf("Put %d into an empty queue failed", i)
		}
	}
	held, _ := q.TryGet()
	if q.Put([]byte{9}) {
		t.Fatal("Put succeeded with two frames waiting and one held")
	}
	if n := q.Flush(); n != 2 {
		t.Errorf("Flush dropped %d frames, want 2", n)
	}
	if q.Len() != 0 {
		t.Errorf("Len %d after Flush, want 0", q.Len())
	}
	if _, ok := q.TryGet(); ok {
		t.Error("a frame came out after Flush")
	}
	// Two buffers free (the held one is still the caller's).
	if !q.Put([]byte{11}) || !q.Put([]byte{12}) || q.Put([]byte{13}) {
		t.Error("after Flush the queue does not take exactly the two frames its free buffers hold")
	}
	if held[0] != 0 {
		t.Errorf("the frame held across the Flush changed: % x", held)
	}
	q.Release(held)
	if n := q.Flush(); n != 2 {
		t.Errorf("second Flush dropped %d, want 2", n)
	}
	if !q.Put([]byte{14}) || !q.Put([]byte{15}) || !q.Put([]byte{16}) {
		t.Error("after the held buffer's Release and a Flush the queue does not take three frames")
	}
}

// TestReceiverReset: a reset in the middle of an oversize frame makes
// the next transfer a frame; without it, it is taken for the tail.
func TestReceiverReset(t *testing.T) {
	asked := RxBufferSize(512)
	for _, reset := range []bool{false, true} {
		var r Receiver
		if v := r.Transfer(asked, asked); v != Oversize {
			t.Fatalf("a full buffer: %v, want oversize", v)
		}
		if reset {
			r.Reset()
		}
		want := Tail
		if reset {
			want = Frame
		}
		if v := r.Transfer(100, asked); v != want {
			t.Errorf("reset %v: the next short transfer is %v, want %v", reset, v, want)
		}
		if v := r.Transfer(100, asked); v != Frame {
			t.Errorf("reset %v: the one after is %v, want frame", reset, v)
		}
	}
}

// TestNotifierReset: the notification sequence runs once (connection up,
// speed, then nothing) and again after Reset.
func TestNotifierReset(t *testing.T) {
	var n Notifier
	check := func(what string) {
		t.Helper()
		if got, want := n.Next(CommInterface, true), NetworkConnection(CommInterface, true); !bytes.Equal(got, want) {
			t.Errorf("%s: first notification % x, want NetworkConnection up % x", what, got, want)
		}
		if got, want := n.Next(CommInterface, false), ConnectionSpeedChange(CommInterface, 12_000_000, 12_000_000); !bytes.Equal(got, want) {
			t.Errorf("%s: second notification % x, want ConnectionSpeedChange at 12 Mbit/s % x", what, got, want)
		}
		for i := range 3 {
			if got := n.Next(CommInterface, true); got != nil {
				t.Errorf("%s: notification %d after the sequence: % x, want none", what, i+3, got)
			}
		}
	}
	check("after Init")
	n.Reset()
	check("after Reset")
}
