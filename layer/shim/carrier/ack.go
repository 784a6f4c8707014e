package carrier

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
)

// Acknowledgements, when a return path exists (Config.Ack and
// Config.Resend). A receiver with Ack writes, after a scan that took
// bundles (or refused copies of bundles it had taken), one signed Ack per
// sender into its own Out: if that storage is carried back, the sender
// learns which of its bundles arrived. A sender with Resend (and a State
// directory) keeps a copy of every bundle it writes in State/SentDir
// until it is acknowledged; one that left Out (carried away) but is not
// acknowledged Resend after it was written is written into Out again,
// until it expires. The receiver's seen-set turns a resent bundle that
// had arrived after all into a counted replay (and acknowledges it
// again), so nothing is delivered twice.

// Ack is the body of an acknowledgement file. Wire format: docs/wire/carrier.md.
type Ack struct {
	_       struct{} `cbor:",toarray"`
	Version uint     // AckVersion
	Acker   []byte   // the acknowledging node's ed25519 public key
	For     []byte   // the key of the node whose bundles it acknowledges
	Seq     uint64   // the acker's own sequence (file name, order)
	Expires int64    // Unix seconds
	Seqs    []uint64 // the bundles taken (their sender's sequences), at most MaxAckSeqs
}

// Limits and names of acknowledgements.
const (
	AckVersion = 1
	MaxAckSeqs = 4096
	// AckLabel is the domain of acknowledgement signatures.
	AckLabel = "ouro/carrier/ack/v1"
	// AckSuffix ends an acknowledgement file's name.
	AckSuffix = ".ack"
	// SentDir is where a sender with Resend keeps its unacknowledged
	// bundles, in Config.State.
	SentDir = "sent"
	// maxAckFile bounds an acknowledgement file: MaxAckSeqs sequences of
	// at most 9 bytes each, two keys, heads and the signature.
	maxAckFile = MaxAckSeqs*9 + 256
)

// SealAck encodes a and signs it with s: the bytes of an acknowledgement file.
func SealAck(ctx context.Context, c identity.Codec, s identity.Signer, a *Ack) ([]byte, error) {
	body, err := c.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("carrier: encode ack: %w", err)
	}
	sig, err := identity.SignLabeled(ctx, s, AckLabel, digest(body))
	if err != nil {
		return nil, err
	}
	return c.Marshal(envelope{Body: body, Sig: sig})
}

// OpenAck decodes an acknowledgement file and checks its limits, that
// its acker is one of peers, that it is for self, and its signature.
func OpenAck(c identity.Codec, file []byte, self ed25519.PublicKey, peers []ed25519.PublicKey) (Ack, error) {
	var e envelope
	var a Ack
	if err := c.Unmarshal(file, maxAckFile, &e); err != nil {
		return a, fmt.Errorf("%w: ack envelope: %w", ErrMalformed, err)
	}
	if len(e.Sig) != ed25519.SignatureSize {
		return a, fmt.Errorf("%w: ack signature of %d bytes", ErrMalformed, len(e.Sig))
	}
	if err := c.Unmarshal(e.Body, maxAckFile, &a); err != nil {
		return a, fmt.Errorf("%w: ack body: %w", ErrMalformed, err)
	}
	switch {
	case a.Version != AckVersion:
		return a, fmt.Errorf("%w: ack version %d", ErrMalformed, a.Version)
	case len(a.Acker) != ed25519.PublicKeySize || len(a.For) != ed25519.PublicKeySize:
		return a, fmt.Errorf("%w: ack keys of %d and %d bytes", ErrMalformed, len(a.Acker), len(a.For))
	case len(a.Seqs) == 0 || len(a.Seqs) > MaxAckSeqs:
		return a, fmt.Errorf("%w: ack of %d sequences", ErrMalformed, len(a.Seqs))
	case !self.Equal(ed25519.PublicKey(a.For)):
		return a, fmt.Errorf("%w: an ack for %s", ErrUnknownKey, identity.NameOf(a.For))
	}
	if !slices.ContainsFunc(peers, func(p ed25519.PublicKey) bool { return p.Equal(ed25519.PublicKey(a.Acker)) }) {
		return a, fmt.Errorf("%w: ack from %s", ErrUnknownKey, identity.NameOf(a.Acker))
	}
	if !identity.VerifyLabeled(a.Acker, AckLabel, digest(e.Body), e.Sig) {
		return a, fmt.Errorf("%w: ack from %s", ErrTampered, identity.NameOf(a.Acker))
	}
	return a, nil
}

// AckFileName is an acknowledgement's file name: the acker's id and its
// sequence.
func AckFileName(acker ed25519.PublicKey, seq uint64) string {
	return fmt.Sprintf("%s-%016x%s", identity.NameOf(acker), seq, AckSuffix)
}

func isAckName(n string) bool { return strings.HasSuffix(n, AckSuffix) && !strings.HasPrefix(n, ".") }

// acks is a receiver's pending acknowledgements: per sender (by key),
// the sequences taken since the last acknowledgement was written.
type acks map[string]*pendingAck

type pendingAck struct {
	key  ed25519.PublicKey
	seqs []uint64
}

func (a acks) add(sender ed25519.PublicKey, seq uint64) {
	k := string(sender)
	p := a[k]
	if p == nil {
		p = &pendingAck{key: slices.Clone(sender)}
		a[k] = p
	}
	if len(p.seqs) < MaxAckSeqs {
		p.seqs = append(p.seqs, seq)
	}
}

// writeAcks writes one acknowledgement per sender with pending sequences
// into Out (within its budget: one that finds no room is dropped, and
// the sender resends), and forgets them.
func (r *receiver) writeAcks() {
	p := r.p
	for k, pa := range r.pending {
		delete(r.pending, k)
		seq := p.seq.Add(1)
		a := &Ack{Version: AckVersion, Acker: p.cfg.Signer.Public(), For: pa.key, Seq: seq,
			Expires: p.cfg.Now().Add(p.cfg.Expiry).Unix(), Seqs: pa.seqs}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		file, err := SealAck(ctx, p.codec, p.cfg.Signer, a)
		cancel()
		if err != nil {
			p.storeErrs.Add(1)
			continue
		}
		if ok, _ := p.writeIfRoom(AckFileName(p.cfg.Signer.Public(), seq), file); ok {
			p.acksOut.Add(1)
		}
	}
}

// takeAck handles an acknowledgement file from In: the bundles it names
// need not be resent.
func (r *receiver) takeAck(data []byte) {
	p := r.p
	a, err := OpenAck(p.codec, data, p.cfg.Signer.Public(), p.cfg.Peers)
	switch {
	case errors.Is(err, ErrTampered):
		p.tampered.Add(1)
		return
	case errors.Is(err, ErrUnknownKey):
		p.unknownPeer.Add(1)
		return
	case err != nil:
		p.malformed.Add(1)
		return
	}
	if a.Expires < p.cfg.Now().Unix() {
		p.expired.Add(1)
		return
	}
	p.acksIn.Add(1)
	if p.cfg.State == "" || p.cfg.Resend <= 0 {
		return
	}
	for _, seq := range a.Seqs {
		err := os.Remove(filepath.Join(p.cfg.State, SentDir, FileName(p.cfg.Signer.Public(), seq)))
		switch {
		case err == nil:
			p.acked.Add(1)
		case !errors.Is(err, os.ErrNotExist):
			p.storeErrs.Add(1)
		}
	}
}

// keepSent journals a bundle file written to Out, for Resend.
func (p *IPCP) keepSent(name string, file []byte) error {
	return writeAtomic(filepath.Join(p.cfg.State, SentDir), name, file)
}

// resend writes again into Out every journaled bundle that is no longer
// there and was written more than Resend ago without an acknowledgement;
// expired ones are dropped from the journal.
func (r *receiver) resend() {
	p := r.p
	dir := filepath.Join(p.cfg.State, SentDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		p.storeErrs.Add(1)
		return
	}
	now := p.cfg.Now()
	for _, e := range ents {
		if !e.Type().IsRegular() || !isBundleName(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if info.ModTime().Before(now.Add(-p.cfg.Expiry)) {
			os.Remove(path) // expired: it would be refused
			continue
		}
		if now.Sub(info.ModTime()) < p.cfg.Resend {
			continue
		}
		if _, err := os.Stat(filepath.Join(p.cfg.Out, e.Name())); err == nil {
			continue // still waiting for the carrier
		}
		file, err := os.ReadFile(path)
		if err != nil {
			p.storeErrs.Add(1)
			continue
		}
		if ok, _ := p.writeIfRoom(e.Name(), file); ok {
			p.resent.Add(1)
			os.Chtimes(path, now, now) // the next resend, Resend from now
		}
	}
}
