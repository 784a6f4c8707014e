package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/kernel/logx"
)

// TestSessionEndLogged: when a program's session ends, the node says
// which names went with it. A program that was gone (killed, its socket
// closed) used to leave no trace in the node's log: its peers only saw
// "name not found". A session that bound nothing (the ouro tool's) is
// not logged.
func TestSessionEndLogged(t *testing.T) {
	var logged logx.Buffer
	x, ch := rawApp("app.binder", false)
	startNodeWith(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
`, func(n *Node) { n.log = slog.New(slog.NewTextHandler(&logged, nil)) }, x)
	c := <-ch
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := c.session(t)
	quiet.Close()
	b := c.session(t)
	for _, name := range []string{"svc.b", "svc.a"} {
		if err := b.Bind(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	const msg = `msg="session ended, its names unbound"`
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logged.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the node's log:\n%s", msg, logged.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var lines []string
	for _, l := range strings.Split(logged.String(), "\n") {
		if strings.Contains(l, msg) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `names="[svc.a svc.b]"`) || !strings.Contains(lines[0], "principal=app:app.binder") {
		t.Fatalf("want one line naming app.binder's session and its names svc.a and svc.b, got:\n%s", strings.Join(lines, "\n"))
	}
}
