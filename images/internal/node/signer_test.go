package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

// TestSigner boots a kernel with the signer and two clients granted
// different labels, and checks that each gets signatures under its own
// labels only, and the node's document, without ever holding the key.
func TestSigner(t *testing.T) {
	id, err := identity.FromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	meas := identity.MeasureBytes([]byte("image"))
	sc, err := NewSignerComponent(SignerConfig{
		Identity: id, Name: "router-a", Board: "hosted", Measurement: meas,
		Now: func() time.Time { return time.Unix(1_800_000_000, 0) },
		Clients: []SignerClientSpec{
			{Component: "ipcp.net", Labels: []string{identity.LabelLSU, identity.LabelEnroll}},
			{Component: "app", Labels: []string{identity.LabelKex}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sys := &kernel.System{Components: []kernel.ComponentSpec{{Name: "ipcp.net"}, {Name: "app"}, {Name: "other"}}}
	if err := sc.AddTo(sys); err != nil {
		t.Fatal(err)
	}
	if err := sys.Validate(); err != nil {
		t.Fatal(err)
	}
	// Who can reach the signer: its clients, with Write but not Grant.
	for _, c := range sys.Components {
		for _, cp := range c.Caps {
			if cp.Object != SignerEndpoint {
				continue
			}
			switch {
			case c.Name == SignerName:
				if cp.Rights != kernel.Read {
					t.Errorf("signer holds %v on its endpoint, want R---", cp.Rights)
				}
			case c.Name == "ipcp.net" || c.Name == "app":
				if cp.Rights != kernel.Write|kernel.GrantReply || cp.Name != SlotSigner {
					t.Errorf("%s holds %v in slot %q, want -W-C in %q", c.Name, cp.Rights, cp.Name, SlotSigner)
				}
			default:
				t.Errorf("%s holds a cap to the signer", c.Name)
			}
		}
	}

	type result struct {
		name string
		err  error
	}
	results := make(chan result, 16)
	report := func(name string, err error) { results <- result{name, err} }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := func(mine, notMine string) kernel.Program {
		return func(pd *kernel.PD) error {
			ep, err := pd.Slot(SlotSigner)
			if err != nil {
				report(pd.Name()+" slot", err)
				return nil
			}
			s, err := DialSigner(ctx, pd, ep)
			if err != nil {
				report(pd.Name()+" dial", err)
				return nil
			}
			if !s.Public().Equal(id.Public()) {
				report(pd.Name()+" public", errors.New("wrong public key"))
			}
			msg := []byte("message of " + pd.Name())
			sig, err := identity.SignLabeled(ctx, s, mine, msg)
			if err == nil && !identity.VerifyLabeled(id.Public(), mine, msg, sig) {
				err = errors.New("signature does not verify")
			}
			report(pd.Name()+" granted", err)
			_, err = identity.SignLabeled(ctx, s, notMine, msg)
			report(pd.Name()+" not granted", err)
			_, err = s.Sign(ctx, []byte("no label at all"))
			report(pd.Name()+" unlabelled", err)
			_, err = identity.SignLabeled(ctx, s, identity.LabelDoc, msg)
			report(pd.Name()+" document label", err)
			_, err = s.Sign(ctx, identity.Labeled(mine, make([]byte, MaxSignMsg)))
			report(pd.Name()+" too big", err)
			_, err = s.Sign(ctx, identity.Labeled(mine, make([]byte, MaxSignMsg-len(mine)-1)))
			report(pd.Name()+" largest", err)
			b, err := s.Document(ctx)
			if err == nil {
				var d identity.Document
				d, err = identity.VerifyDocument(b)
				if err == nil && (!d.Key.Equal(id.Public()) || d.Name != "router-a" || d.Board != "hosted" || d.Measurement != meas) {
					err = errors.New("document does not describe the node")
				}
			}
			report(pd.Name()+" document", err)
			// A client that knows the key from configuration.
			s2 := NewSignerClient(pd, ep, id.Public())
			_, err = identity.SignLabeled(ctx, s2, mine, msg)
			report(pd.Name()+" configured key", err)
			return nil
		}
	}
	k := kernel.New(kernel.Config{})
	defer k.Stop()
	err = k.Boot(sys, map[string]kernel.Program{
		SignerName: sc.Program,
		"ipcp.net": client(identity.LabelLSU, identity.LabelKex),
		"app":      client(identity.LabelKex, identity.LabelLSU),
		"other":    func(pd *kernel.PD) error { <-pd.Context().Done(); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{
		"granted": nil, "not granted": flow.ErrRefused, "unlabelled": flow.ErrRefused,
		"document label": flow.ErrRefused, "too big": flow.ErrTooBig, "largest": nil, "document": nil, "configured key": nil,
	}
	for i := 0; i < 2*len(want); i++ {
		select {
		case r := <-results:
			var w error
			found := false
			for suffix, e := range want {
				if r.name == "ipcp.net "+suffix || r.name == "app "+suffix {
					w, found = e, true
				}
			}
			if !found {
				t.Errorf("%s: %v", r.name, r.err)
				continue
			}
			if (w == nil) != (r.err == nil) || !errors.Is(r.err, w) {
				t.Errorf("%s: got %v, want %v", r.name, r.err, w)
			}
		case <-ctx.Done():
			t.Fatalf("clients did not finish: %d results", i)
		}
	}
}

func TestSignerConfig(t *testing.T) {
	id, _ := identity.Generate(nil)
	bad := []SignerConfig{
		{},
		{Identity: id, Clients: []SignerClientSpec{{Component: "a", Labels: []string{identity.LabelDoc}}}},
		{Identity: id, Clients: []SignerClientSpec{{Component: "a", Labels: []string{"x\x00y"}}}},
		{Identity: id, Clients: []SignerClientSpec{{Component: "a", Labels: []string{""}}}},
		{Identity: id, Clients: []SignerClientSpec{{Component: "a"}, {Component: "a"}}},
		{Identity: id, Clients: []SignerClientSpec{{Component: SignerName}}},
	}
	for i, cfg := range bad {
		if _, err := NewSignerComponent(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	sc, err := NewSignerComponent(SignerConfig{Identity: id, Clients: []SignerClientSpec{{Component: "missing"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.AddTo(&kernel.System{}); err == nil {
		t.Error("AddTo accepted a client that is not in the system")
	}
}

// TestSignerAgree: a client granted agreements gets the X25519 secret of
// the node key with a peer key (the one the key itself gives); a client
// that was not is refused.
func TestSignerAgree(t *testing.T) {
	id, err := identity.FromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := identity.FromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	peerX, err := identity.X25519Public(peer.Public())
	if err != nil {
		t.Fatal(err)
	}
	want, err := id.Agree(context.Background(), peerX)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewSignerComponent(SignerConfig{Identity: id, Name: "n", Clients: []SignerClientSpec{
		{Component: "carrier", Agree: true}, {Component: "other"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sys := &kernel.System{Components: []kernel.ComponentSpec{{Name: "carrier"}, {Name: "other"}}}
	if err := sc.AddTo(sys); err != nil {
		t.Fatal(err)
	}
	type result struct {
		secret []byte
		err    error
	}
	results := map[string]chan result{"carrier": make(chan result, 1), "other": make(chan result, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := func(pd *kernel.PD) error {
		ep, err := pd.Slot(SlotSigner)
		if err != nil {
			results[pd.Name()] <- result{nil, err}
			return nil
		}
		s, err := NewSignerClient(pd, ep, id.Public()).Agree(ctx, peerX)
		results[pd.Name()] <- result{s, err}
		return nil
	}
	k := kernel.New(kernel.Config{})
	defer k.Stop()
	if err := k.Boot(sys, map[string]kernel.Program{SignerName: sc.Program, "carrier": client, "other": client}); err != nil {
		t.Fatal(err)
	}
	if r := <-results["carrier"]; r.err != nil || !bytes.Equal(r.secret, want) {
		t.Errorf("granted: %x, %v; want %x", r.secret, r.err, want)
	}
	if r := <-results["other"]; !errors.Is(r.err, flow.ErrRefused) {
		t.Errorf("not granted: %x, %v; want refused", r.secret, r.err)
	}
}
