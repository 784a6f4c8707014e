package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
)

// sessionComponents returns the names of n's gateway session components.
func sessionComponents(n *Node) []string {
	var names []string
	for _, c := range n.Describe().Components {
		if strings.HasPrefix(c.Name, "gateway.s") {
			names = append(names, c.Name)
		}
	}
	slices.Sort(names)
	return names
}

// waitSessions waits until ok holds of n's session components, and
// returns them.
func waitSessions(t *testing.T, n *Node, what string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := sessionComponents(n)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("session components %v, want %s", s, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count(k int) func([]string) bool { return func(s []string) bool { return len(s) == k } }

// TestGatewayPreparedSession: the gateway opens a session ahead of the
// first program (for the node's own user) and hands it to the program
// that connects, then prepares the next one; a program leaving ends its
// session, and after many programs exactly one prepared session is left.
// On the gateway that opened each session when its program connected,
// no session component existed before the first program.
func TestGatewayPreparedSession(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	n := startNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
`, Gateway(sock, logx.Test(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	prepared := waitSessions(t, n, "one prepared before any program", count(1))
	for i := range 20 {
		prog, err := flow.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("svc%d", i)
		if err := prog.Bind(ctx, name); err != nil {
			t.Fatalf("program %d: bind: %v", i, err)
		}
		// Served by the prepared session; the next is prepared.
		both := waitSessions(t, n, fmt.Sprintf("program %d's (%s) and a new prepared one", i, prepared[0]), func(s []string) bool {
			return len(s) == 2 && slices.Contains(s, prepared[0])
		})
		prog.Close()
		// Its session ends with it (the component that waited served it).
		prepared = waitSessions(t, n, fmt.Sprintf("%v without %s", both, prepared[0]), func(s []string) bool {
			return len(s) == 1 && !slices.Contains(s, prepared[0])
		})
	}
}

// TestGatewayMaxSessions: with max_sessions 2 a third program is refused
// while two are connected, even with a session prepared, and gets in
// once one leaves.
func TestGatewayMaxSessions(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	n := startNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
`, GatewayWith(sock, GatewayOptions{MaxSessions: 2}, logx.Test(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitSessions(t, n, "one prepared", count(1))
	var progs []*flow.SocketBroker
	for i := range 3 {
		p, err := flow.Dial(sock)
		if err != nil {
			if i == 2 {
				continue // refused before its hello went out
			}
			t.Fatal(err)
		}
		defer p.Close()
		progs = append(progs, p)
		err = p.Bind(ctx, fmt.Sprintf("svc%d", i))
		if i < 2 && err != nil {
			t.Fatalf("program %d: bind: %v", i, err)
		}
		if i == 2 && err == nil {
			t.Fatalf("program 3 of max_sessions 2: bind succeeded")
		}
	}
	progs[0].Close()
	waitSessions(t, n, "program 2's and at most one prepared", func(s []string) bool { return len(s) <= 2 })
	// The gateway counts program 1 out when its session component has
	// ended, which can be just after the listing shrank: a program is
	// admitted again soon, if not at once.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		p, err := flow.Dial(sock)
		if err == nil {
			err = p.Bind(ctx, "svc3")
			p.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a program after one left: %v", err)
		}
	}
}

// TestFlowNotAccepted: the IRM answers an IPCP's flow request from the
// Accept that takes the flow (rpc.Later); a flow to a program that
// never accepts is still refused after accept_timeout, and one to a
// program that accepts arrives.
func TestFlowNotAccepted(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	startNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
[irm]
accept_timeout = "300ms"
`, Gateway(sock, logx.Test(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := srv.Bind(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if p, _, err := cli.Alloc(ctx, "svc", flow.BestEffort()); err == nil {
		p.Close()
		t.Fatal("a flow nobody accepted was allocated")
	} else if !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("alloc to a program that does not accept: %v, want refused", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refused after %v, want about accept_timeout", d)
	}
	for i := range 3 {
		accepted := make(chan error, 1)
		go func() {
			p, _, err := srv.Accept(ctx)
			if err == nil {
				p.Close()
			}
			accepted <- err
		}()
		p, _, err := cli.Alloc(ctx, "svc", flow.BestEffort())
		if err != nil {
			t.Fatalf("alloc %d to a program that accepts: %v", i, err)
		}
		p.Close()
		if err := <-accepted; err != nil {
			t.Fatalf("accept %d: %v", i, err)
		}
	}
}
