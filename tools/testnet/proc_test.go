package testnet

import (
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcOutputComplete: once Wait returns, Output holds everything the
// process printed, its last line included. Before, Wait could return
// while the last lines were still in the line scanner's buffer, and a
// test parsing them (ping's summary) failed now and then.
func TestProcOutputComplete(t *testing.T) {
	n := New(t.TempDir(), "", "")
	defer n.Close()
	for i := range 100 {
		p, err := n.start("sh", "", "/bin/sh", "-c", "seq 1 300; seq 301 3000 | tr -d x; echo LAST")
		if err != nil {
			t.Skipf("SKIP: cannot start /bin/sh: %v", err)
		}
		if err := p.Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if out := p.Output(); !strings.HasSuffix(out, "3000\nLAST\n") {
			t.Fatalf("run %d: Output after Wait ends %q, want the last line", i, out[max(0, len(out)-20):])
		}
	}
}

// TestProcOutlivesLockedThread: a process outlives the OS thread of the
// goroutine that started it. Linux sends Pdeathsig (SIGKILL, so that no
// node outlives its test) when the thread that forked the child ends,
// not the process, and the Go runtime ends a thread whenever a goroutine
// that locked it exits (listenIn and the other setns helpers do). Nodes
// started from such a thread were killed without a word in the middle of
// TestIPNet: the middle node (curl timed out) or an `ouro ipnet` program
// (its name unbound, an iperf3 hung). Here the starting goroutine locks
// a thread other than the main one (which never ends) and exits, so
// without the spawner the child dies at once.
func TestProcOutlivesLockedThread(t *testing.T) {
	n := New(t.TempDir(), "", "")
	defer n.Close()
	type started struct {
		p   *Proc
		err error
	}
	ch := make(chan started, 1)
	hold := make(chan struct{})
	defer close(hold)
	var try func()
	try = func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			if syscall.Gettid() == os.Getpid() {
				try() // the main thread: keep it, start from another
				<-hold
				return
			}
			p, err := n.start("sleep", "", "sleep", "30")
			ch <- started{p, err}
		}()
	}
	try()
	s := <-ch
	if s.err != nil {
		t.Skipf("SKIP: cannot start sleep: %v", s.err)
	}
	time.Sleep(500 * time.Millisecond)
	if gone, err := s.p.Exited(); gone {
		t.Fatalf("the process died with the thread that started it: %v", err)
	}
	s.p.Kill()
	if gone, err := s.p.Exited(); !gone || err == nil {
		t.Fatalf("killed: Exited says %v, %v; want true and the signal", gone, err)
	}
}

// TestPortsNeverTwice: Ports hands out distinct ports, across calls too,
// and refuses a host that is not an IP address.
func TestPortsNeverTwice(t *testing.T) {
	var p Ports
	seen := make(map[int]bool)
	for range 20 {
		ps, err := p.UDPs("127.0.0.1", 3)
		if err != nil {
			t.Fatal(err)
		}
		one, err := p.UDP("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range append(ps, one) {
			if port <= 0 || seen[port] {
				t.Fatalf("port %d handed out twice (or not a port)", port)
			}
			seen[port] = true
		}
	}
	if _, err := p.UDP("localhost"); err == nil {
		t.Error("a host name: no error, want one (an IP address is needed)")
	}
}
