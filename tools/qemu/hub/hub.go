// Package hub is an Ethernet hub for QEMU socket streams, in process: the
// counterpart of QEMU's own hub (-netdev hubport) for hosted nodes. Every
// member is a TCP connection carrying QEMU's stream framing (a 4-byte
// big-endian length, then the frame); a frame read from one member is
// written to every other member. The images/router QEMU tests use it to
// put a hosted node in the place of a VM whose one NIC sits on a QEMU hub
// with several socket streams, so that both runs have the same topology
// (one segment, one hub hop).
//
// Only 127.0.0.1 is dialled or listened on.
package hub

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxFrame bounds a frame's length prefix (QEMU's NET_BUFSIZE is 68 KiB).
const maxFrame = 69632

// Hub joins its members' frames. The zero value is not usable: New.
type Hub struct {
	mu      sync.Mutex // guards members, closed, ls
	members []*member
	ls      []net.Listener
	closed  bool
	wg      sync.WaitGroup

	// Frames counts frames read from members; Dropped frames a member
	// could not take (its write failed).
	Frames, Dropped atomic.Uint64
}

type member struct {
	c  net.Conn
	mu sync.Mutex // serialises writes
}

// New returns an empty hub.
func New() *Hub { return &Hub{} }

func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		return fmt.Errorf("hub: address %q: only 127.0.0.1 is allowed", addr)
	}
	return nil
}

// Dial connects to a stream listener (QEMU -netdev socket,listen=, or a
// node's qemu_listen) and adds it, retrying for up to wait.
func (h *Hub) Dial(addr string, wait time.Duration) error {
	if err := loopback(addr); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			return h.add(c)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hub: dial %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Listen accepts members (QEMU -netdev socket,connect=, or a node's
// qemu_connect) on addr ("127.0.0.1:0" for any port) until Close, and
// returns the address it listens on.
func (h *Hub) Listen(addr string) (string, error) {
	if err := loopback(addr); err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		l.Close()
		return "", net.ErrClosed
	}
	h.ls = append(h.ls, l)
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if h.add(c) != nil {
				return
			}
		}
	}()
	return l.Addr().String(), nil
}

func (h *Hub) add(c net.Conn) error {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	m := &member{c: c}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		c.Close()
		return net.ErrClosed
	}
	h.members = append(h.members, m)
	h.wg.Add(1)
	h.mu.Unlock()
	go h.read(m)
	return nil
}

// read forwards m's frames to the other members until m's stream ends.
func (h *Hub) read(m *member) {
	defer h.wg.Done()
	defer m.c.Close()
	buf := make([]byte, 4+maxFrame)
	var others []*member
	for {
		if _, err := io.ReadFull(m.c, buf[:4]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(buf[:4])
		if n > maxFrame {
			return
		}
		if _, err := io.ReadFull(m.c, buf[4:4+n]); err != nil {
			return
		}
		h.Frames.Add(1)
		h.mu.Lock()
		others = others[:0]
		for _, o := range h.members {
			if o != m {
				others = append(others, o)
			}
		}
		h.mu.Unlock()
		for _, o := range others {
			o.mu.Lock()
			o.c.SetWriteDeadline(time.Now().Add(time.Second))
			_, err := o.c.Write(buf[:4+n])
			o.mu.Unlock()
			if err != nil {
				h.Dropped.Add(1)
			}
		}
	}
}

// Close ends every member's stream and listener and waits for the hub's
// goroutines.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	for _, l := range h.ls {
		l.Close()
	}
	for _, m := range h.members {
		m.c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}
