package main

// Node identities on the command line: ouro keygen, ouro id, and the
// helpers the cert commands share (reading keys, documents and files).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer/ipcp"
)

// CmdID is the management command that asks a node for its signed
// identity document; the answer's Text is the document in standard
// base64.
const CmdID = ipcp.CmdID

func keygenCommand() *command {
	return &command{name: "keygen", args: "[-o FILE]", group: "identity", summary: "create an ed25519 key (a node's or a layer authority's)", run: runKeygen,
		help: "Creates a key as a PEM PKCS #8 file (what openssl genpkey -algorithm ed25519\n" +
			"writes, and what a hosted node's key_file holds), mode 0600; an existing\n" +
			"file is never overwritten. Prints the public key and the node name derived\n" +
			"from it. Without -o, writes the PEM to stdout."}
}

func idCommand() *command {
	return &command{name: "id", args: "[--key FILE [--name N] [--board B] [--image FILE]]", group: "identity",
		summary: "print a node's identity: key, name, measurement, signed document", run: runID,
		help: "With --key, builds and signs the identity document of that key (the\n" +
			"measurement is that of --image, e.g. the router executable; none without).\n" +
			"Without --key, asks the running node (--socket) for its signed document\n" +
			"and verifies it. Prints the public key (hex: what allow-lists and\n" +
			"\"ouro cert issue --subject\" take), the self-certifying name, the image\n" +
			"measurement and the document (base64: \"ouro cert issue --subject\" takes it\n" +
			"too)."}
}

func measureCommand() *command {
	return &command{name: "measure", args: "FILE", group: "identity",
		summary: "print the measurements of an image file (what a measured policy lists)", run: runMeasure,
		help: "Prints the measurement of FILE as a hosted node takes it of its executable\n" +
			"(\"file\": SHA-256 of the whole file) and, for a Go ELF image, as a\n" +
			"bare-metal image takes it of itself once loaded (\"image\": its code and\n" +
			"read-only data, docs/security.md). Put the one for where the image runs in\n" +
			"a layer's measured list or a certificate (ouro cert issue --measurement)."}
}

// runMeasure runs "ouro measure FILE".
func runMeasure(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	rest, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	file, err := identity.MeasureFile(rest[0])
	if err != nil {
		return err
	}
	fields := [][2]string{{"file", file.String()}}
	if img, err := identity.MeasureELF(rest[0]); err == nil {
		fields = append(fields, [2]string{"image", img.String()})
	}
	if a.json {
		m := map[string]string{}
		for _, f := range fields {
			m[f[0]] = f[1]
		}
		return a.printJSON(m)
	}
	return a.printFields(fields)
}

// runKeygen runs "ouro keygen [-o FILE]".
func runKeygen(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var out string
	fs.stringVar(&out, "", "write the key to `FILE` (mode 0600, never overwritten)", "o", "out")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	id, err := identity.Generate(nil)
	if err != nil {
		return err
	}
	if out == "" {
		_, err := a.stdout.Write(id.MarshalPEM())
		return err
	}
	if err := writeNew(out, id.MarshalPEM(), 0o600); err != nil {
		return err
	}
	if a.json {
		return a.printJSON(map[string]string{"file": out, "key": hex.EncodeToString(id.Public()), "id": id.Name()})
	}
	return a.printFields([][2]string{{"file", out}, {"key", hex.EncodeToString(id.Public())}, {"id", id.Name()}})
}

// writeNew writes data to a new file at path with mode perm; an existing
// file is an error (O_EXCL) and a failed write leaves no file.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: not overwritten", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// writeReplace writes data to path through a temporary file and a rename,
// so a reader sees the old or the new content, never a part.
func writeReplace(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := writeNew(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// runID runs "ouro id".
func runID(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		keyFile, name, board, image string
		timeout                     time.Duration
	)
	fs.stringVar(&keyFile, "", "the node's key `FILE` (default: ask the running node)", "key", "k")
	fs.stringVar(&name, "", "the node `NAME` for the document (default: the key's id)", "name")
	fs.stringVar(&board, "hosted", "the `BOARD` kind for the document", "board")
	fs.stringVar(&image, "", "measure the executable `FILE` (e.g. the router)", "image")
	timeoutFlag(fs, &timeout)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	var doc []byte
	if keyFile == "" {
		if name != "" || image != "" {
			return usagef("id: --name and --image go with --key")
		}
		resp, err := a.mgmt(ctx, ipcp.MgmtReq{Cmd: CmdID}, timeout)
		if err != nil {
			return err
		}
		doc, err = base64.StdEncoding.DecodeString(strings.TrimSpace(resp.Text))
		if err != nil {
			return fmt.Errorf("id: the node's document is not base64: %w", err)
		}
	} else {
		id, err := identity.Load(keyFile)
		if err != nil {
			return err
		}
		var m identity.Measurement
		if image != "" {
			if m, err = identity.MeasureFile(image); err != nil {
				return err
			}
		}
		if name == "" {
			name = id.Name()
		}
		if doc, err = identity.NewDocument(id, name, board, m, time.Now()).Sign(ctx, id); err != nil {
			return err
		}
	}
	d, err := identity.VerifyDocument(doc)
	if err != nil {
		return err
	}
	return a.printDocument(d, doc)
}

// printDocument prints a verified identity document and its encoding.
func (a *app) printDocument(d identity.Document, raw []byte) error {
	meas := "-"
	if !d.Measurement.IsZero() {
		meas = d.Measurement.String()
	}
	issued := time.Unix(d.Issued, 0).UTC().Format(time.RFC3339)
	b64 := base64.StdEncoding.EncodeToString(raw)
	if a.json {
		return a.printJSON(map[string]string{
			"key": hex.EncodeToString(d.Key), "id": d.ID, "name": d.Name, "board": d.Board,
			"measurement": strings.TrimPrefix(meas, "-"), "issued": issued,
			"document": b64, "document_hex": hex.EncodeToString(raw),
		})
	}
	return a.printFields([][2]string{
		{"key", hex.EncodeToString(d.Key)}, {"id", d.ID}, {"name", d.Name}, {"board", d.Board},
		{"measurement", meas}, {"issued", issued}, {"document", b64},
	})
}

// printFields prints name/value pairs aligned.
func (a *app) printFields(rows [][2]string) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
	for _, r := range rows {
		v := r[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\n", r[0], v)
	}
	return tw.Flush()
}

// parsePublicKey reads a public key: 64 hex digits, or a file holding
// them, or a PEM private key file (its public half).
func parsePublicKey(s string) (ed25519.PublicKey, error) {
	if k, err := hex.DecodeString(s); err == nil && len(k) == ed25519.PublicKeySize {
		return k, nil
	}
	data, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("%q is neither %d hex digits nor a readable file", s, 2*ed25519.PublicKeySize)
	}
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		id, err := identity.ParsePEM(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		return id.Public(), nil
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: not %d hex digits", s, 2*ed25519.PublicKeySize)
	}
	return k, nil
}

// readSigned reads a signed object from a file: its raw bytes, or base64
// or hex of them (what "ouro id" prints).
func readSigned(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeText(data), nil
}

// decodeText returns the bytes that text holds in base64 or hex, or
// data itself when it is neither.
func decodeText(data []byte) []byte {
	t := strings.TrimSpace(string(data))
	if b, err := hex.DecodeString(t); err == nil && len(t) > 0 {
		return b
	}
	if b, err := base64.StdEncoding.DecodeString(t); err == nil && len(t) > 0 {
		return b
	}
	return data
}
