package node

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/shmring"
)

// keptPair is shmPair with the echo at b over sockets: every flow mapping
// in this process is then node a's or its programs'.
func keptPair(t *testing.T) string {
	t.Setenv("OURO_SHM", "0")
	sockA := shmPair(t, 0)
	t.Setenv("OURO_SHM", "1")
	return sockA
}

// allocReused allocates flows to "echo" on b, closing each, until one
// goes over rings kept from the one before (the node keeps them once it
// saw the flow's socket close, a moment after Close), at most 100 times;
// it returns that flow and the flow mappings counted just before it.
func allocReused(t *testing.T, b *flow.SocketBroker) (p *flow.ShmPort, before int) {
	t.Helper()
	for range 100 {
		before = flowMappings(t)
		port, _, err := b.Alloc(context.Background(), "echo", flow.BestEffort())
		if err != nil {
			t.Fatal(err)
		}
		sp, ok := port.(*flow.ShmPort)
		if !ok {
			t.Fatalf("flow is a %T, want shared rings", port)
		}
		if sp.Reused() {
			return sp, before
		}
		echoes(t, sp)
		sp.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no flow in 100 went over rings kept from the flow before")
	return nil, 0
}

// TestGatewayKeptRings: a program's closed flow leaves its rings with the
// program and its node's session, and a next flow goes over them: its
// allocation maps nothing new, its SDUs arrive intact, also after the
// flow before left SDUs unread in both rings. The rings are freed when
// the session ends. A program that does not keep rings
// ($OURO_SHM_KEEP=0) never gets kept ones.
func TestGatewayKeptRings(t *testing.T) {
	sockA := keptPair(t)
	base := flowMappings(t)
	a, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	p1, _, err := a.Alloc(context.Background(), "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, p1)
	// Left behind: an SDU the echo answers that nobody reads, and one
	// more written as the flow closes.
	p1.Write([]byte("unread"), time.Now().Add(time.Second))
	time.Sleep(50 * time.Millisecond)
	p1.Write([]byte("late"), time.Now().Add(time.Second))
	p1.Close()

	p, before := allocReused(t, a)
	if got := flowMappings(t); got > before {
		t.Fatalf("a flow over kept rings made %d new mappings", got-before)
	}
	// Nothing of the flows before: the first SDU read is the echo's
	// answer to this flow's first.
	echoes(t, p)
	bp := flow.BatchPort(p)
	var sdus [][]byte
	for i := range 100 { // round the rings, more than once
		sdus = append(sdus, []byte{byte(i), 9})
	}
	go bp.WriteBatch(sdus, time.Now().Add(5*time.Second))
	buf := make([]byte, flow.MaxSDU)
	for i := range sdus {
		n, err := p.Read(buf, time.Now().Add(5*time.Second))
		if err != nil || n != 2 || buf[0] != byte(i) {
			t.Fatalf("SDU %d over kept rings: %v %v", i, buf[:n], err)
		}
	}
	p.Close()

	// A program without the feature: new rings every time.
	t.Setenv("OURO_SHM_KEEP", "0")
	old, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		port, _, err := old.Alloc(context.Background(), "echo", flow.BestEffort())
		if err != nil {
			t.Fatal(err)
		}
		if sp, ok := port.(*flow.ShmPort); !ok || sp.Reused() {
			t.Fatalf("a program that keeps no rings got %T (reused)", port)
		}
		echoes(t, port)
		port.Close()
		time.Sleep(10 * time.Millisecond)
	}
	old.Close()

	// Ending the sessions frees what they kept, on both sides.
	a.Close()
	waitFor(t, "kept rings left after the sessions ended", func() bool { return flowMappings(t) == base })
}

// TestGatewayKeptRingsHostile speaks the node socket by hand with
// SockFeatureKeep. A program scribbles over the rings it keeps after
// closing their flow (indexes, flags), and its next flow over them still
// carries an SDU there and back: the node empties them before it hands
// them out again (without that the node finds impossible indexes and
// breaks the flow). A list of more rings than a program keeps, or one
// that does not decode, is refused with ErrInvalid. Another session
// listing the same numbers gets new rings, never the first program's.
func TestGatewayKeptRingsHostile(t *testing.T) {
	sockA := keptPair(t)
	h := dialHand(t, sockA, flow.SockFeatureShm|flow.SockFeatureKeep)
	resp, fds := h.flow(t, nil)
	id := h.ringsID(t, resp)
	if len(fds) != 6 || id == 0 {
		t.Fatalf("first flow: %d descriptors, rings %d; want 6 and a number", len(fds), id)
	}
	m, err := shmring.Open(fds[1])
	if err != nil {
		t.Fatal(err)
	}
	evs := [4]int(fds[2:6])
	syscall.Close(fds[0]) // the flow closes: the node keeps its rings
	time.Sleep(100 * time.Millisecond)
	mem := m.Bytes()
	for i := 256; i < 4096; i++ { // both rings' headers
		mem[i] = 0xa5
	}
	resp, fds = h.flow(t, []uint64{id})
	if got := h.ringsID(t, resp); got != id || len(fds) != 1 {
		t.Fatalf("second flow: rings %d with %d descriptors, want rings %d with 1", got, len(fds), id)
	}
	t.Cleanup(func() { syscall.Close(fds[0]) })
	e, err := shmring.NewEnd(m, shmring.Program, evs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Release)
	if err := e.Send([]byte("again"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, flow.MaxSDU)
	if n, err := e.Recv(buf, time.Now().Add(5*time.Second)); err != nil || string(buf[:n]) != "again" {
		t.Fatalf("the echo over rings kept and scribbled on: %q, %v", buf[:n], err)
	}

	for _, body := range [][]byte{mustCBOR(t, []uint64{1, 2, 3, 4, 5}), mustCBOR(t, "not a list")} {
		r, fds := h.call(t, flow.SockReq{Op: flow.SockAlloc, Name: "echo", QoS: flow.BestEffort(), Body: body})
		closeAll(fds)
		if err := r.Err.Err(); !errors.Is(err, flow.ErrInvalid) {
			t.Fatalf("an allocation listing %x: %v, want ErrInvalid", body, err)
		}
	}

	other := dialHand(t, sockA, flow.SockFeatureShm|flow.SockFeatureKeep)
	_, fds = other.flow(t, []uint64{id, id + 1, id + 2})
	closeAll(fds)
	if len(fds) != 6 {
		t.Fatalf("another session listing the first's rings got %d descriptors, want new rings (6)", len(fds))
	}
}

// hand is a program that speaks the node socket by hand.
type hand struct {
	c     *net.UnixConn
	codec flow.Codec
	next  uint64
}

// dialHand opens a session at sock announcing features.
func dialHand(t *testing.T, sock string, features uint64) *hand {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &hand{c: c, codec: flow.NewCodec()}
	if r, _ := h.call(t, flow.SockReq{Op: flow.SockHello, Body: mustCBOR(t, features)}); r.Err.Err() != nil {
		t.Fatal(r.Err.Err())
	}
	return h
}

// call sends req and returns its answer and the descriptors with it.
func (h *hand) call(t *testing.T, req flow.SockReq) (flow.SockResp, []int) {
	t.Helper()
	h.next++
	req.ID = h.next
	b, _ := h.codec.Marshal(req)
	if _, err := h.c.Write(b); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, flow.MaxControlMsg), make([]byte, syscall.CmsgSpace(4*6))
	for {
		h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, oobn, _, _, err := h.c.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		var resp flow.SockResp
		if err := h.codec.Unmarshal(buf[:n], &resp); err != nil {
			t.Fatal(err)
		}
		var fds []int
		msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			got, _ := syscall.ParseUnixRights(&m)
			fds = append(fds, got...)
		}
		if resp.ID == req.ID {
			return resp, fds
		}
		closeAll(fds)
	}
}

// flow allocates a flow to "echo", listing kept.
func (h *hand) flow(t *testing.T, kept []uint64) (flow.SockResp, []int) {
	t.Helper()
	req := flow.SockReq{Op: flow.SockAlloc, Name: "echo", QoS: flow.BestEffort()}
	if kept != nil {
		req.Body = mustCBOR(t, kept)
	}
	resp, fds := h.call(t, req)
	if err := resp.Err.Err(); err != nil {
		t.Fatal(err)
	}
	return resp, fds
}

// ringsID is the number of the flow's rings in resp.
func (h *hand) ringsID(t *testing.T, resp flow.SockResp) uint64 {
	t.Helper()
	var id uint64
	if err := h.codec.Unmarshal(resp.Body, &id); err != nil {
		t.Fatalf("the rings' number: %v", err)
	}
	return id
}

func mustCBOR(t *testing.T, v any) []byte {
	t.Helper()
	b, err := flow.NewCodec().Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}
