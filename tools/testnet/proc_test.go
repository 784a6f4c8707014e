package testnet

import (
	"strings"
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
