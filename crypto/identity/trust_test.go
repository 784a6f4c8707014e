package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var ctx = context.Background()

func seeded(t testing.TB, b byte) *Identity {
	t.Helper()
	id, err := FromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLabeled(t *testing.T) {
	a := seeded(t, 1)
	msg := []byte("link state")
	sig, err := SignLabeled(ctx, a, LabelLSU, msg)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := a.Sign(ctx, msg)
	tests := []struct {
		name  string
		pub   ed25519.PublicKey
		label string
		msg   []byte
		sig   []byte
		want  bool
	}{
		{"good", a.Public(), LabelLSU, msg, sig, true},
		{"other label", a.Public(), LabelDir, msg, sig, false},
		{"other key", seeded(t, 2).Public(), LabelLSU, msg, sig, false},
		{"other message", a.Public(), LabelLSU, []byte("link statf"), sig, false},
		{"unlabelled signature", a.Public(), LabelLSU, msg, raw, false},
		// label||0||msg is the signed string: moving bytes between label
		// and message must not keep the signature valid.
		{"shifted boundary", a.Public(), "ouro/lsu/v1\x00link", []byte(" state"), sig, false},
		{"empty label", a.Public(), "", msg, sig, false},
		{"short signature", a.Public(), LabelLSU, msg, sig[:63], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyLabeled(tt.pub, tt.label, tt.msg, tt.sig); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := SignLabeled(ctx, a, "bad\x00label", msg); err == nil {
		t.Error("signed under a label holding 0x00")
	}
	if got, ok := LabelOf(Labeled(LabelFA, []byte("x\x00y"))); !ok || got != LabelFA {
		t.Errorf("LabelOf: got %q %v, want %q", got, ok, LabelFA)
	}
	for _, bad := range []string{"", "\x00abc", "nolabel", strings.Repeat("a", MaxLabelLen+1) + "\x00"} {
		if l, ok := LabelOf([]byte(bad)); ok {
			t.Errorf("LabelOf(%q) = %q, want none", bad, l)
		}
	}
}

func TestMeasurement(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "image")
	data := []byte("an image")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := MeasureFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := Measurement(sha256.Sum256(data)); m != want {
		t.Errorf("MeasureFile: got %s, want %s (sha256sum)", m, want)
	}
	back, err := ParseMeasurement(m.String())
	if err != nil || back != m {
		t.Errorf("ParseMeasurement(String): got %s, %v", back, err)
	}
	for _, bad := range []string{"", "00", strings.Repeat("g", 64), strings.Repeat("0", 66)} {
		if _, err := ParseMeasurement(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseMeasurement(%q): got %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := MeasureFile(filepath.Join(dir, "none")); err == nil {
		t.Error("measured a missing file")
	}
	self, err := MeasureSelf()
	if err != nil || self.IsZero() {
		t.Errorf("MeasureSelf: %s, %v", self, err)
	}
	// Segment lengths are part of the measurement.
	if MeasureBytes([]byte("ab"), []byte("c")) == MeasureBytes([]byte("a"), []byte("bc")) {
		t.Error("MeasureBytes: segments moved across a boundary measure the same")
	}
	if MeasureBytes([]byte("abc")) == MeasureBytes([]byte("abc"), nil) {
		t.Error("MeasureBytes: an empty segment changes nothing")
	}
	// Pinned: SHA-256(00..03 "ab" 00..01 "c").
	want := sha256.Sum256([]byte("\x00\x00\x00\x00\x00\x00\x00\x02ab\x00\x00\x00\x00\x00\x00\x00\x01c"))
	if got := MeasureBytes([]byte("ab"), []byte("c")); got != want {
		t.Errorf("MeasureBytes: got %s, want %x", got, want)
	}
	// A measurement is a 32-byte CBOR byte string.
	b, err := codec.Marshal(m)
	if err != nil || len(b) != 34 || b[0] != 0x58 || b[1] != 32 {
		t.Errorf("CBOR of a measurement: % x, %v", b, err)
	}
}

// forge builds an envelope around body with sig, bypassing the signing
// functions' checks: what an attacker sends.
func forge(t testing.TB, body, sig []byte) []byte {
	t.Helper()
	b, err := codec.Marshal(envelope{Body: body, Sig: sig})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := codec.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDocument(t *testing.T) {
	node, other := seeded(t, 1), seeded(t, 2)
	now := time.Unix(1_800_000_000, 0)
	meas := MeasureBytes([]byte("code"))
	doc := NewDocument(node, "router-a", "hosted", meas, now)
	signed, err := doc.Sign(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyDocument(signed)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Equal(node.Public()) || got.ID != node.Name() || got.Name != "router-a" || got.Board != "hosted" ||
		got.Measurement != meas || got.Issued != now.Unix() || got.Version != Version {
		t.Errorf("round trip: got %+v", got)
	}
	again, _ := doc.Sign(ctx, node)
	if !bytes.Equal(again, signed) {
		t.Error("signing twice gave different bytes (not deterministic)")
	}

	body := mustMarshal(t, doc)
	otherSig, _ := SignLabeled(ctx, other, LabelDoc, body)
	goodSig, _ := SignLabeled(ctx, node, LabelDoc, body)
	claimed := doc
	claimed.Key, claimed.ID = other.Public(), other.Name()
	wrongID := doc
	wrongID.ID = other.Name()
	wrongIDBody := mustMarshal(t, wrongID)
	wrongIDSig, _ := SignLabeled(ctx, node, LabelDoc, wrongIDBody)
	v2 := doc
	v2.Version = 2
	v2Body := mustMarshal(t, v2)
	v2Sig, _ := SignLabeled(ctx, node, LabelDoc, v2Body)
	certSig, _ := SignLabeled(ctx, node, LabelCert, body)
	flipped := append([]byte(nil), signed...)
	flipped[len(flipped)-70] ^= 1 // a byte of the body (the signature is the last 64)

	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"signed by another key", forge(t, body, otherSig), ErrBadSignature},
		{"claims another key", forge(t, mustMarshal(t, claimed), goodSig), ErrBadSignature},
		{"signed under another label", forge(t, body, certSig), ErrBadSignature},
		{"body changed", flipped, ErrBadSignature},
		{"id not the key's", forge(t, wrongIDBody, wrongIDSig), ErrMalformed},
		{"version 2", forge(t, v2Body, v2Sig), ErrMalformed},
		{"trailing byte", append(append([]byte(nil), signed...), 0), ErrMalformed},
		{"truncated", signed[:len(signed)-1], ErrMalformed},
		{"short signature", forge(t, body, goodSig[:60]), ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"too big", forge(t, bytes.Repeat([]byte{0}, MaxDocumentSize+1), goodSig), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyDocument(tt.b)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("sign with another key", func(t *testing.T) {
		if _, err := doc.Sign(ctx, other); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("got %v, want ErrUnknownKey", err)
		}
	})
	t.Run("name too long", func(t *testing.T) {
		long := doc
		long.Name = strings.Repeat("n", MaxNameLen+1)
		if _, err := long.Sign(ctx, node); !errors.Is(err, ErrMalformed) {
			t.Errorf("got %v, want ErrMalformed", err)
		}
	})
	t.Run("zero fields filled", func(t *testing.T) {
		b, err := Document{Name: "x"}.Sign(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		d, err := VerifyDocument(b)
		if err != nil || d.ID != node.Name() || d.Version != Version {
			t.Errorf("got %+v, %v", d, err)
		}
	})
}

// TestNonDeterministic: another spelling of the same document (a
// non-minimal integer head) is refused, so a signed object has one
// encoding.
func TestNonDeterministic(t *testing.T) {
	node := seeded(t, 1)
	doc := NewDocument(node, "a", "hosted", Measurement{}, time.Unix(5, 0))
	body := mustMarshal(t, doc)
	// Issued = 5 is the last byte (0x05); spell it 0x18 0x05.
	if body[len(body)-1] != 0x05 {
		t.Fatalf("unexpected encoding % x", body)
	}
	long := append(append([]byte(nil), body[:len(body)-1]...), 0x18, 0x05)
	var d Document
	if err := codec.dec.Unmarshal(long, &d); err != nil || d.Issued != 5 {
		t.Fatalf("the decoder alone should accept it: %v", err)
	}
	sig, _ := SignLabeled(ctx, node, LabelDoc, long)
	if _, err := VerifyDocument(forge(t, long, sig)); !errors.Is(err, ErrMalformed) {
		t.Errorf("got %v, want ErrMalformed", err)
	}
}

func certFixture(t testing.TB) (auth, node *Identity, c Cert) {
	auth, node = seeded(t, 9), seeded(t, 1)
	return auth, node, Cert{
		Serial: 7, Subject: node.Public(), Name: "router-a", Layer: "net",
		Measurements: []Measurement{MeasureBytes([]byte("code"))},
		NotBefore:    1000, NotAfter: 2000,
	}
}

func TestCert(t *testing.T) {
	auth, node, c := certFixture(t)
	b, err := IssueCert(ctx, c, auth)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyCert(b, auth.Public(), time.Unix(1500, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != 7 || !got.Subject.Equal(node.Public()) || got.Name != "router-a" || got.Layer != "net" ||
		len(got.Measurements) != 1 || !got.Issuer.Equal(auth.Public()) || got.Version != Version {
		t.Errorf("round trip: got %+v", got)
	}
	if dc, err := DecodeCert(b); err != nil || dc.Serial != 7 {
		t.Errorf("DecodeCert: %+v, %v", dc, err)
	}
	rogue := seeded(t, 8)
	// A rogue authority issues a certificate naming the real authority as
	// issuer: its signature does not verify.
	claimed := c
	claimed.Version, claimed.Issuer = Version, auth.Public()
	body := mustMarshal(t, claimed)
	rogueSig, _ := SignLabeled(ctx, rogue, LabelCert, body)
	forged := forge(t, body, rogueSig)
	byRogue, _ := IssueCert(ctx, c, rogue)
	docSig, _ := SignLabeled(ctx, auth, LabelDoc, body)

	tests := []struct {
		name string
		b    []byte
		now  int64
		want error
	}{
		{"valid from", b, 1000, nil},
		{"last second", b, 1999, nil},
		{"not yet valid", b, 999, ErrNotYetValid},
		{"expired", b, 2000, ErrExpired},
		{"another authority", byRogue, 1500, ErrUnknownKey},
		{"forged issuer", forged, 1500, ErrBadSignature},
		{"signed as a document", forge(t, body, docSig), 1500, ErrBadSignature},
		{"garbage", []byte{0x82, 0x40, 0x40}, 1500, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyCert(tt.b, auth.Public(), time.Unix(tt.now, 0))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := DecodeCert(forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("DecodeCert(forged): got %v, want ErrBadSignature", err)
	}
	c2 := c
	if !c2.AllowsLayer("net") || c2.AllowsLayer("other") || !c2.AllowsMeasurement(c.Measurements[0]) || c2.AllowsMeasurement(Measurement{1}) {
		t.Error("Allows* wrong for a scoped certificate")
	}
	c2.Layer, c2.Measurements = "", nil
	if !c2.AllowsLayer("other") || !c2.AllowsMeasurement(Measurement{1}) {
		t.Error("Allows* wrong for an unscoped certificate")
	}

	bad := []struct {
		name string
		mod  func(*Cert)
		want error
	}{
		{"serial 0", func(c *Cert) { c.Serial = 0 }, ErrMalformed},
		{"no name", func(c *Cert) { c.Name = "" }, ErrMalformed},
		{"empty validity", func(c *Cert) { c.NotAfter = c.NotBefore }, ErrMalformed},
		{"short subject", func(c *Cert) { c.Subject = c.Subject[:31] }, ErrMalformed},
		{"too many measurements", func(c *Cert) { c.Measurements = make([]Measurement, MaxMeasurements+1) }, ErrMalformed},
		{"issuer not the signer", func(c *Cert) { c.Issuer = rogue.Public() }, ErrUnknownKey},
	}
	for _, tt := range bad {
		t.Run("issue/"+tt.name, func(t *testing.T) {
			x := c
			tt.mod(&x)
			if _, err := IssueCert(ctx, x, auth); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCRL(t *testing.T) {
	auth, node, c := certFixture(t)
	c.Issuer, c.Version = auth.Public(), Version
	other := seeded(t, 3)
	l := CRL{Seq: 2, Issued: 1500, Serials: []uint64{7}}
	b, err := IssueCRL(ctx, l, auth)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := VerifyCRL(b, auth.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !crl.Revoked(c) {
		t.Error("serial 7 not revoked")
	}
	c8 := c
	c8.Serial = 8
	if crl.Revoked(c8) {
		t.Error("serial 8 revoked")
	}
	byKey := &CRL{Version: Version, Issuer: auth.Public(), Keys: []ed25519.PublicKey{node.Public()}}
	if !byKey.Revoked(c8) {
		t.Error("key not revoked")
	}
	foreign := c
	foreign.Issuer = other.Public()
	if crl.Revoked(foreign) || byKey.Revoked(foreign) {
		t.Error("a list revoked another issuer's certificate")
	}
	if (*CRL)(nil).Revoked(c) {
		t.Error("nil list revoked")
	}
	older := &CRL{Issuer: auth.Public(), Seq: 1}
	if !crl.Replaces(older) || older.Replaces(crl) || crl.Replaces(crl) || !crl.Replaces(nil) {
		t.Error("Replaces: wrong order")
	}
	if crl.Replaces(&CRL{Issuer: other.Public(), Seq: 0}) {
		t.Error("Replaces: another issuer's list")
	}
	if _, err := VerifyCRL(b, other.Public()); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("another authority: got %v, want ErrUnknownKey", err)
	}
	body := mustMarshal(t, *crl)
	sig, _ := SignLabeled(ctx, other, LabelCRL, body)
	if _, err := VerifyCRL(forge(t, body, sig), auth.Public()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged: got %v, want ErrBadSignature", err)
	}
	if _, err := DecodeCRL(forge(t, body, sig)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("DecodeCRL(forged): got %v, want ErrBadSignature", err)
	}
	if d, err := DecodeCRL(b); err != nil || d.Seq != 2 {
		t.Errorf("DecodeCRL: %+v, %v", d, err)
	}
	full := CRL{Serials: make([]uint64, MaxCRLEntries)}
	for i := range full.Serials {
		full.Serials[i] = uint64(i) + 1<<40
	}
	fb, err := IssueCRL(ctx, full, auth)
	if err != nil {
		t.Fatalf("a full list: %v", err)
	}
	if _, err := VerifyCRL(fb, auth.Public()); err != nil {
		t.Errorf("a full list: %v", err)
	}
	full.Keys = []ed25519.PublicKey{node.Public()}
	if _, err := IssueCRL(ctx, full, auth); !errors.Is(err, ErrMalformed) {
		t.Errorf("an over-full list: got %v, want ErrMalformed", err)
	}
}

func FuzzVerifyDocument(f *testing.F) {
	node := seeded(f, 1)
	b, _ := NewDocument(node, "router", "hosted", MeasureBytes([]byte("x")), time.Unix(1, 0)).Sign(ctx, node)
	f.Add(b)
	f.Add([]byte{0x82, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := VerifyDocument(b)
		if err != nil {
			return
		}
		if d.ID != NameOf(d.Key) || len(d.Key) != ed25519.PublicKeySize {
			t.Fatalf("accepted %+v", d)
		}
		if again, err := d.Sign(ctx, nonSigner{d.Key}); err == nil && !bytes.Equal(again, b) {
			t.Fatal("re-signing changed the bytes")
		}
	})
}

// nonSigner has a public key and cannot sign: it lets the fuzz target
// check that a decoded document re-encodes to the same bytes.
type nonSigner struct{ pub ed25519.PublicKey }

func (n nonSigner) Public() ed25519.PublicKey { return n.pub }
func (n nonSigner) Sign(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("no key")
}

func FuzzVerifyCert(f *testing.F) {
	auth, _, c := certFixture(f)
	b, _ := IssueCert(ctx, c, auth)
	f.Add(b)
	c.Measurements, c.Layer = nil, ""
	b, _ = IssueCert(ctx, c, auth)
	f.Add(b)
	c.Names = []string{"svc", "db"} // version 2
	b, _ = IssueCert(ctx, c, auth)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := VerifyCert(b, auth.Public(), time.Unix(1500, 0))
		if err == nil && (c.Serial == 0 || c.NotAfter <= 1500 || c.NotBefore > 1500) {
			t.Fatalf("accepted %+v", c)
		}
		if d, err := DecodeCert(b); err == nil && len(d.Issuer) != ed25519.PublicKeySize {
			t.Fatalf("decoded %+v", d)
		}
	})
}

func FuzzVerifyCRL(f *testing.F) {
	auth := seeded(f, 9)
	b, _ := IssueCRL(ctx, CRL{Seq: 1, Serials: []uint64{1, 2}, Keys: []ed25519.PublicKey{auth.Public()}}, auth)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := VerifyCRL(b, auth.Public())
		if err == nil && len(l.Serials)+len(l.Keys) > MaxCRLEntries {
			t.Fatalf("accepted %d entries", len(l.Serials)+len(l.Keys))
		}
		DecodeCRL(b)
	})
}

func FuzzEnvelope(f *testing.F) {
	f.Add(forge(f, []byte("body"), make([]byte, 64)))
	f.Add([]byte{0x82, 0x40, 0x58, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e envelope
		if err := codec.Unmarshal(b, MaxCRLSize, &e); err != nil {
			return
		}
		if again := forge(t, e.Body, e.Sig); !bytes.Equal(again, b) {
			t.Fatal("accepted a non-deterministic envelope")
		}
	})
}

// TestWireVectors pins the encodings of docs/wire/identity.md. The
// signatures were cross-checked with pyca/cryptography (Ed25519 over
// label || 0x00 || body, seeds 32 × 0x01 and 32 × 0x09), the measurement
// with hashlib.
func TestWireVectors(t *testing.T) {
	node, auth := seeded(t, 1), seeded(t, 9)
	meas := MeasureBytes([]byte("image"))
	if got, want := meas.String(), "11ceda7ebb8bd94c71924e3ae57b9f87f2b4c7498b5b9d4addf216f5a614babf"; got != want {
		t.Errorf("measurement: got %s, want %s", got, want)
	}
	doc, err := NewDocument(node, "router-a", "hosted", meas, time.Unix(1_800_000_000, 0)).Sign(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := IssueCert(ctx, Cert{Serial: 17, Subject: node.Public(), Name: "router-a", Layer: "net",
		NotBefore: 1_800_000_000, NotAfter: 1_802_592_000}, auth)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := IssueCRL(ctx, CRL{Seq: 1, Issued: 1_800_000_000, Serials: []uint64{17}}, auth)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		name string
		got  []byte
		want string
	}{
		{"document", doc, "82586c870158208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c68726f757465722d617067723271376766356c6836707a66646e66686f73746564582011ceda7ebb8bd94c71924e3ae57b9f87f2b4c7498b5b9d4addf216f5a614babf1a6b49d200" +
			"58402c45e7dc2e1811c1905d3ba6e037ddd71c5218cf91c21e95ab49aa869430fb6c0e9456a23744a51ff8b102b1c8a1aef08114e195c7c2ab6ab69a01d8f0a1870e"},
		{"certificate", cert, "82585f89011158208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c68726f757465722d61636e6574801a6b49d2001a6b715f005820fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618" +
			"5840fafc856505e5f9036b1d57a3cd7a6a169aa1b79f195d7e336cf0220fddd67c19938d5c5e88029f010716220a7c65b8d3486a2a9bddc2a7b8b6b9f377e967120d"},
		{"revocation list", crl, "82582d86015820fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618011a6b49d200811180" +
			"58406145921aae61d205df739c340007e6c549b0bea7e2f2f5efa4813bc86f2cc925e68136e06df0ae8263817ae62d14edd0b1da61b9d337d22e6bf2b52d32df9909"},
	} {
		if got := hex.EncodeToString(v.got); got != v.want {
			t.Errorf("%s:\ngot  %s\nwant %s", v.name, got, v.want)
		}
	}
	// "No measurements" has one spelling: an empty array, not null.
	c, _ := DecodeCert(cert)
	body := mustMarshal(t, c)
	i := bytes.Index(body, []byte("net\x80"))
	if i < 0 {
		t.Fatalf("no empty measurement list in % x", body)
	}
	null := append(append(append([]byte(nil), body[:i+3]...), 0xf6), body[i+4:]...)
	sig, _ := SignLabeled(ctx, auth, LabelCert, null)
	if _, err := VerifyCert(forge(t, null, sig), auth.Public(), time.Unix(1_800_000_001, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("null measurements: got %v, want ErrMalformed", err)
	}
}
