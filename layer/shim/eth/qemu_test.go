package eth

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

func framed(b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return append(out, b...)
}

// TestQEMUListenReconnect: the listening side reads QEMU framing, survives
// its peer going away (and a peer speaking garbage) and serves the next.
func TestQEMUListenReconnect(t *testing.T) {
	d, err := ListenQEMU("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteFrame(make([]byte, 60)); err == nil {
		t.Fatal("write without a peer succeeded")
	}
	got := make(chan string, 4)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := d.ReadFrame(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	for i, peer := range []struct {
		send []byte
		want string
	}{
		{append(framed([]byte("first")), 0, 0), "first"}, // then a torn header
		{[]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, ""},    // not QEMU framing: dropped
		{framed([]byte("third")), "third"},
	} {
		c, err := net.Dial("tcp", d.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(peer.send)
		if peer.want != "" {
			select {
			case s := <-got:
				if s != peer.want {
					t.Fatalf("peer %d: got %q, want %q", i, s, peer.want)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("peer %d: nothing read", i)
			}
		}
		c.Close()
	}
	d.Close()
	for range got {
	}
}

// TestQEMUConnectReconnect: the connecting side dials its peer again
// when the stream ends (a restarted VM or node), and stops dialling when
// closed.
func TestQEMUConnectReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	d, err := DialQEMU(t.Context(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := d.ReadFrame(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	for i, word := range []string{"first", "second"} {
		var c net.Conn
		select {
		case c = <-accepted:
		case <-time.After(3 * time.Second):
			t.Fatalf("peer %d: the device did not (re)connect", i)
		}
		c.Write(framed([]byte(word)))
		select {
		case s := <-got:
			if s != word {
				t.Fatalf("peer %d: got %q", i, s)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("peer %d: nothing read", i)
		}
		c.Close() // the peer restarts
	}
	ln.Close()
	d.Close()
	select {
	case _, ok := <-got:
		if ok {
			t.Fatal("read a frame after close")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("ReadFrame still dialling after Close")
	}
}

// TestQEMUDialWaits: DialQEMU dials until its peer listens (a node
// started before its VM), and gives up when its context ends.
func TestQEMUDialWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens yet
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if _, err := DialQEMU(ctx, addr, nil); err == nil {
		t.Fatal("DialQEMU succeeded with nobody listening")
	}
	cancel()
	accepted := make(chan net.Conn, 1)
	time.AfterFunc(150*time.Millisecond, func() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			accepted <- nil
			return
		}
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := DialQEMU(ctx, addr, nil)
	if err != nil {
		t.Fatalf("DialQEMU with the peer listening 150ms later: %v", err)
	}
	defer d.Close()
	if c := <-accepted; c != nil {
		c.Close()
	}
}
