package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/shmring"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

// shmPair starts node a (gateway at the returned socket, sessions of
// sessionBufs buffers) and node b with a program serving "echo" on its
// socket; a's directory names b's echo.
func shmPair(t *testing.T, sessionBufs int) (sockA string) {
	t.Helper()
	dir := t.TempDir()
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pa, pb), GatewayWith(sockA, GatewayOptions{SessionBufs: sessionBufs}, logx.Test(t)))
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), Gateway(sockB, logx.Test(t)))
	b, err := flow.Dial(sockB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			p, _, err := b.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				defer p.Close()
				buf := make([]byte, flow.MaxSDU)
				for {
					n, err := p.Read(buf, time.Time{})
					if err != nil {
						return
					}
					if err := p.Write(buf[:n], time.Time{}); err != nil && !errors.Is(err, flow.ErrBusy) {
						return
					}
				}
			}()
		}
	}()
	return sockA
}

// echoes checks that p carries SDUs of several sizes to the echo and back.
func echoes(t *testing.T, p flow.Port) {
	t.Helper()
	buf := make([]byte, flow.MaxSDU+1)
	for _, size := range []int{1, 64, 1400} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if err := p.Write(msg, time.Now().Add(3*time.Second)); err != nil {
			t.Fatalf("write %d bytes: %v", size, err)
		}
		n, err := p.Read(buf, time.Now().Add(3*time.Second))
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("echo of %d bytes: got %d, %v", size, n, err)
		}
	}
}

// flowMappings counts this process's mappings of flows' shared rings.
func flowMappings(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "memfd:ouro-flow")
}

// flowMappingSizes counts this process's mappings of flows' shared rings
// by size in bytes.
func flowMappingSizes(t *testing.T) map[int]int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[int]int{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.Contains(line, "memfd:ouro-flow") {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(line, "%x-%x", &lo, &hi); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		sizes[int(hi-lo)]++
	}
	return sizes
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %s", what)
		}
	}
}

// TestGatewayShm: a program that announces shared rings gets its flows
// as mappings while its session's budget covers them, and as sockets
// beyond; a closed flow's mapping is unmapped and its charge returned;
// a program that does not announce them (an old one) gets sockets. Its
// programs do not keep their rings between flows (TestGatewayKeptRings
// is the test of programs that do).
func TestGatewayShm(t *testing.T) {
	t.Setenv("OURO_SHM_KEEP", "0")
	// Room for one deep mapping and the flows' buffers, not for a second
	// mapping of either shape.
	shapes := shmShapes(flow.MaxSDU, kernel.BufSize)
	deep, shallow := shapes[0], shapes[1]
	sockA := shmPair(t, deep.charge+shallow.charge/2)
	base := flowMappings(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p1, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p1.(*flow.ShmPort); !ok {
		t.Fatalf("first flow is a %T, want shared rings", p1)
	}
	// Node a's and the program's, node b's and the echo's (which may
	// map it a moment after the allocation returned here).
	waitFor(t, "not 4 mappings for one flow", func() bool { return flowMappings(t) == base+4 })
	echoes(t, p1)
	// A batch, more than the rings hold, echoed in order.
	bp := p1.(flow.BatchPort)
	var sdus [][]byte
	for i := range 40 {
		sdus = append(sdus, []byte{byte(i), 1, 2, 3})
	}
	go func() {
		if n, err := bp.WriteBatch(sdus, time.Now().Add(5*time.Second)); err != nil || n != len(sdus) {
			t.Errorf("batch write: %d, %v", n, err)
		}
	}()
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, flow.MaxSDU)
	}
	sizes := make([]int, 8)
	for got := 0; got < len(sdus); {
		n, err := bp.ReadBatch(bufs, sizes, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("batch read after %d: %v", got, err)
		}
		for i := range n {
			if !bytes.Equal(bufs[i][:sizes[i]], sdus[got]) {
				t.Fatalf("SDU %d: %v", got, bufs[i][:sizes[i]])
			}
			got++
		}
	}

	p2, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p2.(*flow.SeqpacketPort); !ok {
		t.Fatalf("second flow, no budget left for a mapping, is a %T, want a socket", p2)
	}
	echoes(t, p2)

	p1.Close()
	// p2's far end at b (node b's and the echo's) stays.
	waitFor(t, "the closed flow's mappings are still there", func() bool { return flowMappings(t) == base+2 })
	// Its charge came back: the next flow gets a mapping again.
	p3, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p3.(*flow.ShmPort); !ok {
		t.Fatalf("flow after the first closed is a %T, want shared rings", p3)
	}
	echoes(t, p3)
	p2.Close()
	p3.Close()

	// An old program: no hello, sockets only.
	t.Setenv("OURO_SHM", "0")
	old, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	p4, _, err := old.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p4.(*flow.SeqpacketPort); !ok {
		t.Fatalf("flow of a program without the hello is a %T, want a socket", p4)
	}
	echoes(t, p4)
	p4.Close()
	waitFor(t, "mappings left in the node", func() bool { return flowMappings(t) == base })
}

const shmChildEnv = "OURO_TEST_SHM_CHILD"

// TestGatewayShmChild is the program TestGatewayShmProgramKilled kills:
// it allocates a flow with shared rings, floods it without reading (the
// node's side then waits for room in the program's ring), says "ready"
// and waits to be killed.
func TestGatewayShmChild(t *testing.T) {
	sock := os.Getenv(shmChildEnv)
	if sock == "" {
		t.Skip("run by TestGatewayShmProgramKilled")
	}
	b, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, _, err := b.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*flow.ShmPort); !ok {
		t.Fatalf("flow is a %T", p)
	}
	for i := 0; i < 200; i++ {
		p.Write(make([]byte, 1000), time.Now().Add(100*time.Millisecond))
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
}

// TestGatewayShmProgramKilled kills a program mid-flow (SIGKILL: nothing
// closed on its side): the node unmaps the flow's rings, deallocates the
// flow and ends the session. Without the node watching the flow's socket,
// the mapping and the flow stay until the node stops (run once so).
func TestGatewayShmProgramKilled(t *testing.T) {
	t.Setenv("OURO_SHM_KEEP", "0") // the echo's too: nothing kept at b
	sockA := shmPair(t, 0)
	base := flowMappings(t)
	child := exec.Command(os.Args[0], "-test.run", "^TestGatewayShmChild$", "-test.v", "-test.count=1")
	child.Env = append(os.Environ(), shmChildEnv+"="+sockA)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = child.Stdout
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log("child:", sc.Text())
			if sc.Text() == "ready" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the child ended before it was ready")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the child is not ready after 20 s")
	}
	// Node a's, node b's and the echo's (the child's is in the child).
	waitFor(t, "not 3 mappings for the child's flow", func() bool { return flowMappings(t) == base+3 })
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()

	waitFor(t, "the killed program's mapping is still in the node", func() bool { return flowMappings(t) == base })
	m, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, "the killed program's flow is still allocated", func() bool {
		var flows ipcp.MgmtResp
		err := m.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: ipcp.CmdFlows}, &flows)
		return err == nil && len(flows.Table.Rows) == 0
	})
}

// TestGatewayShmHostile is a program that speaks the node socket by hand
// and scribbles over its flow's mapping (indexes, lengths, flags): its
// flow breaks or drops SDUs, while another program's flow on the same
// node carries on intact.
func TestGatewayShmHostile(t *testing.T) {
	sockA := shmPair(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	gp, _, err := good.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	defer gp.Close()

	fc, m, fds := handShmFlow(t, sockA)
	mem := m.Bytes()
	// Scribble: every header word and slot length, many times, and wake
	// the node's side each time (ring 0's data eventfd).
	wake := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for round := 0; round < 200; round++ {
		for i := 0; i < 4096; i += 4 {
			mem[i], mem[i+1], mem[i+2], mem[i+3] = byte(round), byte(i), 0xff, byte(round*7)
		}
		for i := 4096; i+4 <= len(mem); i += 1408 {
			mem[i], mem[i+1], mem[i+2], mem[i+3] = byte(round*3), byte(round), byte(i), 0
		}
		syscall.Write(fds[2], wake)
		syscall.Write(fds[5], wake)
	}
	// The node broke the hostile flow off: it closed its end.
	fc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := fc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the hostile flow's socket: %v, want end of file", err)
	}
	// The other program's flow is untouched.
	echoes(t, gp)
	// And the node is alive for new flows.
	p, _, err := good.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, p)
	p.Close()
}

// handShmFlow speaks the node socket at sock by hand, as a program that
// follows no library would: it announces shared rings, allocates a flow
// to "echo" and returns the flow's socket, its mapping and the six
// descriptors it came with (all closed when the test ends).
func handShmFlow(t *testing.T, sock string) (net.Conn, *shmring.Mapping, []int) {
	t.Helper()
	_, fds := dialHand(t, sock, flow.SockFeatureShm).flow(t, nil)
	if len(fds) != 6 {
		t.Fatalf("the flow came with %d descriptors, want 6", len(fds))
	}
	fsock := os.NewFile(uintptr(fds[0]), "flow")
	fc, err := net.FileConn(fsock)
	fsock.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	m, err := shmring.Open(fds[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	for _, fd := range fds[2:] {
		t.Cleanup(func() { syscall.Close(fd) })
	}
	return fc, m, fds
}

// TestGatewayShmBatchBadLength: a program writes a run of SDUs into its
// ring by hand, two of them with impossible lengths (past a slot, and
// 2^32-1), and publishes the run at once: the node's batch read drops
// those two, carries the others to the echo in order, and the flow goes
// on carrying SDUs. Without the node checking each length it reads out
// of its slot and the session's component faults (the flow then closes
// and nothing comes back).
func TestGatewayShmBatchBadLength(t *testing.T) {
	sockA := shmPair(t, 0)
	_, m, fds := handShmFlow(t, sockA)
	mem, g := m.Bytes(), m.Geometry()
	// The layout of docs/wire/node-socket.md: ring i's header at
	// 256+256i (head, then the consumer's tail 128 bytes on), slots of
	// 8+MaxSDU bytes rounded to 64 from 4096, ring 0's then ring 1's.
	ss := (8 + g.MaxSDU + 63) &^ 63
	word64 := func(off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&mem[off])) }
	slot := func(ring, i int) []byte {
		off := 4096 + (ring*g.Slots+i%g.Slots)*ss
		return mem[off : off+ss]
	}
	wake := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	lengths := []uint32{5, 6, uint32(g.MaxSDU + 1), 7, 0xffffffff, 8}
	put := func(i int, l uint32) {
		s := slot(0, i)
		binary.LittleEndian.PutUint32(s, l)
		for j := 8; j < 8+int(min(l, 16)); j++ {
			s[j] = byte(i)
		}
	}
	for i, l := range lengths {
		put(i, l)
	}
	word64(256).Store(uint64(len(lengths))) // ring 0's head: the run at once
	syscall.Write(fds[2], wake)
	// The echo's answers arrive in ring 1.
	want := []int{0, 1, 3, 5}
	echoed := func(n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d SDUs echoed", n), func() bool { return word64(512).Load() >= uint64(n) })
	}
	echoed(len(want))
	time.Sleep(200 * time.Millisecond) // anything more would be here by now
	if h := word64(512).Load(); h != uint64(len(want)) {
		t.Fatalf("%d SDUs echoed, want %d (the bad lengths dropped)", h, len(want))
	}
	check := func(k, i int) {
		t.Helper()
		s := slot(1, k)
		l := binary.LittleEndian.Uint32(s)
		if int(l) != int(lengths[i]) || !bytes.Equal(s[8:8+l], bytes.Repeat([]byte{byte(i)}, int(l))) {
			t.Fatalf("echo %d: %d bytes %v, want SDU %d (%d bytes)", k, l, s[8:8+min(l, 16)], i, lengths[i])
		}
	}
	for k, i := range want {
		check(k, i)
	}
	word64(512 + 128).Store(uint64(len(want))) // ring 1's tail: read
	// The flow goes on.
	lengths = append(lengths, 9)
	put(6, 9)
	word64(256).Store(uint64(len(lengths)))
	syscall.Write(fds[2], wake)
	echoed(len(want) + 1)
	check(len(want), 6)
}

// TestGatewaySocketRuns: a program without shared rings (a socket per
// flow) floods 200 SDUs at the echo while the echoes come back: the
// gateway moves them out of the flow's ring in runs, and every one
// arrives, in order.
func TestGatewaySocketRuns(t *testing.T) {
	sockA := shmPair(t, 0)
	t.Setenv("OURO_SHM", "0")
	a, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, ok := p.(*flow.SeqpacketPort); !ok {
		t.Fatalf("flow is a %T, want a socket", p)
	}
	const total = 200
	go func() {
		for i := range total {
			msg := []byte{byte(i), byte(i >> 8), 1, 2, 3}
			if err := p.Write(msg, time.Now().Add(5*time.Second)); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
		}
	}()
	buf := make([]byte, flow.MaxSDU)
	for i := range total {
		n, err := p.Read(buf, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("echo %d of %d: %v", i, total, err)
		}
		if n != 5 || int(buf[0])|int(buf[1])<<8 != i {
			t.Fatalf("echo %d: %v", i, buf[:n])
		}
	}
}

// TestGatewayShmShapes: a session's first flow gets deep rings; once its
// budget has no room for another deep mapping, the next flow gets
// shallow ones, and with room for neither a socket.
func TestGatewayShmShapes(t *testing.T) {
	shapes := shmShapes(flow.MaxSDU, kernel.BufSize)
	deep, shallow := shapes[0], shapes[1]
	if deep.geo.Slots <= shallow.geo.Slots || deep.charge <= shallow.charge {
		t.Fatalf("shapes %+v: the first is not the deeper", shapes)
	}
	sockA := shmPair(t, deep.charge+shallow.charge+shallow.charge/2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	before := flowMappingSizes(t)
	for i, want := range []string{"deep", "shallow", "socket"} {
		p, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, shm := p.(*flow.ShmPort); shm != (want != "socket") {
			t.Fatalf("flow %d is a %T, want %s", i, p, want)
		}
		echoes(t, p)
	}
	// Node a's and this program's: a deep and a shallow one; node b's and
	// the echo's, in a default session (256 buffers: two deep, then
	// shallow): two deep and a shallow one.
	got := flowMappingSizes(t)
	if n := got[shallow.geo.Size()] - before[shallow.geo.Size()]; n != 4 {
		t.Errorf("%d new mappings of %d bytes (shallow), want 4: a's and the program's of the second flow, b's and the echo's of the third (%v)", n, shallow.geo.Size(), got)
	}
	if n := got[deep.geo.Size()] - before[deep.geo.Size()]; n != 6 {
		t.Errorf("%d new mappings of %d bytes (deep), want 6: a's and the program's of the first flow, b's and the echo's of the first two (%v)", n, deep.geo.Size(), got)
	}
}

// TestGatewayFailedAllocLeavesNothing: the gateway makes a flow's socket
// pair and shared rings while the layer allocates it; allocations that
// fail leave none of it behind (no descriptor, no mapping, no budget
// charge: a session with room for one deep flow still gets one).
func TestGatewayFailedAllocLeavesNothing(t *testing.T) {
	shapes := shmShapes(flow.MaxSDU, kernel.BufSize)
	deep, shallow := shapes[0], shapes[1]
	sockA := shmPair(t, deep.charge+shallow.charge/2) // room for one flow's rings, and its buffers
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	openFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	// One allocation first, so that what the session makes once (its
	// component's goroutines, the IPCP's state) is there before counting.
	if _, _, err := a.Alloc(ctx, "nobody", flow.BestEffort()); err == nil {
		t.Fatal("alloc to a name nobody serves succeeded")
	}
	fds, maps := openFDs(), flowMappingSizes(t)
	for i := range 30 {
		if _, _, err := a.Alloc(ctx, "nobody", flow.BestEffort()); err == nil {
			t.Fatalf("alloc %d to a name nobody serves succeeded", i)
		}
	}
	if got := openFDs(); got > fds+2 { // +2: the runtime's own, now and then
		t.Errorf("%d descriptors open after 30 failed allocations, %d before", got, fds)
	}
	if got := flowMappingSizes(t); got[deep.geo.Size()] != maps[deep.geo.Size()] {
		t.Errorf("flow mappings %v after 30 failed allocations, %v before", got, maps)
	}
	p, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, shm := p.(*flow.ShmPort); !shm {
		t.Fatalf("the flow after failed allocations is a %T, want shared rings (the budget's room for them returned)", p)
	}
	echoes(t, p)
}
