package identity

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// signBody signs an arbitrary certificate body as the authority would,
// so the tests can make shapes IssueCert refuses to make.
func signBody(t *testing.T, auth *Identity, v any) []byte {
	t.Helper()
	body := mustMarshal(t, v)
	sig, err := SignLabeled(ctx, auth, LabelCert, body)
	if err != nil {
		t.Fatal(err)
	}
	return forge(t, body, sig)
}

func TestCertNames(t *testing.T) {
	auth, _, c := certFixture(t)
	now := time.Unix(1500, 0)

	// Without names: version 1, the nine-field shape of old certificates.
	b1, err := IssueCert(ctx, c, auth)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := VerifyCert(b1, auth.Public(), now)
	if err != nil || c1.Version != CertVersion1 || len(c1.Names) != 0 || c1.AllowsName("svc") {
		t.Fatalf("version 1: %+v, %v", c1, err)
	}

	// With names: version 2, and the names come back in order.
	c.Names = []string{"svc", "db.main"}
	b2, err := IssueCert(ctx, c, auth)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := VerifyCert(b2, auth.Public(), now)
	if err != nil || c2.Version != CertVersion2 || fmt.Sprint(c2.Names) != "[svc db.main]" {
		t.Fatalf("version 2: %+v, %v", c2, err)
	}
	if !c2.AllowsName("svc") || !c2.AllowsName("db.main") || c2.AllowsName("sv") || c2.AllowsName("svc2") {
		t.Fatalf("AllowsName of %v wrong", c2.Names)
	}
	if len(b2) <= len(b1) {
		t.Fatalf("version 2 (%d bytes) not longer than version 1 (%d)", len(b2), len(b1))
	}

	// Refused at issue and at decode alike.
	many := make([]string, MaxCertNames+1)
	for i := range many {
		many[i] = fmt.Sprint("n", i)
	}
	long := string(make([]byte, MaxNameLen+1))
	bad := map[string]Cert{
		"too many names":      {Version: CertVersion2, Names: many},
		"duplicate":           {Version: CertVersion2, Names: []string{"a", "b", "a"}},
		"empty name":          {Version: CertVersion2, Names: []string{"a", ""}},
		"long name":           {Version: CertVersion2, Names: []string{long}},
		"version 1 names":     {Version: CertVersion1, Names: []string{"a"}},
		"version 2 no names":  {Version: CertVersion2},
		"version 3":           {Version: 3, Names: []string{"a"}},
		"version 2 nil names": {Version: CertVersion2, Names: nil},
	}
	for name, mod := range bad {
		t.Run(name, func(t *testing.T) {
			d := c
			d.Version, d.Names, d.Issuer = mod.Version, mod.Names, auth.Public()
			if _, err := IssueCert(ctx, d, auth); !errors.Is(err, ErrMalformed) {
				t.Errorf("IssueCert: %v, want ErrMalformed", err)
			}
			// The ten-field shape, whatever the version says.
			if _, err := VerifyCert(signBody(t, auth, asV2(d)), auth.Public(), now); !errors.Is(err, ErrMalformed) {
				t.Errorf("VerifyCert: %v, want ErrMalformed", err)
			}
		})
	}

	// A version 1 in the shape of version 2 (an empty name list appended)
	// is a second spelling of a version 1 certificate: refused.
	d := c
	d.Version, d.Issuer = CertVersion1, auth.Public()
	odd := asV2(d)
	odd.Names = []string{}
	if _, err := VerifyCert(signBody(t, auth, odd), auth.Public(), now); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 1 in the version 2 shape: %v, want ErrMalformed", err)
	}
	// A version 2 in the shape of version 1: refused.
	d.Version, d.Names = CertVersion2, nil
	if _, err := VerifyCert(signBody(t, auth, d.wire()), auth.Public(), now); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 2 in the version 1 shape: %v, want ErrMalformed", err)
	}
	// Names are signed: changing one breaks the signature.
	c.Version, c.Issuer, c.Names = CertVersion2, auth.Public(), []string{"svd", "db.main"}
	e := envelope{}
	if err := codec.Unmarshal(b2, 1<<13, &e); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyCert(forge(t, mustMarshal(t, c), e.Sig), auth.Public(), now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("renamed: %v, want ErrBadSignature", err)
	}
}

func asV2(c Cert) certV2 {
	return certV2{Version: c.Version, Serial: c.Serial, Subject: c.Subject, Name: c.Name, Layer: c.Layer,
		Measurements: c.Measurements, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Issuer: c.Issuer, Names: c.Names}
}
