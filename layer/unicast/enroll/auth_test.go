package enroll_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/addr"
	"github.com/ouronet/ouro/layer/unicast/enroll"
)

// These are the attack tests of authenticated enrollment (issue: a
// trusted router). Each was run once against the undefended path (the
// proof check in Serve, or the policy check, commented out) and failed
// there: the attacker enrolled.

// recorder is a Port that keeps a copy of everything written to it.
type recorder struct {
	flow.Port
	mu    sync.Mutex
	wrote [][]byte
}

func (r *recorder) Write(p []byte, d time.Time) error {
	r.mu.Lock()
	r.wrote = append(r.wrote, slices.Clone(p))
	r.mu.Unlock()
	return r.Port.Write(p, d)
}

func firstAddr(enroll.Config, enroll.Members) (layer.Addr, error) { return 7, nil }

// serve runs one member's side on a fresh pipe and returns the other end
// and the member's result.
func serve(t *testing.T, m *member) (flow.Port, <-chan error) {
	t.Helper()
	a, b := flowtest.Pipe(4)
	t.Cleanup(func() { a.Close(); b.Close() })
	mc := m.creds(t)
	srv := make(chan error, 1)
	go func() {
		buf := make([]byte, flow.MaxSDU)
		n, err := b.Read(buf, time.Now().Add(5*time.Second))
		if err != nil {
			srv <- err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err = enroll.Serve(ctx, b, buf[:n], m, mc)
		srv <- err
	}()
	return a, srv
}

func TestAllowPolicy(t *testing.T) {
	listed, lc := creds(t, "listed")
	_, unlisted := creds(t, "unlisted")
	mid, mc := creds(t, "m")
	allow := openConfig("uni")
	allow.Admission = admission.Policy{Mode: admission.ModeAllow, Keys: []ed25519.PublicKey{mid.Public(), listed.Public()}}

	// Open: any key enrolls (today's behaviour, chosen explicitly).
	m := &member{cfg: openConfig("uni"), members: map[layer.Addr]string{1: "m"}}
	if _, err, serr := runWith(t, m, enroll.Req{Name: "x", Layer: "uni"}, unlisted, firstAddr); err != nil || serr != nil {
		t.Fatalf("open layer: Enroll %v, Serve %v", err, serr)
	}
	// Allow: the unlisted key is refused, with the reason at the member.
	m = &member{cfg: allow, members: map[layer.Addr]string{1: "m"}, cred: &mc}
	_, err, serr := runWith(t, m, enroll.Req{Name: "x", Layer: "uni"}, unlisted, firstAddr)
	if !errors.Is(err, flow.ErrRefused) || !errors.Is(serr, identity.ErrUnknownKey) {
		t.Fatalf("unlisted key: Enroll %v, Serve %v; want refused, unknown key", err, serr)
	}
	if len(m.members) != 1 {
		t.Fatalf("the refused node claimed an address: %v", m.members)
	}
	// The listed key enrolls, at the address its key derives (a
	// protected layer).
	m.members = map[layer.Addr]string{addr.FromKey("uni", 4, mid.Public()): "m"}
	m.protect = true
	keyAddr := func(c enroll.Config, _ enroll.Members) (layer.Addr, error) {
		return addr.FromKey(c.Layer, int(c.AddrWidth), listed.Public()), nil
	}
	if _, err, serr := runWith(t, m, enroll.Req{Name: "y", Layer: "uni"}, lc, keyAddr); err != nil || serr != nil {
		t.Fatalf("listed key: Enroll %v, Serve %v", err, serr)
	}
}

func TestMeasuredPolicy(t *testing.T) {
	id, _ := creds(t, "n")
	good := identity.MeasureBytes([]byte("image"))
	bad := identity.MeasureBytes([]byte("image, one byte changed"))
	cfg := openConfig("uni")
	cfg.Admission.Measured = []identity.Measurement{good}
	mid, _ := creds(t, "m")
	mdoc, err := identity.NewDocument(mid, "m", "test", good, time.Now()).Sign(context.Background(), mid)
	if err != nil {
		t.Fatal(err)
	}
	mc := enroll.Credentials{Signer: mid, Doc: mdoc}
	for _, tc := range []struct {
		m    identity.Measurement
		want error
	}{{good, nil}, {bad, identity.ErrMeasurement}, {identity.Measurement{}, identity.ErrMeasurement}} {
		doc, err := identity.NewDocument(id, "n", "test", tc.m, time.Now()).Sign(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		m := &member{cfg: cfg, members: map[layer.Addr]string{addr.FromKey("uni", 4, mid.Public()): "m"}, cred: &mc, protect: true}
		keyAddr := func(c enroll.Config, _ enroll.Members) (layer.Addr, error) {
			return addr.FromKey(c.Layer, int(c.AddrWidth), id.Public()), nil
		}
		_, err, serr := runWith(t, m, enroll.Req{Name: "n", Layer: "uni"}, enroll.Credentials{Signer: id, Doc: doc}, keyAddr)
		if tc.want == nil && (err != nil || serr != nil) {
			t.Errorf("measurement %s: Enroll %v, Serve %v", tc.m, err, serr)
		}
		if tc.want != nil && (!errors.Is(err, flow.ErrRefused) || !errors.Is(serr, tc.want)) {
			t.Errorf("measurement %s: Enroll %v, Serve %v; want refused, %v", tc.m, err, serr, tc.want)
		}
	}
}

// TestReplayedTranscript records an honest enrollment and replays the new
// member's messages to the member: the member's fresh nonce makes the
// recorded proof worthless, and the replayer learns no configuration.
func TestReplayedTranscript(t *testing.T) {
	m := &member{cfg: openConfig("uni"), members: map[layer.Addr]string{1: "m"}}
	a, srv := serve(t, m)
	rec := &recorder{Port: a}
	_, nc := creds(t, "honest")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := enroll.Enroll(ctx, rec, enroll.Req{Name: "honest", Layer: "uni"}, nc, firstAddr); err != nil {
		t.Fatal(err)
	}
	if err := <-srv; err != nil {
		t.Fatal(err)
	}
	if len(rec.wrote) != 3 {
		t.Fatalf("recorded %d messages, want req, proof, done", len(rec.wrote))
	}

	a, srv = serve(t, m)
	dl := time.Now().Add(5 * time.Second)
	buf := make([]byte, flow.MaxSDU)
	if err := a.Write(rec.wrote[0], dl); err != nil { // the recorded Req
		t.Fatal(err)
	}
	n, err := a.Read(buf, dl)
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := enroll.UnmarshalChallenge(buf[:n]); err != nil || ch.Result != enroll.OK {
		t.Fatalf("challenge %+v, %v", ch, err)
	}
	if err := a.Write(rec.wrote[1], dl); err != nil { // the recorded Proof
		t.Fatal(err)
	}
	n, err = a.Read(buf, dl)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := enroll.UnmarshalResp(buf[:n])
	if err != nil || resp.Result != enroll.Refused || resp.Config.Layer != "" || len(resp.Members) != 0 {
		t.Fatalf("replay answered %+v, %v; want a bare refusal", resp, err)
	}
	if err := <-srv; !errors.Is(err, identity.ErrBadSignature) {
		t.Fatalf("Serve: %v, want bad signature", err)
	}
}

// TestStolenIdentity: an attacker presents a member's (public) key and
// identity document but cannot sign with its key.
func TestStolenIdentity(t *testing.T) {
	_, victim := creds(t, "victim")
	thief, _ := creds(t, "thief")
	m := &member{cfg: openConfig("uni"), members: map[layer.Addr]string{1: "m"}}
	// The thief's signer with the victim's document: Enroll sends the
	// thief's key beside the victim's document, which Serve refuses; a
	// signer that claims the victim's key but signs with the thief's is
	// caught at the proof.
	_, err, serr := runWith(t, m, enroll.Req{Name: "x", Layer: "uni"}, enroll.Credentials{Signer: thief, Doc: victim.Doc}, firstAddr)
	if !errors.Is(err, flow.ErrRefused) || !errors.Is(serr, identity.ErrUnknownKey) {
		t.Fatalf("document of another key: Enroll %v, Serve %v", err, serr)
	}
	_, err, serr = runWith(t, m, enroll.Req{Name: "x", Layer: "uni"}, enroll.Credentials{Signer: impostor{victim.Signer.Public(), thief}, Doc: victim.Doc}, firstAddr)
	if !errors.Is(err, flow.ErrRefused) || !errors.Is(serr, identity.ErrBadSignature) {
		t.Fatalf("impostor: Enroll %v, Serve %v", err, serr)
	}
}

// impostor claims one key and signs with another.
type impostor struct {
	pub ed25519.PublicKey
	*identity.Identity
}

func (i impostor) Public() ed25519.PublicKey { return i.pub }

// TestMemberMustProve: the new member refuses a member that cannot sign
// for the document it shows.
func TestMemberMustProve(t *testing.T) {
	a, b := flowtest.Pipe(4)
	defer a.Close()
	defer b.Close()
	_, real := creds(t, "m")
	fake, _ := creds(t, "fake")
	m := &member{cfg: openConfig("uni"), members: map[layer.Addr]string{1: "m"}}
	srv := make(chan error, 1)
	go func() {
		buf := make([]byte, flow.MaxSDU)
		n, err := b.Read(buf, time.Now().Add(5*time.Second))
		if err != nil {
			srv <- err
			return
		}
		_, _, err = enroll.Serve(context.Background(), b, buf[:n], m, enroll.Credentials{Signer: impostor{real.Signer.Public(), fake}, Doc: real.Doc})
		srv <- err
	}()
	_, nc := creds(t, "n")
	_, err := enroll.Enroll(context.Background(), a, enroll.Req{Name: "n", Layer: "uni"}, nc, firstAddr)
	if !errors.Is(err, identity.ErrBadSignature) {
		t.Fatalf("Enroll with an impostor member: %v, want bad signature", err)
	}
	a.Close()
	<-srv
}

// TestNoKey: a request without a key, or with 32 random bytes and no
// document, is refused before anything is sent but the refusal.
func TestNoKey(t *testing.T) {
	m := &member{cfg: openConfig("uni"), members: map[layer.Addr]string{1: "m"}}
	for _, req := range []enroll.Req{
		{Version: enroll.Version, Name: "x", Layer: "uni"},
		{Version: enroll.Version, Name: "x", Layer: "uni", PubKey: make([]byte, 32), Nonce: make([]byte, enroll.NonceLen)},
		{Version: enroll.Version, Name: "x", Layer: "uni", PubKey: make([]byte, 32), Nonce: make([]byte, enroll.NonceLen), Doc: []byte("junk")},
	} {
		a, srv := serve(t, m)
		b, _ := enroll.Marshal(req)
		dl := time.Now().Add(5 * time.Second)
		if err := a.Write(b, dl); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, flow.MaxSDU)
		n, err := a.Read(buf, dl)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := enroll.UnmarshalChallenge(buf[:n])
		if err != nil || ch.Result != enroll.Refused {
			t.Fatalf("request %+v answered %+v, %v", req, ch, err)
		}
		if err := <-srv; err == nil {
			t.Fatalf("request %+v: Serve succeeded", req)
		}
	}
}

// TestBoardClock: a new member whose clock is not set (a board counts
// from 1970) enrolls in a layer admitted by an authority: it checks the
// member's certificate against the member's signed clock. Without it
// (the member sends no time), the certificate is not yet valid there.
func TestBoardClock(t *testing.T) {
	auth, _ := creds(t, "authority")
	mid, mc := creds(t, "m")
	nid, nc := creds(t, "n")
	now := time.Now()
	cert := func(id *identity.Identity, name string) []byte {
		b, err := identity.IssueCert(context.Background(), identity.Cert{Serial: uint64(len(name)) + 1, Subject: id.Public(), Name: name,
			NotBefore: now.Add(-time.Minute).Unix(), NotAfter: now.Add(time.Hour).Unix()}, auth)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mc.Cert, nc.Cert = cert(mid, "m"), cert(nid, "n")
	cfg := openConfig("uni")
	cfg.Admission = admission.Policy{Mode: admission.ModeAuthority, Authorities: []ed25519.PublicKey{auth.Public()}}
	boot := time.Unix(42, 0) // the board's clock: 42 s after 1970
	nc.Clock = func() time.Time { return boot }
	keyAddr := func(c enroll.Config, _ enroll.Members) (layer.Addr, error) {
		return addr.FromKey(c.Layer, int(c.AddrWidth), nid.Public()), nil
	}
	for _, sends := range []bool{true, false} {
		mc := mc
		if !sends {
			mc.Clock = func() time.Time { return boot } // a member that has no clock either
		}
		m := &member{cfg: cfg, members: map[layer.Addr]string{addr.FromKey("uni", 4, mid.Public()): "m"}, cred: &mc, protect: true}
		res, err, serr := runWith(t, m, enroll.Req{Name: "n", Layer: "uni"}, nc, keyAddr)
		switch {
		case sends && (err != nil || serr != nil):
			t.Fatalf("with the member's clock: Enroll %v, Serve %v", err, serr)
		case sends && res.MemberTime.Unix() < now.Unix()-5:
			t.Fatalf("member time %v", res.MemberTime)
		case !sends && !errors.Is(err, identity.ErrNotYetValid):
			t.Fatalf("without any clock: Enroll %v, want not yet valid", err)
		}
	}
}
