package unicast_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/enroll"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// TestCertifiedNamesThroughLayer: a layer admitted by authority with
// names = "certified" and the dht directory, set by the bootstrapper
// alone and carried to the members: c's certificate lists "echo", b's
// lists nothing. b registers "echo" and "bogus": neither is stored; c's
// "echo" is found from a, "bogus" nowhere. With names first come (run
// once), b's "bogus" was found: the test fails there.
func TestCertifiedNamesThroughLayer(t *testing.T) {
	auth := newID(t)
	ids := map[string]*identity.Identity{"a.uni": newID(t), "b.uni": newID(t), "c.uni": newID(t)}
	cert := func(name string, names ...string) []byte {
		now := time.Now()
		b, err := identity.IssueCert(context.Background(), identity.Cert{Serial: uint64(len(name)) + uint64(name[0]), Subject: ids[name].Public(),
			Name: name, NotBefore: now.Add(-time.Minute).Unix(), NotAfter: now.Add(time.Hour).Unix(), Names: names}, auth)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pol := admission.Policy{Mode: admission.ModeAuthority, Authorities: []ed25519.PublicKey{auth.Public()}}
	n := unicasttest.New(t)
	a := n.Add("a.uni", true, nil, func(c *unicast.Config) {
		c.Signer, c.Cert, c.LayerConfig.Admission = ids["a.uni"], cert("a.uni"), pol
		c.LayerConfig.Dir, c.LayerConfig.Names = "dht", enroll.NamesCertified
	})
	b := n.Add("b.uni", false, []string{"a.uni"}, func(c *unicast.Config) { c.Signer, c.Cert = ids["b.uni"], cert("b.uni") })
	c := n.Add("c.uni", false, []string{"a.uni"}, func(c *unicast.Config) { c.Signer, c.Cert = ids["c.uni"], cert("c.uni", "echo") })
	n.WaitOperational(10 * time.Second)
	n.WaitFor(5*time.Second, "a's routes to b and c", func() bool {
		return len(a.IPCP.NextHops(b.IPCP.Addr())) > 0 && len(a.IPCP.NextHops(c.IPCP.Addr())) > 0
	})
	c.Register("echo")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.IPCP.Register(ctx, "bogus") // refused by the holders: an error or not, what counts is below
	b.IPCP.Register(ctx, "echo")

	p, err := a.Alloc(ctxT(t, 5*time.Second), "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("a to c's certified echo: %v", err)
	}
	p.Close()
	if acc, err := c.Accept(2 * time.Second); err == nil {
		acc.Port.Close()
	} else {
		t.Fatalf("echo's flow did not reach c: %v", err)
	}
	if p, err := a.Alloc(ctxT(t, 2*time.Second), "bogus", flow.BestEffort()); err == nil {
		p.Close()
		t.Fatal("a reached b's uncertified name bogus")
	}
}
