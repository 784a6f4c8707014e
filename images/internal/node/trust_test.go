package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer/ipcp"
)

// TestAuthorityLayerOverUDP runs a layer admitted by a layer authority
// between nodes on 127.0.0.1, configured by TOML: a bootstraps it with
// the authority's key, b enrolls with its certificate, x (no
// certificate), y (a certificate for another layer) and z (a revoked
// certificate: a's revocation list names its key) are refused and
// counted at a, and never become members.
func TestAuthorityLayerOverUDP(t *testing.T) {
	auth := newIdentity(t)
	dir := t.TempDir()
	ids := map[string]*identity.Identity{}
	for _, n := range []string{"a", "b", "x", "y", "z"} {
		ids[n] = newIdentity(t)
	}
	certFile := func(node, layer string) string {
		now := time.Now()
		b, err := identity.IssueCert(context.Background(), identity.Cert{Serial: uint64(len(node)*100 + len(layer)), Subject: ids[node].Public(),
			Name: node, Layer: layer, NotBefore: now.Add(-time.Minute).Unix(), NotAfter: now.Add(time.Hour).Unix()}, auth)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, node+".cert")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ports := map[string]int{}
	for _, n := range []string{"a", "b", "x", "y", "z"} {
		ports[n] = freeUDPPort(t)
	}
	crl, err := identity.IssueCRL(context.Background(), identity.CRL{Seq: 1, Issued: time.Now().Unix(), Keys: []ed25519.PublicKey{ids["z"].Public()}}, auth)
	if err != nil {
		t.Fatal(err)
	}
	crlFile := filepath.Join(dir, "uni.crl")
	if err := os.WriteFile(crlFile, crl, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := func(name, uni string) string {
		return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "a.uni" = "127.0.0.1:%d" }
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
%s
`, name, ports[name], ports["a"], name, uni)
	}
	policy := fmt.Sprintf("authority authority=%x", []byte(auth.Public()))
	appA, brA := app("app")
	startNodeID(t, ids["a"], cfg("a", fmt.Sprintf("bootstrap = true\nadmission = %q\ncert = %q\ncrl = %q", policy, certFile("a", "uni"), crlFile)), appA)
	startNodeID(t, ids["b"], cfg("b", fmt.Sprintf("enroll = \"a.uni\"\ncert = %q", certFile("b", "uni"))))
	startNodeID(t, ids["x"], cfg("x", `enroll = "a.uni"`))
	startNodeID(t, ids["y"], cfg("y", fmt.Sprintf("enroll = \"a.uni\"\ncert = %q", certFile("y", "other"))))
	startNodeID(t, ids["z"], cfg("z", fmt.Sprintf("enroll = \"a.uni\"\ncert = %q", certFile("z", "uni"))))
	ba := <-brA

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stats := func() map[string]string {
		r, err := ba.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: "a.uni"})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, row := range r.Table.Rows {
			m[row[0]] = row[1]
		}
		return m
	}
	for {
		s := stats()
		if s["members_enrolled"] == "1" && s["refused.unknown_key"] != "0" && s["refused.scope"] != "0" && s["refused.revoked"] != "0" {
			break
		}
		if time.Until(deadline(ctx)) < 2*time.Second {
			t.Fatalf("a.uni's counters: %v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r, err := ba.Mgmt(ctx, ipcp.MgmtReq{Cmd: "members", IPCP: "a.uni"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // routing floods: were x or y there, they would show
	if r, err = ba.Mgmt(ctx, ipcp.MgmtReq{Cmd: "members", IPCP: "a.uni"}); err != nil || len(r.Table.Rows) != 2 {
		t.Fatalf("a.uni's members: %v, %v; want a and b", r.Table.Rows, err)
	}
}

func deadline(ctx context.Context) time.Time { d, _ := ctx.Deadline(); return d }

func newIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// startNodeID starts a node from cfg with the identity id (as a board's
// image sets it).
func startNodeID(t *testing.T, id *identity.Identity, cfg string, extras ...Extra) *Node {
	t.Helper()
	c := parse(t, cfg)
	c.Identity = id
	return startParsed(t, c, extras...)
}
