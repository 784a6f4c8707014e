package identity

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"
)

// Document is a node's identity document: who the node is (its key and
// the name derived from it), what it calls itself, on what board, running
// which image. It is signed by the node's own key (Sign) and checked by
// VerifyDocument. A document proves possession of the key only when its
// signature covers fresh data: enrollment signs nonces besides it.
type Document struct {
	_           struct{}          `cbor:",toarray"`
	Version     uint              // Version
	Key         ed25519.PublicKey // the node's identity key
	Name        string            // the node's name as configured (free text, checked against a certificate)
	ID          string            // NameOf(Key): the self-certifying name
	Board       string            // board kind: "hosted", "usbarmory", "raspberrypi", "microvm", ...
	Measurement Measurement       // the image the node runs; zero: not measured
	Issued      int64             // when it was signed, Unix seconds
}

// NewDocument returns the document of the node that s signs for.
func NewDocument(s Signer, name, board string, m Measurement, now time.Time) Document {
	k := s.Public()
	return Document{Version: Version, Key: k, Name: name, ID: NameOf(k), Board: board, Measurement: m, Issued: now.Unix()}
}

// check checks the fields a decoder and a signer both insist on.
func (d *Document) check() error {
	if err := checkVersion(d.Version); err != nil {
		return err
	}
	if err := checkKey("key", d.Key); err != nil {
		return err
	}
	if want := NameOf(d.Key); d.ID != want {
		return fmt.Errorf("id %q is not the key's name %q: %w", d.ID, want, ErrMalformed)
	}
	if err := checkName("node name", d.Name, false); err != nil {
		return err
	}
	return checkName("board", d.Board, false)
}

// Sign returns the signed document: the envelope of its deterministic
// CBOR encoding and s's signature under LabelDoc. Version, Key and ID
// are filled in when zero; Key must be s's key.
func (d Document) Sign(ctx context.Context, s Signer) ([]byte, error) {
	if d.Version == 0 {
		d.Version = Version
	}
	if d.Key == nil {
		d.Key = s.Public()
	}
	if d.ID == "" && len(d.Key) == ed25519.PublicKeySize {
		d.ID = NameOf(d.Key)
	}
	if !d.Key.Equal(s.Public()) {
		return nil, fmt.Errorf("identity: sign document: key is not the signer's: %w", ErrUnknownKey)
	}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("identity: sign document: %w", err)
	}
	b, err := signObject(ctx, codec, s, LabelDoc, d, MaxDocumentSize)
	if err != nil {
		return nil, fmt.Errorf("identity: sign document: %w", err)
	}
	return b, nil
}

// VerifyDocument decodes a signed document (within the limits, in
// deterministic encoding) and checks that it is signed by the key it
// names and that its ID is that key's name. It says nothing about whether
// the key is trusted: that is crypto/admission's question.
func VerifyDocument(b []byte) (Document, error) {
	var d Document
	e, err := openEnvelope(codec, b, MaxDocumentSize, &d)
	if err == nil {
		err = d.check()
	}
	if err == nil {
		err = e.verify(d.Key, LabelDoc)
	}
	if err != nil {
		return Document{}, fmt.Errorf("identity: document: %w", err)
	}
	return d, nil
}
