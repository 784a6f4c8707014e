package hub

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// TestHub: three members (two dialled, one accepted); a frame from each
// reaches the other two and not itself.
func TestHub(t *testing.T) {
	var ls [2]net.Listener
	conns := make(chan net.Conn, 2)
	h := New()
	defer h.Close()
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls[i] = l
		go func() {
			c, err := l.Accept()
			if err == nil {
				conns <- c
			}
		}()
		if err := h.Dial(l.Addr().String(), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	addr, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	members := []net.Conn{<-conns, <-conns, c3}
	// wait until the accepted member is joined
	for deadline := time.Now().Add(2 * time.Second); ; {
		h.mu.Lock()
		n := len(h.members)
		h.mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, from := range members {
		frame := []byte{byte(i), 1, 2, 3, 4, 5}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
		if _, err := from.Write(append(hdr[:], frame...)); err != nil {
			t.Fatal(err)
		}
		for j, to := range members {
			if j == i {
				continue
			}
			to.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4+len(frame))
			if _, err := io.ReadFull(to, buf); err != nil {
				t.Fatalf("frame %d at member %d: %v", i, j, err)
			}
			if binary.BigEndian.Uint32(buf) != uint32(len(frame)) || buf[4] != byte(i) {
				t.Fatalf("frame %d at member %d: %x", i, j, buf)
			}
		}
	}
	// nothing came back to a sender
	members[0].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := members[0].Read(make([]byte, 16)); err == nil {
		t.Fatalf("member 0 got %d bytes back", n)
	}
	if _, err := h.Listen("0.0.0.0:0"); err == nil {
		t.Error("listened beyond 127.0.0.1")
	}
}
