package eth

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"

	"github.com/ouronet/ouro/layer/shim/impair"
)

// TestPacketVeth runs two shims on AF_PACKET sockets at the ends of a veth
// pair between two network namespaces that the test creates and removes.
func TestPacketVeth(t *testing.T) {
	da, db := vethPair(t)
	a, b := pairOn(t, da, db, impair.Config{})
	exchange(t, a, b)
}

// TestPacketVethBatch: SDUs of every size a flow carries, queued in
// batches, cross a veth pair both ways in order and whole: the transmit
// loops send them with sendmmsg(2), the receive loops take them with
// recvmmsg(2) and deliver runs, and short frames are padded and cut back.
func TestPacketVethBatch(t *testing.T) {
	da, db := vethPair(t)
	for _, d := range []*PacketDevice{da, db} {
		if d.NewFrameBatch(4) == nil {
			t.Fatal("an AF_PACKET device gives no frame batch")
		}
	}
	a, b := pairOn(t, da, db, impair.Config{})
	client, server := dial(t, a, b, "srv")
	const n = 2 * flow.MaxSDU // every size twice
	sdus := make([][]byte, n)
	for i := range sdus {
		sdus[i] = bytes.Repeat([]byte{byte(i), byte(i >> 8)}, (i%flow.MaxSDU+2)/2)[:i%flow.MaxSDU+1]
	}
	buf := make([]byte, flow.MaxSDU)
	for _, dir := range [][2]flow.Port{{client, server}, {server, client}} {
		from, to := dir[0].(flow.BatchPort), dir[1]
		for off := 0; off < n; {
			end := min(off+50, n)
			for k := off; k < end; {
				w, err := from.WriteBatch(sdus[k:end], time.Now().Add(2*time.Second))
				if err != nil {
					t.Fatalf("WriteBatch: %v", err)
				}
				k += w
			}
			for ; off < end; off++ {
				k, err := to.Read(buf, time.Now().Add(2*time.Second))
				if err != nil || !bytes.Equal(buf[:k], sdus[off]) {
					t.Fatalf("SDU %d: %d bytes, %v; want %d bytes", off, k, err, len(sdus[off]))
				}
			}
		}
	}
	// The receive loop counts a run after its port took it: the reader
	// may have read the last run before it is counted.
	deadline := time.Now().Add(2 * time.Second)
	for st := a.ipcp.Stats(); st.PacketsIn < n && time.Now().Before(deadline); st = a.ipcp.Stats() {
		time.Sleep(time.Millisecond)
	}
	if st := a.ipcp.Stats(); st.PacketsOut != n || st.PacketsIn != n || st.Drops.Malformed != 0 {
		t.Fatalf("a: %d out, %d in, %d malformed; want %d, %d, 0", st.PacketsOut, st.PacketsIn, st.Drops.Malformed, n, n)
	}
}

// vethPair opens AF_PACKET devices at the ends of a veth pair between two
// network namespaces that the test creates and removes.
func vethPair(t *testing.T) (da, db *PacketDevice) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping AF_PACKET test: it needs root to create network namespaces and a veth pair")
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipping AF_PACKET test: the ip command (iproute2) is not installed")
	}
	ip := func(args ...string) error {
		out, err := exec.Command(ipCmd, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	id := fmt.Sprintf("%d%04d", os.Getpid()%100000, rand.IntN(10000)) // unique per run
	nsA, nsB := "ourotA"+id, "ourotB"+id
	ifA, ifB := "ovA"+id, "ovB"+id // <= 15 bytes
	for _, ns := range []string{nsA, nsB} {
		if err := ip("netns", "add", ns); err != nil {
			t.Skipf("skipping AF_PACKET test: cannot create a network namespace: %v", err)
		}
		t.Cleanup(func() { ip("netns", "del", ns) })
	}
	for _, args := range [][]string{
		{"link", "add", ifA, "type", "veth", "peer", "name", ifB},
		{"link", "set", ifA, "netns", nsA},
		{"link", "set", ifB, "netns", nsB},
		{"-n", nsA, "link", "set", ifA, "up"},
		{"-n", nsB, "link", "set", ifB, "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	da, err = openIn(nsA, ifA)
	if err != nil {
		t.Fatal(err)
	}
	db, err = openIn(nsB, ifB)
	if err != nil {
		da.Close()
		t.Fatal(err)
	}
	return da, db
}

// sysSetns returns setns(2)'s number on arch (the syscall package lacks
// it; the kernel's per-architecture syscall tables).
func sysSetns(arch string) (uintptr, bool) {
	switch arch {
	case "amd64":
		return 308, true
	case "386":
		return 346, true
	case "arm":
		return 375, true
	case "arm64", "riscv64", "loong64":
		return 268, true
	}
	return 0, false
}

// openIn opens an AF_PACKET device inside the named network namespace: a
// goroutine locks its thread, moves the thread into the namespace, creates
// the socket (which stays in that namespace) and exits still locked, so the
// runtime discards the thread instead of reusing it elsewhere.
func openIn(ns, ifname string) (*PacketDevice, error) {
	type result struct {
		d   *PacketDevice
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		nr, ok := sysSetns(runtime.GOARCH)
		if !ok {
			ch <- result{nil, fmt.Errorf("setns: syscall number unknown on %s", runtime.GOARCH)}
			return
		}
		if _, _, e := syscall.RawSyscall(nr, f.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			ch <- result{nil, fmt.Errorf("setns %s: %w", ns, e)}
			return
		}
		d, err := OpenPacket(ifname)
		ch <- result{d, err}
	}()
	r := <-ch
	return r.d, r.err
}
