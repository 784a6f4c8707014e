package admission

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/crypto/identity"
)

var ctx = context.Background()

func seeded(t testing.TB, b byte) *identity.Identity {
	t.Helper()
	id, err := identity.FromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// world is a layer authority, a rogue authority, a member, a stranger
// and their documents and certificates.
type world struct {
	auth, rogue, node, stranger  *identity.Identity
	good, other                  identity.Measurement
	doc, strangerDoc, unmeasured identity.Document
	now                          time.Time
}

func newWorld(t testing.TB) *world {
	w := &world{auth: seeded(t, 9), rogue: seeded(t, 8), node: seeded(t, 1), stranger: seeded(t, 2),
		good: identity.MeasureBytes([]byte("good image")), other: identity.MeasureBytes([]byte("other image")),
		now: time.Unix(1_800_000_000, 0)}
	verified := func(id *identity.Identity, name string, m identity.Measurement) identity.Document {
		b, err := identity.NewDocument(id, name, "hosted", m, w.now).Sign(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		d, err := identity.VerifyDocument(b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	w.doc = verified(w.node, "a", w.good)
	w.strangerDoc = verified(w.stranger, "x", w.good)
	w.unmeasured = verified(w.node, "a", identity.Measurement{})
	return w
}

// cert issues a certificate for the member, changed by mod.
func (w *world) cert(t testing.TB, by *identity.Identity, mod func(*identity.Cert)) []byte {
	c := identity.Cert{Serial: 42, Subject: w.node.Public(), Name: "a", Layer: "net",
		NotBefore: w.now.Add(-time.Hour).Unix(), NotAfter: w.now.Add(time.Hour).Unix()}
	if mod != nil {
		mod(&c)
	}
	b, err := identity.IssueCert(ctx, c, by)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *world) crl(t testing.TB, by *identity.Identity, l identity.CRL) *identity.CRL {
	b, err := identity.IssueCRL(ctx, l, by)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.VerifyCRL(b, by.Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAdmit(t *testing.T) {
	w := newWorld(t)
	authority := Policy{Mode: ModeAuthority, Layer: "net", Authorities: []ed25519.PublicKey{w.auth.Public()}}
	allow := Policy{Mode: ModeAllow, Keys: []ed25519.PublicKey{w.node.Public()}}
	measured := func(p Policy) Policy { p.Measured = []identity.Measurement{w.good}; return p }
	good := w.cert(t, w.auth, nil)
	anyLayer := w.cert(t, w.auth, func(c *identity.Cert) { c.Layer = "" })
	forged := append([]byte(nil), good...)
	forged[len(forged)-1] ^= 1
	revokedSerial := w.crl(t, w.auth, identity.CRL{Seq: 1, Serials: []uint64{42}})
	revokedKey := w.crl(t, w.auth, identity.CRL{Seq: 1, Keys: []ed25519.PublicKey{w.node.Public()}})
	otherSerial := w.crl(t, w.auth, identity.CRL{Seq: 1, Serials: []uint64{43}})
	rogueList := w.crl(t, w.rogue, identity.CRL{Seq: 9, Serials: []uint64{42}})

	tests := []struct {
		name string
		p    Policy
		doc  identity.Document
		cert []byte
		crl  *identity.CRL
		now  time.Time
		want error
	}{
		{"zero policy refuses", Policy{}, w.doc, good, nil, w.now, ErrNoPolicy},
		{"unknown mode refuses", Policy{Mode: 7}, w.doc, nil, nil, w.now, ErrNoPolicy},
		{"open admits", Policy{Mode: ModeOpen}, w.doc, nil, nil, w.now, nil},
		{"open admits a node without key", Policy{Mode: ModeOpen}, identity.Document{}, nil, nil, w.now, nil},
		{"open measured admits", measured(Policy{Mode: ModeOpen}), w.doc, nil, nil, w.now, nil},
		{"open measured refuses another image", measured(Policy{Mode: ModeOpen}), w.unmeasured, nil, nil, w.now, ErrMeasurement},
		{"open measured refuses a node without key", measured(Policy{Mode: ModeOpen}), identity.Document{}, nil, nil, w.now, ErrUnknownKey},
		{"allow admits a listed key", allow, w.doc, nil, nil, w.now, nil},
		{"allow refuses an unlisted key", allow, w.strangerDoc, nil, nil, w.now, ErrUnknownKey},
		{"allow refuses a node without key", allow, identity.Document{}, nil, nil, w.now, ErrUnknownKey},
		{"allow measured refuses another image", measured(allow), w.unmeasured, nil, nil, w.now, ErrMeasurement},
		{"authority admits", authority, w.doc, good, nil, w.now, nil},
		{"authority admits an any-layer certificate", authority, w.doc, anyLayer, nil, w.now, nil},
		{"authority refuses without certificate", authority, w.doc, nil, nil, w.now, ErrUnknownKey},
		{"authority refuses a rogue authority's certificate", authority, w.doc, w.cert(t, w.rogue, nil), nil, w.now, ErrUnknownKey},
		{"authority refuses a forged certificate", authority, w.doc, forged, nil, w.now, ErrBadSignature},
		{"authority refuses garbage", authority, w.doc, []byte{1, 2, 3}, nil, w.now, ErrMalformed},
		{"authority refuses another's certificate", authority, w.strangerDoc, good, nil, w.now, ErrUnknownKey},
		{"authority refuses an expired certificate", authority, w.doc, good, nil, w.now.Add(time.Hour), ErrExpired},
		{"authority refuses a future certificate", authority, w.doc, good, nil, w.now.Add(-2 * time.Hour), ErrNotYetValid},
		{"authority refuses a revoked serial", authority, w.doc, good, revokedSerial, w.now, ErrRevoked},
		{"authority refuses a revoked key", authority, w.doc, good, revokedKey, w.now, ErrRevoked},
		{"authority admits with another serial revoked", authority, w.doc, good, otherSerial, w.now, nil},
		{"authority ignores another issuer's list", authority, w.doc, good, rogueList, w.now, nil},
		{"authority refuses a certificate for another layer", authority, w.doc,
			w.cert(t, w.auth, func(c *identity.Cert) { c.Layer = "other" }), nil, w.now, ErrScope},
		{"authority refuses another name", authority, w.doc,
			w.cert(t, w.auth, func(c *identity.Cert) { c.Name = "b" }), nil, w.now, ErrScope},
		{"authority refuses an image the certificate does not allow", authority, w.doc,
			w.cert(t, w.auth, func(c *identity.Cert) { c.Measurements = []identity.Measurement{w.other} }), nil, w.now, ErrMeasurement},
		{"authority admits an image the certificate allows", authority, w.doc,
			w.cert(t, w.auth, func(c *identity.Cert) { c.Measurements = []identity.Measurement{w.other, w.good} }), nil, w.now, nil},
		{"authority measured refuses another image", measured(authority), w.unmeasured, good, nil, w.now, ErrMeasurement},
		{"authority measured admits", measured(authority), w.doc, good, nil, w.now, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Admit(tt.doc, tt.cert, tt.crl, tt.now)
			if (tt.want == nil) != (err == nil) || !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "admission: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	w := newWorld(t)
	k := w.node.Public()
	a := w.auth.Public()
	hexOf := hex.EncodeToString
	tests := []struct {
		in   string
		want Policy
		err  error
	}{
		{"open", Policy{Mode: ModeOpen}, nil},
		{"allow key=" + hexOf(k), Policy{Mode: ModeAllow, Keys: []ed25519.PublicKey{k}}, nil},
		{"authority authority=" + hexOf(a) + " layer=net", Policy{Mode: ModeAuthority, Layer: "net", Authorities: []ed25519.PublicKey{a}}, nil},
		{"open, measurement=" + w.good.String(), Policy{Mode: ModeOpen, Measured: []identity.Measurement{w.good}}, nil},
		{"", Policy{}, ErrNoPolicy},
		{"none", Policy{}, ErrInvalid},
		{"closed", Policy{}, ErrInvalid},
		{"allow", Policy{}, ErrInvalid},
		{"authority", Policy{}, ErrInvalid},
		{"open key=" + hexOf(k), Policy{}, ErrInvalid},
		{"allow authority=" + hexOf(a), Policy{}, ErrInvalid},
		{"allow key=abcd", Policy{}, ErrInvalid},
		{"open measurement=00", Policy{}, ErrInvalid},
		{"open colour=blue", Policy{}, ErrInvalid},
		{"open layer", Policy{}, ErrInvalid},
		{"open layer=a=b", Policy{Mode: ModeOpen, Layer: "a=b"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("got %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want.String() {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			again, err := Parse(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("Parse(String()) = %s, %v", again, err)
			}
		})
	}
	var p Policy
	if err := p.UnmarshalText([]byte("open")); err != nil || p.Mode != ModeOpen {
		t.Errorf("UnmarshalText: %v, %v", p, err)
	}
	if (Policy{}).Validate() != ErrNoPolicy {
		t.Error("the zero policy validates")
	}
}

// layerConfig stands for a layer configuration that carries a policy,
// encoded by another CBOR mode (as layer/ does with flow.Codec).
type layerConfig struct {
	_      struct{} `cbor:",toarray"`
	Name   string
	Policy Policy
}

func TestCBOR(t *testing.T) {
	w := newWorld(t)
	enc, _ := cbor.CoreDetEncOptions().EncMode()
	for _, p := range []Policy{
		{},
		{Mode: ModeOpen},
		{Mode: ModeAllow, Keys: []ed25519.PublicKey{w.node.Public(), w.stranger.Public()}, Measured: []identity.Measurement{w.good}},
		{Mode: ModeAuthority, Layer: "net", Authorities: []ed25519.PublicKey{w.auth.Public()}},
	} {
		t.Run(p.String(), func(t *testing.T) {
			b, err := enc.Marshal(layerConfig{Name: "net", Policy: p})
			if err != nil {
				t.Fatal(err)
			}
			var got layerConfig
			if err := cbor.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.Policy.String() != p.String() {
				t.Errorf("got %s, want %s", got.Policy, p)
			}
			again, _ := enc.Marshal(got)
			if !bytes.Equal(again, b) {
				t.Error("re-encoding changed the bytes")
			}
		})
	}
	bad := []struct {
		name string
		w    policyWire
	}{
		{"version 2", policyWire{Version: 2, Mode: ModeOpen}},
		{"unknown mode", policyWire{Version: 1, Mode: 9}},
		{"short key", policyWire{Version: 1, Mode: ModeAllow, Keys: []ed25519.PublicKey{make([]byte, 31)}}},
		{"keys with open", policyWire{Version: 1, Mode: ModeOpen, Keys: []ed25519.PublicKey{make([]byte, 32)}}},
		{"too many authorities", policyWire{Version: 1, Mode: ModeAuthority, Authorities: make([]ed25519.PublicKey, MaxAuthorities+1)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.w.Authorities {
				tt.w.Authorities[i] = make([]byte, 32)
			}
			b, _ := enc.Marshal(tt.w)
			var p Policy
			if err := cbor.Unmarshal(b, &p); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := enc.Marshal(Policy{Mode: ModeAllow}); err == nil {
		t.Error("encoded an allow policy without keys")
	}
}

func FuzzPolicy(f *testing.F) {
	w := newWorld(f)
	for _, p := range []Policy{{}, {Mode: ModeOpen, Measured: []identity.Measurement{w.good}},
		{Mode: ModeAuthority, Layer: "net", Authorities: []ed25519.PublicKey{w.auth.Public()}}} {
		b, _ := p.MarshalCBOR()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Policy
		if err := p.UnmarshalCBOR(b); err != nil {
			return
		}
		again, err := p.MarshalCBOR()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded %s, re-encodes to % x (%v)", p, again, err)
		}
		if p.Mode != ModeNone {
			if q, err := Parse(p.String()); err != nil || q.String() != p.String() {
				t.Fatalf("text form %q: %v", p, err)
			}
		}
	})
}
