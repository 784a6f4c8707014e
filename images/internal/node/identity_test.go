package node

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer/ipcp"
)

// TestNodeKeyFile: [node] key is created on first start (mode 0600) and
// the same key comes back on the next; without it each node has its own
// ephemeral key.
func TestNodeKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	cfg := `[node]
name = "k"
key = "` + path + `"
`
	n1 := startNode(t, cfg)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file not created: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	id, err := identity.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Public().Equal(n1.Identity().Public()) {
		t.Fatal("the node's identity is not the key file's")
	}
	n1.Stop()
	n2 := startNode(t, cfg)
	if !n2.Identity().Public().Equal(id.Public()) {
		t.Fatal("a restarted node made a new key instead of loading the file")
	}
	n3 := startNode(t, "[node]\nname = \"e\"\n")
	n4 := startNode(t, "[node]\nname = \"e\"\n")
	if n3.Identity().Public().Equal(n4.Identity().Public()) {
		t.Fatal("two nodes without a key file share a key")
	}
}

// TestNodeDocument: the "id" management command answers the node's
// identity document, signed by the signer with the node's key and
// carrying the name, board and measurement the image gave.
func TestNodeDocument(t *testing.T) {
	x, brokers := app("app.reader") // "id" is read-only: any session
	c, err := ParseConfig([]byte("[node]\nname = \"doc\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Board = "testboard"
	c.Measurement = identity.MeasureBytes([]byte("image"))
	n, err := New(c, x)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	b := <-brokers
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdID})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(resp.Text)
	if err != nil {
		t.Fatal(err)
	}
	d, err := identity.VerifyDocument(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.PublicKey(d.Key).Equal(n.Identity().Public()) || d.Name != "doc" || d.Board != "testboard" || d.Measurement != c.Measurement {
		t.Errorf("document %+v", d)
	}
}
