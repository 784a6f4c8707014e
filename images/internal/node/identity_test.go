package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ouronet/ouro/crypto/identity"
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
