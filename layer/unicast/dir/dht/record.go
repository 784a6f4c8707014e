package dht

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
)

// Record is one signed registration: the member whose node key is Key
// serves the name (the message's Key, a name hash) at Addr for TTL
// seconds from when a holder first receives it (0: the registration is
// withdrawn). The lifetime is relative because members need not agree on
// the time (a board without a clock counts from its boot); a holder
// counts a record's TTL from the first copy it gets, so replicas of the
// same record do not extend it there. Seq orders the
// owner's records for one (name, address): a holder takes only a newer
// one. Sig is the owner's signature (identity.LabelDir) of signedRecord,
// which holds the layer and the name, so a record cannot be moved to
// another name or layer. Holders and askers check it; nobody but the
// owner can make, extend or withdraw a record.
//
// Cert is the owner's membership certificate or empty (see NamesPolicy).
// It is not signed with the record: it is the authority's signed
// statement about Key, which a holder checks against Key.
type Record struct {
	_    struct{} `cbor:",toarray"`
	Addr layer.Addr
	Key  []byte
	Seq  uint64
	TTL  uint32
	Sig  []byte
	Cert []byte
}

// recordBudget is what the records of one message may take: dir.MaxMsg
// less the message's head (type, cookie, key, an empty node list).
const recordBudget = dir.MaxMsg - 64

// size is r's encoded size, about (the heads of its fields counted at
// their largest).
func (r *Record) size() int { return 1 + 9 + 3 + len(r.Key) + 9 + 5 + 3 + len(r.Sig) + 3 + len(r.Cert) }

// fitRecords returns the longest prefix of recs (at least one record,
// at most MaxRecords) whose records fit one message.
func fitRecords(recs []Record) []Record {
	n, size := 0, 3
	for n < len(recs) && n < MaxRecords {
		if size += recs[n].size(); size > recordBudget && n > 0 {
			break
		}
		n++
	}
	return recs[:n]
}

type signedRecord struct {
	_     struct{} `cbor:",toarray"`
	Layer string
	Name  []byte
	Addr  layer.Addr
	Key   []byte
	Seq   uint64
	TTL   uint32
}

func (r *Record) signed(c flow.Codec, layerName string, name layer.Hash) ([]byte, error) {
	return c.Marshal(signedRecord{Layer: layerName, Name: name[:], Addr: r.Addr, Key: r.Key, Seq: r.Seq, TTL: r.TTL})
}

// SignRecord makes the record of (name, a) in layer layerName signed by
// s, with sequence number seq, valid for ttl seconds (0: a withdrawal). The DHT signs its own; tests and tools use it to make
// records as another member would.
func SignRecord(ctx context.Context, s identity.Signer, layerName string, name layer.Hash, a layer.Addr, seq uint64, ttl uint32) (Record, error) {
	return signRecord(ctx, recordCodec, s, layerName, name, a, seq, ttl)
}

var recordCodec = flow.NewCodec()

// MaxRecordCert bounds a record's certificate: a record with it must fit
// a message (dir.MaxMsg) alone.
const MaxRecordCert = 900

// signRecord makes the record of (name, a) signed by s.
func signRecord(ctx context.Context, c flow.Codec, s identity.Signer, layerName string, name layer.Hash, a layer.Addr, seq uint64, ttl uint32) (Record, error) {
	r := Record{Addr: a, Key: s.Public(), Seq: seq, TTL: ttl}
	b, err := r.signed(c, layerName, name)
	if err != nil {
		return Record{}, err
	}
	if r.Sig, err = identity.SignLabeled(ctx, s, identity.LabelDir, b); err != nil {
		return Record{}, fmt.Errorf("dir: %w", err)
	}
	return r, nil
}

// valid reports whether r is a genuine record of name in layerName whose
// key may speak for its address (bound: nil accepts any key).
func (r *Record) valid(c flow.Codec, layerName string, name layer.Hash, bound func(layer.Addr, ed25519.PublicKey) bool) bool {
	if bound != nil && !bound(r.Addr, r.Key) {
		return false
	}
	b, err := r.signed(c, layerName, name)
	return err == nil && identity.VerifyLabeled(r.Key, identity.LabelDir, b, r.Sig)
}

// live reports whether r is a registration, not a withdrawal.
func (r *Record) live() bool { return r.TTL != 0 }

// check is the record's part of Msg.Validate.
func (r *Record) check() error {
	if r.Addr == 0 || len(r.Key) != ed25519.PublicKeySize || len(r.Sig) != ed25519.SignatureSize || len(r.Cert) > MaxRecordCert {
		return fmt.Errorf("dir: record of address %d with a %d-byte key, a %d-byte signature and a %d-byte certificate: %w", r.Addr, len(r.Key), len(r.Sig), len(r.Cert), flow.ErrInvalid)
	}
	return nil
}
