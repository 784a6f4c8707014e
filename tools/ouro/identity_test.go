package main

import (
	"context"
	"debug/elf"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// field returns the value printed for name in "name  value" output.
func field(t *testing.T, out, name string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, name+"  "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no field %q in:\n%s", name, out)
	return ""
}

// keygen makes a key file with "ouro keygen" and returns its path and identity.
func keygen(t *testing.T, tn *testNet, dir, name string) (string, *identity.Identity) {
	t.Helper()
	p := filepath.Join(dir, name)
	code, out, errs := tn.ouro(context.Background(), "keygen", "-o", p)
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errs)
	}
	id, err := identity.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := field(t, out, "key"); got != hex.EncodeToString(id.Public()) {
		t.Errorf("keygen printed key %s, the file holds %x", got, id.Public())
	}
	if got := field(t, out, "id"); got != id.Name() {
		t.Errorf("keygen printed id %s, want %s", got, id.Name())
	}
	return p, id
}

func TestKeygen(t *testing.T) {
	tn := newTestNet()
	dir := t.TempDir()
	p, _ := keygen(t, tn, dir, "node.key")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(p)
	code, _, errs := tn.ouro(context.Background(), "keygen", "-o", p)
	if code != 1 || !strings.Contains(errs, "not overwritten") {
		t.Errorf("second keygen: exit %d, %q; want 1 and a refusal", code, errs)
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Error("keygen overwrote an existing key")
	}
	code, out, _ := tn.ouro(context.Background(), "keygen")
	if code != 0 {
		t.Fatalf("keygen to stdout: exit %d", code)
	}
	if _, err := identity.ParsePEM([]byte(out)); err != nil {
		t.Errorf("keygen to stdout: %v", err)
	}
	code, out, _ = tn.ouro(context.Background(), "--json", "keygen", "-o", filepath.Join(dir, "j.key"))
	var j map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || len(j["key"]) != 64 || len(j["id"]) != identity.NameLen {
		t.Errorf("keygen --json: exit %d, %s", code, out)
	}
}

func TestIdentity(t *testing.T) {
	tn := newTestNet()
	dir := t.TempDir()
	keyFile, id := keygen(t, tn, dir, "node.key")
	image := filepath.Join(dir, "router")
	os.WriteFile(image, []byte("router image"), 0o755)
	meas, _ := identity.MeasureFile(image)
	ctx := context.Background()

	t.Run("key file", func(t *testing.T) {
		code, out, errs := tn.ouro(ctx, "id", "--key", keyFile, "--name", "router-a", "--image", image)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if field(t, out, "key") != hex.EncodeToString(id.Public()) || field(t, out, "id") != id.Name() ||
			field(t, out, "name") != "router-a" || field(t, out, "measurement") != meas.String() || field(t, out, "board") != "hosted" {
			t.Errorf("output:\n%s", out)
		}
		raw, err := base64.StdEncoding.DecodeString(field(t, out, "document"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := identity.VerifyDocument(raw)
		if err != nil || d.Measurement != meas || d.Name != "router-a" {
			t.Errorf("document: %+v, %v", d, err)
		}
	})
	t.Run("json", func(t *testing.T) {
		code, out, _ := tn.ouro(ctx, "--json", "id", "-k", keyFile)
		var j map[string]string
		if code != 0 || json.Unmarshal([]byte(out), &j) != nil {
			t.Fatalf("exit %d: %s", code, out)
		}
		raw, _ := hex.DecodeString(j["document_hex"])
		if d, err := identity.VerifyDocument(raw); err != nil || d.Name != id.Name() || j["measurement"] != "" {
			t.Errorf("document %+v, %v; output %s", d, err, out)
		}
	})
	t.Run("exposed key file", func(t *testing.T) {
		exposed := filepath.Join(dir, "exposed.key")
		os.WriteFile(exposed, id.MarshalPEM(), 0o644)
		code, _, errs := tn.ouro(ctx, "id", "--key", exposed)
		if code != 1 || !strings.Contains(errs, "readable by others") {
			t.Errorf("exit %d, %q", code, errs)
		}
	})
	t.Run("running node", func(t *testing.T) {
		doc, _ := identity.NewDocument(id, "router-b", "microvm", meas, time.Now()).Sign(ctx, id)
		tn.mgmt.mu.Lock()
		tn.mgmt.answer = func(r ipcp.MgmtReq) (ipcp.MgmtResp, error) {
			if r.Cmd != CmdID {
				return ipcp.MgmtResp{}, flow.ErrInvalid
			}
			return ipcp.MgmtResp{Text: base64.StdEncoding.EncodeToString(doc) + "\n"}, nil
		}
		tn.mgmt.mu.Unlock()
		code, out, errs := tn.ouro(ctx, "id")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if field(t, out, "name") != "router-b" || field(t, out, "board") != "microvm" || field(t, out, "id") != id.Name() {
			t.Errorf("output:\n%s", out)
		}
		// A node answering with a document it did not sign is refused.
		other, _ := identity.Generate(nil)
		forged := strings.Replace(string(doc), string(id.Public()), string(other.Public()), 1)
		tn.mgmt.mu.Lock()
		tn.mgmt.answer = func(ipcp.MgmtReq) (ipcp.MgmtResp, error) {
			return ipcp.MgmtResp{Text: base64.StdEncoding.EncodeToString([]byte(forged))}, nil
		}
		tn.mgmt.mu.Unlock()
		if code, _, errs := tn.ouro(ctx, "id"); code != 1 || !strings.Contains(errs, "identity: document") {
			t.Errorf("forged answer: exit %d, %q", code, errs)
		}
		tn.mgmt.mu.Lock()
		tn.mgmt.answer = nil
		tn.mgmt.mu.Unlock()
		if code, _, _ := tn.ouro(ctx, "id"); code != 1 {
			t.Errorf("node without the command: exit %d, want 1", code)
		}
	})
}

func TestCert(t *testing.T) {
	tn := newTestNet()
	dir := t.TempDir()
	ctx := context.Background()
	authFile, auth := keygen(t, tn, dir, "authority.key")
	_, node := keygen(t, tn, dir, "node.key")
	rogueFile, _ := keygen(t, tn, dir, "rogue.key")
	authHex := hex.EncodeToString(auth.Public())
	meas := identity.MeasureBytes([]byte("image"))
	run := func(t *testing.T, want int, args ...string) string {
		t.Helper()
		code, out, errs := tn.ouro(ctx, args...)
		if code != want {
			t.Fatalf("ouro %s: exit %d, want %d; stderr %s", strings.Join(args, " "), code, want, errs)
		}
		return out + errs
	}
	certFile := filepath.Join(dir, "a.cert")
	out := run(t, 0, "cert", "issue", "--authority", authFile, "--subject", hex.EncodeToString(node.Public()),
		"--name", "router-a", "--layer", "net", "-m", meas.String(), "--valid", "48h", "--serial", "17", "-o", certFile)
	if field(t, out, "certificate") != "17" || field(t, out, "name") != "router-a" || field(t, out, "layer") != "net" ||
		field(t, out, "measurements") != meas.String() || field(t, out, "issuer id") != auth.Name() {
		t.Errorf("issue printed:\n%s", out)
	}
	b, _ := os.ReadFile(certFile)
	c, err := identity.VerifyCert(b, auth.Public(), time.Now())
	if err != nil || !c.Subject.Equal(node.Public()) || c.Serial != 17 {
		t.Fatalf("issued %+v, %v", c, err)
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		run(t, 1, "cert", "issue", "--authority", authFile, "--subject", hex.EncodeToString(node.Public()), "--name", "x", "-o", certFile)
	})
	t.Run("usage", func(t *testing.T) {
		run(t, 2, "cert", "issue", "--subject", hex.EncodeToString(node.Public()), "-o", filepath.Join(dir, "u.cert"))
		run(t, 2, "cert", "issue", "--authority", authFile, "--subject", hex.EncodeToString(node.Public()), "-o", filepath.Join(dir, "u.cert"))
		run(t, 2, "cert", "frobnicate")
		run(t, 2, "cert")
		if out := run(t, 0, "cert", "verify", "-h"); !strings.Contains(out, "--crl FILE") {
			t.Errorf("cert verify -h:\n%s", out)
		}
	})
	t.Run("subject from a document", func(t *testing.T) {
		doc, _ := identity.NewDocument(node, "router-d", "hosted", meas, time.Now()).Sign(ctx, node)
		docFile := filepath.Join(dir, "node.doc")
		os.WriteFile(docFile, []byte(base64.StdEncoding.EncodeToString(doc)+"\n"), 0o644)
		for i, subj := range []string{base64.StdEncoding.EncodeToString(doc), "@" + docFile} {
			f := filepath.Join(dir, "d"+string(rune('0'+i))+".cert")
			out := run(t, 0, "cert", "issue", "--authority", authFile, "--subject", subj, "-o", f)
			if field(t, out, "name") != "router-d" || field(t, out, "subject id") != node.Name() || field(t, out, "layer") != "any" {
				t.Errorf("issued:\n%s", out)
			}
		}
		bad := append([]byte(nil), doc...)
		bad[len(bad)-1] ^= 1
		run(t, 1, "cert", "issue", "--authority", authFile, "--subject", base64.StdEncoding.EncodeToString(bad), "-o", filepath.Join(dir, "bad.cert"))
	})
	t.Run("names", func(t *testing.T) {
		f := filepath.Join(dir, "names.cert")
		out := run(t, 0, "cert", "issue", "--authority", authFile, "--subject", hex.EncodeToString(node.Public()),
			"--name", "router-n", "--names", "svc,db", "--names", "web", "-o", f)
		if field(t, out, "names") != "svc db web" || field(t, out, "version") != "2" {
			t.Errorf("issue --names printed:\n%s", out)
		}
		b, _ := os.ReadFile(f)
		c, err := identity.VerifyCert(b, auth.Public(), time.Now())
		if err != nil || strings.Join(c.Names, ",") != "svc,db,web" {
			t.Fatalf("issued %+v, %v", c, err)
		}
		if out := run(t, 0, "cert", "show", f); field(t, out, "names") != "svc db web" {
			t.Errorf("show:\n%s", out)
		}
		if out := run(t, 0, "cert", "show", certFile); field(t, out, "names") != "none" || field(t, out, "version") != "1" {
			t.Errorf("show without names:\n%s", out)
		}
		var j map[string]any
		if err := json.Unmarshal([]byte(run(t, 0, "--json", "cert", "show", f)), &j); err != nil || fmt.Sprint(j["names"]) != "[svc db web]" {
			t.Errorf("show --json: %v %v", j, err)
		}
		run(t, 2, "cert", "issue", "--authority", authFile, "--subject", hex.EncodeToString(node.Public()),
			"--name", "x", "--names", "a,,b", "-o", filepath.Join(dir, "e.cert"))
		run(t, 1, "cert", "issue", "--authority", authFile, "--subject", hex.EncodeToString(node.Public()),
			"--name", "x", "--names", "a,a", "-o", filepath.Join(dir, "dup.cert"))
	})
	t.Run("show", func(t *testing.T) {
		out := run(t, 0, "cert", "show", certFile)
		if field(t, out, "subject") != hex.EncodeToString(node.Public()) || field(t, out, "not after") == "" {
			t.Errorf("show:\n%s", out)
		}
		var j map[string]any
		if err := json.Unmarshal([]byte(run(t, 0, "--json", "cert", "show", certFile)), &j); err != nil || j["serial"] != 17.0 {
			t.Errorf("show --json: %v %v", j, err)
		}
		b64 := filepath.Join(dir, "a.cert.b64")
		os.WriteFile(b64, []byte(base64.StdEncoding.EncodeToString(b)), 0o644)
		run(t, 0, "cert", "show", b64)
		junk := filepath.Join(dir, "junk")
		os.WriteFile(junk, []byte("junk"), 0o644)
		run(t, 1, "cert", "show", junk)
	})
	t.Run("verify", func(t *testing.T) {
		if out := run(t, 0, "cert", "verify", certFile, "--authority", authHex); !strings.Contains(out, "valid: certificate 17") {
			t.Errorf("verify:\n%s", out)
		}
		run(t, 0, "cert", "verify", certFile, "--authority", authFile) // the key file works too
		other := hex.EncodeToString(node.Public())
		if out := run(t, 1, "cert", "verify", certFile, "--authority", other); !strings.Contains(out, "unknown key") {
			t.Errorf("another authority:\n%s", out)
		}
		late := time.Now().Add(49 * time.Hour).UTC().Format(time.RFC3339)
		if out := run(t, 1, "cert", "verify", certFile, "--authority", authHex, "--at", late); !strings.Contains(out, "expired") {
			t.Errorf("expired:\n%s", out)
		}
		early := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		if out := run(t, 1, "cert", "verify", certFile, "--authority", authHex, "--at", early); !strings.Contains(out, "not yet valid") {
			t.Errorf("not yet valid:\n%s", out)
		}
		forged := append([]byte(nil), b...)
		forged[len(forged)-1] ^= 1
		ff := filepath.Join(dir, "forged.cert")
		os.WriteFile(ff, forged, 0o644)
		if out := run(t, 1, "cert", "verify", ff, "--authority", authHex); !strings.Contains(out, "bad signature") {
			t.Errorf("forged:\n%s", out)
		}
	})
	t.Run("revoke", func(t *testing.T) {
		crl := filepath.Join(dir, "net.crl")
		out := run(t, 0, "cert", "revoke", "--authority", authFile, "--crl", crl, "--serial", "99")
		if field(t, out, "revocation list") != "1" || field(t, out, "serials") != "99" {
			t.Errorf("revoke:\n%s", out)
		}
		run(t, 0, "cert", "verify", certFile, "--authority", authHex, "--crl", crl)
		out = run(t, 0, "cert", "revoke", "--authority", authFile, "--crl", crl, certFile)
		if field(t, out, "revocation list") != "2" || field(t, out, "serials") != "99 17" {
			t.Errorf("revoke a certificate file:\n%s", out)
		}
		if out := run(t, 1, "cert", "verify", certFile, "--authority", authHex, "--crl", crl); !strings.Contains(out, "revoked") {
			t.Errorf("verify a revoked certificate:\n%s", out)
		}
		out = run(t, 0, "cert", "revoke", "--authority", authFile, "--crl", crl, "--key", hex.EncodeToString(node.Public()), "--serial", "17")
		if field(t, out, "revocation list") != "3" || field(t, out, "serials") != "99 17" || field(t, out, "keys") != hex.EncodeToString(node.Public()) {
			t.Errorf("revoke a key:\n%s", out)
		}
		if out := run(t, 0, "cert", "show", crl); field(t, out, "revocation list") != "3" {
			t.Errorf("show a list:\n%s", out)
		}
		// Another authority can neither extend this list nor revoke this certificate.
		run(t, 1, "cert", "revoke", "--authority", rogueFile, "--crl", crl, "--serial", "5")
		run(t, 1, "cert", "revoke", "--authority", rogueFile, "--crl", filepath.Join(dir, "rogue.crl"), certFile)
		run(t, 2, "cert", "revoke", "--authority", authFile, "--crl", crl)
		lb, _ := os.ReadFile(crl)
		l, err := identity.VerifyCRL(lb, auth.Public())
		if err != nil || l.Seq != 3 {
			t.Errorf("list on disk: %+v, %v", l, err)
		}
		if _, err := os.Stat(crl + ".tmp"); !errors.Is(err, os.ErrNotExist) {
			t.Error("temporary file left behind")
		}
	})
}

// TestMeasure: ouro measure prints the whole-file measurement of any
// file, and the loaded-image one of a Go ELF with symbols (a small tool of
// this module, built here: test binaries have none), the same
// identity.MeasureELF computes.
func TestMeasure(t *testing.T) {
	tn := newTestNet()
	ctx := context.Background()
	self := filepath.Join(t.TempDir(), "testsum")
	if out, err := exec.Command("go", "build", "-o", self, "github.com/ouronet/ouro/tools/testsum").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	code, out, errs := tn.ouro(ctx, "measure", self)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	file, _ := identity.MeasureFile(self)
	img, err := identity.MeasureELF(self)
	if err != nil {
		t.Fatal(err)
	}
	if field(t, out, "file") != file.String() || field(t, out, "image") != img.String() || file == img {
		t.Errorf("output:\n%s\nwant file %s image %s", out, file, img)
	}
	// One byte changed in the image's code changes both measurements.
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	off := f.Section(".text").Offset + 100
	f.Close()
	b[off] ^= 1
	changed := filepath.Join(t.TempDir(), "changed")
	os.WriteFile(changed, b, 0o755)
	code, out, _ = tn.ouro(ctx, "measure", changed)
	if code != 0 || field(t, out, "image") == img.String() || field(t, out, "file") == file.String() {
		t.Errorf("one byte changed: exit %d, output:\n%s", code, out)
	}
	text := filepath.Join(t.TempDir(), "notes")
	os.WriteFile(text, []byte("not an image"), 0o644)
	if code, out, _ := tn.ouro(ctx, "measure", text); code != 0 || strings.Contains(out, "image") {
		t.Errorf("plain file: exit %d, output %q", code, out)
	}
	if code, _, _ := tn.ouro(ctx, "measure", filepath.Join(t.TempDir(), "missing")); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
}
