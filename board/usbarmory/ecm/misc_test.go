package ecm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

func TestMACs(t *testing.T) {
	for i := 0; i < 256; i++ {
		key := sha256.Sum256([]byte{byte(i)})
		key[0], key[6] = byte(i), byte(255-i) // every first-octet bit pattern
		dev, host, err := MACs(key[:])
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range [][]byte{dev, host} {
			if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
				t.Fatalf("key %d: %v is not a locally administered unicast address", i, m)
			}
		}
		if bytes.Equal(dev, host) {
			t.Fatalf("key %d: device and host MAC both %v", i, dev)
		}
		if !bytes.Equal(dev[1:], key[1:6]) || !bytes.Equal(host[1:], key[7:12]) {
			t.Fatalf("key %d: got %v %v, want bytes of the key", i, dev, host)
		}
		dev2, host2, _ := MACs(key[:])
		if !bytes.Equal(dev, dev2) || !bytes.Equal(host, host2) {
			t.Fatalf("key %d: not deterministic", i)
		}
	}
	t.Run("equal halves", func(t *testing.T) {
		key := []byte{2, 1, 2, 3, 4, 5, 2, 1, 2, 3, 4, 5}
		dev, host, _ := MACs(key)
		if bytes.Equal(dev, host) {
			t.Errorf("got equal MACs %v", dev)
		}
	})
	t.Run("short key", func(t *testing.T) {
		if _, _, err := MACs(make([]byte, 11)); !errors.Is(err, ErrShortKey) {
			t.Errorf("got %v, want ErrShortKey", err)
		}
	})
}

func TestNotifications(t *testing.T) {
	if got, want := NetworkConnection(0, true), []byte{0xa1, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00}; !bytes.Equal(got, want) {
		t.Errorf("NetworkConnection up: got % x, want % x", got, want)
	}
	if got, want := NetworkConnection(3, false), []byte{0xa1, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00}; !bytes.Equal(got, want) {
		t.Errorf("NetworkConnection down: got % x, want % x", got, want)
	}
	got := ConnectionSpeedChange(0, 480000000, 480000000)
	want := []byte{0xa1, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00,
		0x00, 0x38, 0x9c, 0x1c, 0x00, 0x38, 0x9c, 0x1c} // 480000000 = 0x1c9c3800
	if !bytes.Equal(got, want) {
		t.Errorf("ConnectionSpeedChange: got % x, want % x", got, want)
	}
	if len(got) > NotifyMaxPacket {
		t.Errorf("ConnectionSpeedChange is %d bytes, endpoint takes %d", len(got), NotifyMaxPacket)
	}
}

func TestQueue(t *testing.T) {
	q := NewQueue(2, 8)
	frame := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

	t.Run("fifo and drops", func(t *testing.T) {
		if !q.Put(frame(1, 3)) || !q.Put(frame(2, 8)) {
			t.Fatal("Put into an empty queue failed")
		}
		if q.Put(frame(3, 1)) {
			t.Error("Put into a full queue succeeded")
		}
		if q.Put(frame(4, 9)) {
			t.Error("Put of a frame longer than the buffers succeeded")
		}
		if got := q.Drops(); got != 1 {
			t.Errorf("Drops %d, want 1", got)
		}
		if got := q.TooLong(); got != 1 {
			t.Errorf("TooLong %d, want 1", got)
		}
		a, ok := q.TryGet()
		if !ok || !bytes.Equal(a, frame(1, 3)) {
			t.Fatalf("first frame %v %v, want 01 01 01", a, ok)
		}
		// a is still ours: the queue has one free buffer... none, until Release
		if q.Put(frame(5, 1)) {
			t.Error("Put succeeded while every buffer was held")
		}
		q.Release(a)
		if !q.Put(frame(6, 2)) {
			t.Error("Put after Release failed")
		}
		for _, want := range [][]byte{frame(2, 8), frame(6, 2)} {
			f, ok := q.Get(nil, nil)
			if !ok || !bytes.Equal(f, want) {
				t.Errorf("got % x, want % x", f, want)
			}
			q.Release(f)
		}
	})
	t.Run("get waits", func(t *testing.T) {
		go func() { time.Sleep(10 * time.Millisecond); q.Put(frame(7, 1)) }()
		f, ok := q.Get(nil, nil)
		if !ok || f[0] != 7 {
			t.Errorf("got % x %v", f, ok)
		}
		q.Release(f)
	})
	t.Run("timeout and close", func(t *testing.T) {
		if _, ok := q.Get(nil, time.After(time.Millisecond)); ok {
			t.Error("Get on an empty queue returned a frame")
		}
		closed := make(chan struct{})
		close(closed)
		if _, ok := q.Get(closed, nil); ok {
			t.Error("Get after close returned a frame")
		}
	})
	t.Run("no allocations", func(t *testing.T) {
		f := frame(8, 8)
		if n := testing.AllocsPerRun(1000, func() {
			q.Put(f)
			b, _ := q.TryGet()
			q.Release(b)
		}); n != 0 {
			t.Errorf("%v allocations per frame, want 0", n)
		}
	})
}
