package dht_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/dir/dirtest"
)

// The attack tests of names "as a certificate says" (issue 10). Both
// were run once with the policy off (OURO_TEST_NAMES_OFF=1: every
// member's Config.Names nil) and failed there: the squatter kept "svc"
// and the uncertified name was stored and found.

// namesSim starts n members under one authority; certs[i] are the names
// the i-th member's certificate lists (nil: it has no certificate).
func namesSim(t *testing.T, n int, certified bool, certs map[int][]string) (*sim, map[layer.Addr]bool) {
	t.Helper()
	auth := newKey(t)
	off := os.Getenv("OURO_TEST_NAMES_OFF") != ""
	i := 0
	withCert := map[layer.Addr]bool{}
	s := startSimNames(t, n, dirtest.NetConfig{}, fastCfg(), false, func(a layer.Addr, id *identity.Identity) *dht.NamesPolicy {
		defer func() { i++ }()
		if off {
			return nil
		}
		p := &dht.NamesPolicy{Authorities: []ed25519.PublicKey{auth.Public()}, Hash: layer.SHA3_256, Certified: certified}
		if names := certs[i]; names != nil {
			now := time.Now()
			b, err := identity.IssueCert(context.Background(), identity.Cert{Serial: uint64(a), Subject: id.Public(), Name: "m",
				NotBefore: now.Add(-time.Minute).Unix(), NotAfter: now.Add(time.Hour).Unix(), Names: names}, auth)
			if err != nil {
				t.Fatal(err)
			}
			p.Cert = b
			withCert[a] = true
		}
		return p
	})
	return s, withCert
}

func certNames(s *sim) (n uint64) {
	for _, d := range s.nodes {
		n += d.Stats().CertNames
	}
	return n
}

// TestCertifiedOwner: a squatter registers "svc" first; then the member
// whose certificate lists "svc" registers it. Every other member maps
// "svc" to the owner, and the squatter's later refresh is refused
// (counted as cert_names).
func TestCertifiedOwner(t *testing.T) {
	s, _ := namesSim(t, 10, false, map[int][]string{1: {"svc"}})
	squatter, owner := s.addrs[0], s.addrs[1]
	svc := layer.HashName(layer.SHA3_256, "svc")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.nodes[squatter].Register(ctx, svc, squatter); err != nil {
		t.Fatal(err)
	}
	// First come holds until the owner comes.
	if f, err := s.nodes[s.addrs[5]].Find(ctx, svc); err != nil || !slices.Equal(f.Addrs, []layer.Addr{squatter}) {
		t.Fatalf("before the owner: %v, %v; want the squatter %d", f.Addrs, err, squatter)
	}
	if err := s.nodes[owner].Register(ctx, svc, owner); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, m := range s.addrs {
			if m == squatter {
				continue // it answers its own lookups from its own registration
			}
			f, err := s.nodes[m].Find(ctx, svc)
			if err != nil || !slices.Equal(f.Addrs, []layer.Addr{owner}) {
				t.Fatalf("%s: svc from %d: %v (%s), %v; want the owner [%d]", when, m, f.Addrs, f.Source, err, owner)
			}
		}
	}
	check("after the owner registered")
	before := certNames(s)
	// The squatter refreshes (a new record, as its republication would).
	s.nodes[squatter].Unregister(ctx, svc, squatter)
	s.nodes[squatter].Register(ctx, svc, squatter)
	waitFor(t, "the squatter's refresh refused", func() bool { return certNames(s) > before })
	check("after the squatter's refresh")
}

// TestCertifiedOnly: under Certified, a member registers a name its
// certificate does not list: every holder refuses it (counted), and no
// member finds it; the name it lists is found everywhere.
func TestCertifiedOnly(t *testing.T) {
	s, _ := namesSim(t, 10, true, map[int][]string{0: {"svc"}, 1: {"db"}})
	m := s.addrs[0]
	svc, other := layer.HashName(layer.SHA3_256, "svc"), layer.HashName(layer.SHA3_256, "other")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.nodes[m].Register(ctx, svc, m); err != nil {
		t.Fatal(err)
	}
	s.nodes[m].Register(ctx, other, m) // stored nowhere: an error or not, what counts is below
	// A member without a certificate registers "db", another's name.
	s.nodes[s.addrs[2]].Register(ctx, layer.HashName(layer.SHA3_256, "db"), s.addrs[2])
	waitFor(t, "the uncertified records refused", func() bool { return certNames(s) > 0 })
	for _, a := range s.addrs[1:] {
		f, err := s.nodes[a].Find(ctx, svc)
		if err != nil || !slices.Equal(f.Addrs, []layer.Addr{m}) {
			t.Fatalf("svc from %d: %v, %v; want [%d]", a, f.Addrs, err, m)
		}
		if f, err := s.nodes[a].Find(ctx, other); err == nil && len(f.Addrs) > 0 {
			t.Fatalf("other from %d: %v (%s); want not found", a, f.Addrs, f.Source)
		}
		if a == s.addrs[2] {
			continue
		}
		if f, err := s.nodes[a].Find(ctx, layer.HashName(layer.SHA3_256, "db")); err == nil && len(f.Addrs) > 0 {
			t.Fatalf("db from %d: %v (%s); want not found", a, f.Addrs, f.Source)
		}
	}
}
