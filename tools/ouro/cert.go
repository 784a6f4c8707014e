package main

// Membership certificates on the command line: ouro cert issue, show,
// verify and revoke (a layer authority's tools; docs/security.md).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
)

// backdate is how far before now a certificate's validity starts, so that
// a member whose clock is a little behind the authority's can use it at
// once.
const backdate = 5 * time.Minute

func certCommand() *command {
	return &command{name: "cert", args: "issue|show|verify|revoke [flags]", group: "identity",
		summary: "issue, show, verify and revoke membership certificates", run: runCert,
		help: "Subcommands (\"ouro cert SUB -h\" for their flags):\n" +
			"  issue   --authority KEYFILE --subject PUBKEY|IDDOC --name N [--layer L]\n" +
			"          [--measurement HEX ...] [--names A,B] [--valid 720h] [--serial N] -o FILE\n" +
			"  show    FILE              a certificate or revocation list\n" +
			"  verify  FILE --authority PUBKEY [--crl FILE] [--at TIME]\n" +
			"  revoke  --authority KEYFILE --crl FILE [--serial N ...] [--key PUBKEY ...] [CERTFILE ...]\n" +
			"PUBKEY is 64 hex digits (\"ouro id\" prints them) or a file holding them or\n" +
			"the key; IDDOC is a signed identity document, base64 (\"ouro id\" prints it),\n" +
			"or @FILE. Certificates and lists are written as CBOR (docs/wire/identity.md);\n" +
			"files holding them in base64 or hex are read too."}
}

func certSubcommands() []*command {
	return []*command{
		{name: "cert issue", args: "--authority KEYFILE --subject PUBKEY|IDDOC --name N -o FILE", summary: "issue a membership certificate", run: runCertIssue,
			help: "Signs a certificate admitting the subject key as member NAME of layer L (any\n" +
				"layer of the authority without --layer), running one of the given images\n" +
				"(any without --measurement), from 5 minutes ago for --valid. --names lists\n" +
				"the application names the subject may register in the layer's directory\n" +
				"(exact names; a layer with names = \"certified\" refuses any other)."},
		{name: "cert show", args: "FILE", summary: "print a certificate or revocation list", run: runCertShow,
			help: "Checks that the issuer named in the file signed it; not that the issuer is\n" +
				"trusted (use verify)."},
		{name: "cert verify", args: "FILE --authority PUBKEY", summary: "verify a certificate against a layer authority", run: runCertVerify,
			help: "Exit code 0 when the certificate was issued by the authority, is valid at\n" +
				"--at (default now) and is not revoked by --crl; 1 otherwise, with the\n" +
				"reason (unknown key, bad signature, not yet valid, expired, revoked)."},
		{name: "cert revoke", args: "--authority KEYFILE --crl FILE [--serial N ...] [--key PUBKEY ...] [CERTFILE ...]", summary: "create or extend a revocation list", run: runCertRevoke,
			help: "Adds the serials, keys and the serials of the certificate files to the\n" +
				"authority's revocation list FILE (created if missing) and signs it with\n" +
				"the next sequence number. Distribute the new list to the layer."},
	}
}

// runCert dispatches "ouro cert SUB ...".
func runCert(a *app, ctx context.Context, cmd *command, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) == 0 {
			return usagef("cert: which subcommand? issue, show, verify or revoke")
		}
		return errHelp
	}
	for _, sub := range certSubcommands() {
		if sub.name == "cert "+args[0] {
			err := sub.run(a, ctx, sub, args[1:])
			if errors.Is(err, errHelp) {
				a.commandHelp(a.stdout, sub)
				return nil
			}
			return err
		}
	}
	return usagef("cert: unknown subcommand %q (issue, show, verify or revoke)", args[0])
}

// listFlag is a flag that may be given several times.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error { *l.v = append(*l.v, s); return nil }

func (fs *flagSet) listVar(p *[]string, usage string, names ...string) {
	fs.define(names)
	for i, n := range names {
		fs.Var(listFlag{p}, n, map[bool]string{true: usage}[i == 0])
	}
}

// runCertIssue runs "ouro cert issue".
func runCertIssue(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		authFile, subject, name, layer, out, serial string
		meas, names                                 []string
		valid                                       time.Duration
	)
	fs.stringVar(&authFile, "", "the layer authority's key `FILE` (from ouro keygen)", "authority")
	fs.stringVar(&subject, "", "the member: its public key `PUBKEY` (hex) or signed identity document (base64, @FILE)", "subject")
	fs.stringVar(&name, "", "the member's `NAME` (default: the document's)", "name")
	fs.stringVar(&layer, "", "the `LAYER` it admits to (default: any)", "layer")
	fs.listVar(&meas, "an image measurement (`HEX`) it may run; repeat for more (default: any)", "measurement", "m")
	fs.listVar(&names, "application `NAMES` it may register, comma-separated; repeat for more (default: none)", "names")
	fs.durationVar(&valid, 720*time.Hour, "valid for `D` from now", "valid")
	fs.stringVar(&serial, "", "the serial `N` (default: random)", "serial")
	fs.stringVar(&out, "", "write the certificate to `FILE` (never overwritten)", "o", "out")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	if authFile == "" || subject == "" || out == "" {
		return usagef("cert issue: --authority, --subject and -o are required")
	}
	auth, err := identity.Load(authFile)
	if err != nil {
		return err
	}
	c := identity.Cert{Name: name, Layer: layer}
	if c.Subject, err = parseSubject(subject, &c.Name); err != nil {
		return err
	}
	if c.Name == "" {
		return usagef("cert issue: --name is required (the subject is a bare key)")
	}
	for _, m := range meas {
		v, err := identity.ParseMeasurement(m)
		if err != nil {
			return err
		}
		c.Measurements = append(c.Measurements, v)
	}
	for _, n := range names {
		for _, n := range strings.Split(n, ",") {
			if n = strings.TrimSpace(n); n == "" {
				return usagef("cert issue: --names: an empty name")
			}
			c.Names = append(c.Names, n)
		}
	}
	if valid <= 0 {
		return usagef("cert issue: --valid must be positive")
	}
	if serial != "" {
		if c.Serial, err = strconv.ParseUint(serial, 0, 64); err != nil || c.Serial == 0 {
			return usagef("cert issue: --serial %q: want a positive integer", serial)
		}
	} else if c.Serial, err = randomSerial(); err != nil {
		return err
	}
	now := time.Now()
	c.NotBefore = now.Add(-backdate).Unix()
	c.NotAfter = now.Add(valid).Unix()
	b, err := identity.IssueCert(ctx, c, auth)
	if err != nil {
		return err
	}
	if err := writeNew(out, b, 0o644); err != nil {
		return err
	}
	got, err := identity.DecodeCert(b)
	if err != nil {
		return err
	}
	return a.printCert(got)
}

// parseSubject reads --subject: a public key, or a signed identity
// document (base64, hex, or @FILE) whose name fills *name if empty.
func parseSubject(s string, name *string) (ed25519.PublicKey, error) {
	if k, err := hex.DecodeString(s); err == nil && len(k) == ed25519.PublicKeySize {
		return k, nil
	}
	var raw []byte
	if f, ok := strings.CutPrefix(s, "@"); ok {
		b, err := readSigned(f)
		if err != nil {
			return nil, err
		}
		raw = b
	} else {
		raw = decodeText([]byte(s))
	}
	d, err := identity.VerifyDocument(raw)
	if err != nil {
		return nil, fmt.Errorf("--subject is neither a public key nor a valid identity document: %w", err)
	}
	if *name == "" {
		*name = d.Name
	}
	return d.Key, nil
}

func randomSerial() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if s := binary.BigEndian.Uint64(b[:]) >> 1; s != 0 { // 63 bits: prints the same signed or not
			return s, nil
		}
	}
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func unixUTC(t int64) string { return time.Unix(t, 0).UTC().Format(time.RFC3339) }

// printCert prints a certificate.
func (a *app) printCert(c identity.Cert) error {
	meas := make([]string, len(c.Measurements))
	for i, m := range c.Measurements {
		meas[i] = m.String()
	}
	if a.json {
		return a.printJSON(map[string]any{
			"type": "certificate", "serial": c.Serial, "subject": hex.EncodeToString(c.Subject), "subject_id": identity.NameOf(c.Subject),
			"name": c.Name, "layer": c.Layer, "measurements": meas, "names": c.Names, "not_before": unixUTC(c.NotBefore), "not_after": unixUTC(c.NotAfter),
			"issuer": hex.EncodeToString(c.Issuer), "issuer_id": identity.NameOf(c.Issuer),
		})
	}
	m := "any"
	if len(meas) > 0 {
		m = strings.Join(meas, " ")
	}
	names := "none"
	if len(c.Names) > 0 {
		names = strings.Join(c.Names, " ")
	}
	return a.printFields([][2]string{
		{"certificate", strconv.FormatUint(c.Serial, 10)}, {"version", strconv.FormatUint(uint64(c.Version), 10)},
		{"subject", hex.EncodeToString(c.Subject)}, {"subject id", identity.NameOf(c.Subject)},
		{"name", c.Name}, {"layer", orAny(c.Layer)}, {"measurements", m}, {"names", names},
		{"not before", unixUTC(c.NotBefore)}, {"not after", unixUTC(c.NotAfter)},
		{"issuer", hex.EncodeToString(c.Issuer)}, {"issuer id", identity.NameOf(c.Issuer)},
	})
}

// printCRL prints a revocation list.
func (a *app) printCRL(l *identity.CRL) error {
	serials := make([]string, len(l.Serials))
	for i, s := range l.Serials {
		serials[i] = strconv.FormatUint(s, 10)
	}
	keys := make([]string, len(l.Keys))
	for i, k := range l.Keys {
		keys[i] = hex.EncodeToString(k)
	}
	if a.json {
		return a.printJSON(map[string]any{
			"type": "revocation list", "issuer": hex.EncodeToString(l.Issuer), "issuer_id": identity.NameOf(l.Issuer),
			"seq": l.Seq, "issued": unixUTC(l.Issued), "serials": serials, "keys": keys,
		})
	}
	return a.printFields([][2]string{
		{"revocation list", strconv.FormatUint(l.Seq, 10)},
		{"issuer", hex.EncodeToString(l.Issuer)}, {"issuer id", identity.NameOf(l.Issuer)},
		{"issued", unixUTC(l.Issued)},
		{"serials", strings.Join(serials, " ")}, {"keys", strings.Join(keys, " ")},
	})
}

// runCertShow runs "ouro cert show FILE".
func runCertShow(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	b, err := readSigned(pos[0])
	if err != nil {
		return err
	}
	c, certErr := identity.DecodeCert(b)
	if certErr == nil {
		return a.printCert(c)
	}
	if l, err := identity.DecodeCRL(b); err == nil {
		return a.printCRL(l)
	}
	return fmt.Errorf("%s: %w", pos[0], certErr)
}

// runCertVerify runs "ouro cert verify FILE --authority PUBKEY".
func runCertVerify(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var authority, crlFile, at string
	fs.stringVar(&authority, "", "the layer authority's public key (`PUBKEY`: hex, or a file)", "authority")
	fs.stringVar(&crlFile, "", "the authority's revocation list `FILE`", "crl")
	fs.stringVar(&at, "", "check validity at `TIME` (RFC 3339; default now)", "at")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if authority == "" {
		return usagef("cert verify: --authority is required")
	}
	pub, err := parsePublicKey(authority)
	if err != nil {
		return err
	}
	now := time.Now()
	if at != "" {
		if now, err = time.Parse(time.RFC3339, at); err != nil {
			return usagef("cert verify: --at: %v", err)
		}
	}
	b, err := readSigned(pos[0])
	if err != nil {
		return err
	}
	c, err := identity.VerifyCert(b, pub, now)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if crlFile != "" {
		lb, err := readSigned(crlFile)
		if err != nil {
			return err
		}
		l, err := identity.VerifyCRL(lb, pub)
		if err != nil {
			return fmt.Errorf("%s: %w", crlFile, err)
		}
		if l.Revoked(c) {
			return fmt.Errorf("%s: certificate %d: %w (list %d)", pos[0], c.Serial, identity.ErrRevoked, l.Seq)
		}
	}
	if a.json {
		return a.printJSON(map[string]any{"valid": true, "serial": c.Serial, "name": c.Name, "not_after": unixUTC(c.NotAfter)})
	}
	fmt.Fprintf(a.stdout, "%s: valid: certificate %d for %s (%s), until %s\n", pos[0], c.Serial, c.Name, identity.NameOf(c.Subject), unixUTC(c.NotAfter))
	return nil
}

// runCertRevoke runs "ouro cert revoke".
func runCertRevoke(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		authFile, crlFile string
		serials, keys     []string
	)
	fs.stringVar(&authFile, "", "the layer authority's key `FILE`", "authority")
	fs.stringVar(&crlFile, "", "the revocation list `FILE` to create or extend", "crl")
	fs.listVar(&serials, "revoke the certificate with serial `N`; repeat for more", "serial")
	fs.listVar(&keys, "revoke every certificate for `PUBKEY`; repeat for more", "key")
	certs, err := fs.parse(args, 0, -1)
	if err != nil {
		return err
	}
	if authFile == "" || crlFile == "" {
		return usagef("cert revoke: --authority and --crl are required")
	}
	if len(serials)+len(keys)+len(certs) == 0 {
		return usagef("cert revoke: nothing to revoke (--serial, --key or certificate files)")
	}
	auth, err := identity.Load(authFile)
	if err != nil {
		return err
	}
	l := &identity.CRL{}
	old, err := readSigned(crlFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if l, err = identity.VerifyCRL(old, auth.Public()); err != nil {
			return fmt.Errorf("%s: %w", crlFile, err)
		}
	}
	for _, s := range serials {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil || n == 0 {
			return usagef("cert revoke: --serial %q: want a positive integer", s)
		}
		if !slices.Contains(l.Serials, n) {
			l.Serials = append(l.Serials, n)
		}
	}
	for _, k := range keys {
		pub, err := parsePublicKey(k)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(l.Keys, func(k ed25519.PublicKey) bool { return k.Equal(pub) }) {
			l.Keys = append(l.Keys, pub)
		}
	}
	for _, f := range certs {
		b, err := readSigned(f)
		if err != nil {
			return err
		}
		c, err := identity.DecodeCert(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if !c.Issuer.Equal(auth.Public()) {
			return fmt.Errorf("%s: issued by %s, not by this authority: %w", f, identity.NameOf(c.Issuer), identity.ErrUnknownKey)
		}
		if !slices.Contains(l.Serials, c.Serial) {
			l.Serials = append(l.Serials, c.Serial)
		}
	}
	l.Issuer = auth.Public()
	l.Seq++
	l.Issued = time.Now().Unix()
	b, err := identity.IssueCRL(ctx, *l, auth)
	if err != nil {
		return err
	}
	if err := writeReplace(crlFile, b, 0o644); err != nil {
		return err
	}
	return a.printCRL(l)
}
