package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func mustSign(t *testing.T, id *Identity, msg []byte) []byte {
	t.Helper()
	sig, err := id.Sign(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors pins the derivation. The HUK vector was cross-checked with
// Python (hmac/hashlib HKDF and pyca/cryptography's Ed25519); the seed
// vector is RFC 8032 section 7.1, TEST 1.
func TestVectors(t *testing.T) {
	t.Run("huk", func(t *testing.T) {
		huk := make([]byte, 32)
		for i := range huk {
			huk[i] = byte(i)
		}
		id, err := FromHUK(huk)
		if err != nil {
			t.Fatal(err)
		}
		wantPub := "3e09d97bfe696740f7d4a98136314bceae5815cb46b14269515a74ad6a80e958"
		if got := hex.EncodeToString(id.Public()); got != wantPub {
			t.Errorf("got public key %s, want %s", got, wantPub)
		}
		if got, want := id.Name(), "l5r6lrxkyiav6oax"; got != want {
			t.Errorf("got name %s, want %s", got, want)
		}
		wantSig := "daff85fb752ad59b1542b8669c2688cbcf587c080f8c14e130fae262ba820d96" +
			"d9f7c8a73d4d600049a2374544a3c07fa5b6f95db3e0fa54de375d19a0946309"
		if got := hex.EncodeToString(mustSign(t, id, []byte("ouro"))); got != wantSig {
			t.Errorf("got signature %s, want %s", got, wantSig)
		}
	})
	t.Run("rfc8032-test1", func(t *testing.T) {
		id, err := FromSeed(mustHex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := hex.EncodeToString(id.Public()), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"; got != want {
			t.Errorf("got public key %s, want %s", got, want)
		}
		want := "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155" +
			"5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
		if got := hex.EncodeToString(mustSign(t, id, nil)); got != want {
			t.Errorf("got signature %s, want %s", got, want)
		}
	})
}

func TestSignVerify(t *testing.T) {
	a, _ := Generate(nil)
	b, _ := Generate(nil)
	msg := []byte("enrollment request")
	sig := mustSign(t, a, msg)
	tests := []struct {
		name string
		pub  ed25519.PublicKey
		msg  []byte
		sig  []byte
		want bool
	}{
		{"good", a.Public(), msg, sig, true},
		{"other key", b.Public(), msg, sig, false},
		{"other message", a.Public(), []byte("x"), sig, false},
		{"short signature", a.Public(), msg, sig[:10], false},
		{"short key", a.Public()[:5], msg, sig, false},
		{"nil key", nil, msg, sig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.pub, tt.msg, tt.sig); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if !a.Verify(msg, sig) {
		t.Error("method Verify rejected a good signature")
	}
}

func TestHUK(t *testing.T) {
	if _, err := FromHUK(make([]byte, 8)); !errors.Is(err, ErrShortHUK) {
		t.Errorf("got %v, want ErrShortHUK", err)
	}
	h1 := bytes.Repeat([]byte{1}, 32)
	h2 := bytes.Repeat([]byte{2}, 32)
	a, _ := FromHUK(h1)
	a2, _ := FromHUK(h1)
	b, _ := FromHUK(h2)
	if !a.Public().Equal(a2.Public()) {
		t.Error("same HUK, different keys")
	}
	if a.Public().Equal(b.Public()) || a.Name() == b.Name() {
		t.Error("different HUKs, same key")
	}
	if len(a.Name()) != NameLen {
		t.Errorf("got name length %d, want %d", len(a.Name()), NameLen)
	}
	if _, err := FromSeed(make([]byte, 31)); !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	if _, err := Load(path); !errors.Is(err, ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
	id, err := LoadOrCreate(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("got mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := LoadOrCreate(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Name() != id.Name() || !again.Public().Equal(id.Public()) {
		t.Errorf("reloaded %s, want %s", again.Name(), id.Name())
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); !errors.Is(err, ErrExposed) {
			t.Errorf("mode 0644: got %v, want ErrExposed", err)
		}
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	if _, err := Load(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("garbage: got %v, want ErrInvalid", err)
	}
}

func TestPEMRoundTrip(t *testing.T) {
	id, _ := Generate(nil)
	got, err := ParsePEM(id.MarshalPEM())
	if err != nil {
		t.Fatal(err)
	}
	if got.Name() != id.Name() {
		t.Errorf("got %s, want %s", got.Name(), id.Name())
	}
	// An openssl-written key (openssl genpkey -algorithm ed25519), RFC 8410 section 10.3.
	const openssl = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n"
	k, err := ParsePEM([]byte(openssl))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(k.Public()), "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"; got != want {
		t.Errorf("RFC 8410 key: got public %s, want %s", got, want)
	}
}

func FuzzParsePEM(f *testing.F) {
	id, _ := FromSeed(make([]byte, 32))
	f.Add(id.MarshalPEM())
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := ParsePEM(data)
		if err == nil && len(id.Public()) != ed25519.PublicKeySize {
			t.Fatal("parsed a key of the wrong size")
		}
	})
}

// TestParsePKCS8Forms: the forms of an ed25519 key RFC 8410 and RFC 5958
// allow are read (the seed), others refused; MarshalPEM writes what
// crypto/x509 writes.
func TestParsePKCS8Forms(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	id := fromPriv(priv)
	b, _ := pem.Decode(id.MarshalPEM())
	if !bytes.Equal(b.Bytes, der) {
		t.Errorf("MarshalPEM wrote %x, x509 %x", b.Bytes, der)
	}
	wrap := func(body []byte) []byte { return append([]byte{0x30, byte(len(body))}, body...) }
	v1 := append([]byte{}, der[2:]...)
	v1[2] = 1
	withPub := wrap(append(append(v1, 0x81, 0x21, 0x00), priv.Public().(ed25519.PublicKey)...))
	withAttrs := wrap(append(append([]byte{}, der[2:]...), 0xa0, 0x00))
	for _, c := range []struct {
		name string
		der  []byte
		ok   bool
	}{
		{"x509", der, true},
		{"v2 with the public key", withPub, true},
		{"attributes", withAttrs, true},
		{"version 2", wrap(append([]byte{0x02, 0x01, 0x02}, der[5:]...)), false},
		{"another algorithm", wrap(append(append([]byte{}, der[2:9]...), append([]byte{0x2b, 0x65, 0x71}, der[12:]...)...)), false},
		{"short seed", wrap(append([]byte{0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x21, 0x04, 0x1f}, priv.Seed()[:31]...)), false},
		{"truncated", der[:47], false},
		{"trailing data", append(append([]byte{}, der...), 0), false},
	} {
		seed, err := parsePKCS8(c.der)
		if c.ok && (err != nil || !bytes.Equal(seed, priv.Seed())) {
			t.Errorf("%s: got %x, %v; want the seed", c.name, seed, err)
		}
		if !c.ok && err == nil {
			t.Errorf("%s: accepted", c.name)
		}
		if c.ok {
			if _, err := x509.ParsePKCS8PrivateKey(c.der); err != nil {
				t.Errorf("%s: x509 refuses it: %v", c.name, err)
			}
		}
	}
}

// FuzzParsePKCS8: whatever parsePKCS8 accepts, crypto/x509 accepts as
// the same ed25519 key (it is never more lenient than x509 was).
func FuzzParsePKCS8(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	f.Add(der)
	f.Add(der[:20])
	f.Fuzz(func(t *testing.T, der []byte) {
		seed, err := parsePKCS8(der)
		if err != nil {
			return
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("accepted %x, which x509 refuses: %v", der, err)
		}
		if p, ok := k.(ed25519.PrivateKey); !ok || !bytes.Equal(p.Seed(), seed) {
			t.Fatalf("accepted %x as seed %x; x509 reads %T %x", der, seed, k, k)
		}
	})
}
