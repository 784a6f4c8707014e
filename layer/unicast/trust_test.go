package unicast_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/addr"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

func newID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAllowListedLayer is the harness's attack test of admission: in a
// layer that admits a list of keys, an IPCP with another key keeps
// trying and never becomes a member (the bootstrapper counts each
// refusal as an unknown key), while listed IPCPs enroll at the addresses
// their keys derive. The same unlisted IPCP enrolls in an open layer.
func TestAllowListedLayer(t *testing.T) {
	for _, open := range []bool{true, false} {
		name := map[bool]string{true: "open", false: "allow"}[open]
		t.Run(name, func(t *testing.T) {
			ida, idb, idx := newID(t), newID(t), newID(t)
			n := unicasttest.New(t)
			pol := admission.Policy{Mode: admission.ModeAllow, Keys: []ed25519.PublicKey{ida.Public(), idb.Public()}}
			if open {
				pol = admission.Policy{Mode: admission.ModeOpen}
			}
			a := n.Add("a.uni", true, nil, func(c *unicast.Config) { c.Signer = ida; c.LayerConfig.Admission = pol; c.Logf = t.Logf })
			b := n.Add("b.uni", false, []string{"a.uni"}, func(c *unicast.Config) { c.Signer = idb; c.Logf = t.Logf })
			x := n.Add("x.uni", false, []string{"a.uni"}, func(c *unicast.Config) { c.Signer = idx })
			n.WaitFor(5*time.Second, "b enrolled", func() bool { return b.IPCP.Stats().State == "operational" })
			if open {
				n.WaitFor(5*time.Second, "x enrolled", func() bool { return x.IPCP.Stats().State == "operational" })
				return
			}
			for _, m := range []struct {
				n  *unicasttest.Node
				id *identity.Identity
			}{{a, ida}, {b, idb}} {
				if got, want := m.n.IPCP.Addr(), addr.FromKey(unicasttest.Layer, 4, m.id.Public()); got != want {
					t.Errorf("%s at address %d, its key's is %d", m.n.Name, got, want)
				}
			}
			n.WaitFor(5*time.Second, "x refused twice", func() bool { return a.IPCP.Stats().Refused["unknown_key"] >= 2 })
			if s := x.IPCP.Stats(); s.State == "operational" || s.Addr != 0 {
				t.Fatalf("unlisted x is %s at address %d", s.State, s.Addr)
			}
			if got := a.IPCP.Stats().Members; got != 2 {
				t.Errorf("a knows %d members, want 2", got)
			}
		})
	}
}
