package eth

import (
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
