package carrier

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ouronet/ouro/crypto/identity"
)

// The seen-set on disk (Config.State): without it, a receiver that
// restarts forgets which bundles it took, and a copy of one that has not
// expired is accepted again. It is a log in State/SeenFile: one record per
// bundle taken (and one per sender floor raised), appended and synced
// before the bundle's SDUs are delivered, so that no bundle is delivered
// twice whatever the moment of a crash. At start the log is read back
// (expired entries dropped) and rewritten compacted; it is compacted
// again whenever it holds twice MaxSeen records. Records are length
// prefixed (two bytes, big-endian) deterministic CBOR; a torn last
// record, from a crash in the middle of an append, ends the log.

// SeenFile is the seen-set's log in Config.State.
const SeenFile = "seen.log"

// seenRecord is one entry of the log: a bundle taken (sender, sequence,
// expiry) or, with Floor, a sender whose sequences up to Seq are refused.
type seenRecord struct {
	_       struct{} `cbor:",toarray"`
	Sender  string   // identity.NameOf the sender's key
	Seq     uint64
	Expires int64 // Unix seconds; 0 for a floor
	Floor   bool
}

// maxSeenRecord bounds one record's encoding: a sender's name is
// identity.NameOf's (short), the rest fixed-size.
const maxSeenRecord = 256

// errTorn ends a log whose last record was cut short.
var errTorn = errors.New("carrier: seen log: torn record")

// seenLog is the open log of a receiver.
type seenLog struct {
	path    string
	f       *os.File
	codec   identity.Codec
	records int // in the file
}

// parseSeen decodes a log: every record it holds, in order, until the end
// or a torn or malformed record (whose error it returns with the records
// before it).
func parseSeen(c identity.Codec, data []byte) ([]seenRecord, error) {
	var out []seenRecord
	for len(data) > 0 {
		if len(data) < 2 {
			return out, errTorn
		}
		n := int(binary.BigEndian.Uint16(data))
		if n == 0 || n > maxSeenRecord {
			return out, fmt.Errorf("carrier: seen log: record of %d bytes: %w", n, ErrMalformed)
		}
		if len(data) < 2+n {
			return out, errTorn
		}
		var r seenRecord
		if err := c.Unmarshal(data[2:2+n], maxSeenRecord, &r); err != nil {
			return out, fmt.Errorf("carrier: seen log: %w: %w", ErrMalformed, err)
		}
		if r.Sender == "" || len(r.Sender) > MaxNameLen {
			return out, fmt.Errorf("carrier: seen log: sender of %d bytes: %w", len(r.Sender), ErrMalformed)
		}
		out = append(out, r)
		data = data[2+n:]
	}
	return out, nil
}

// appendRecord encodes r onto b.
func appendRecord(c identity.Codec, b []byte, r seenRecord) ([]byte, error) {
	enc, err := c.Marshal(r)
	if err != nil {
		return b, err
	}
	if len(enc) > maxSeenRecord {
		return b, fmt.Errorf("carrier: seen log: record of %d bytes: %w", len(enc), ErrMalformed)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(enc)))
	return append(b, enc...), nil
}

// loadSeen reads the log in dir into r's seen-set (expired entries
// dropped, the bound applied) and opens it, compacted, for appending.
// A log cut short or damaged is taken up to the damage: what follows is
// lost, said in the error, which the caller reports; the log is usable.
func (r *receiver) loadSeen(dir string, now int64) (*seenLog, error) {
	path := filepath.Join(dir, SeenFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("carrier: seen log: %w", err)
	}
	recs, perr := parseSeen(r.p.codec, data)
	for _, rec := range recs {
		switch {
		case rec.Floor:
			r.floor[rec.Sender] = max(r.floor[rec.Sender], rec.Seq)
		case rec.Expires >= now && rec.Seq > r.floor[rec.Sender]:
			r.remember(seenKey{rec.Sender, rec.Seq}, rec.Expires, now)
		}
	}
	l := &seenLog{path: path, codec: r.p.codec}
	if err := l.rewrite(r); err != nil {
		return nil, err
	}
	if perr != nil && !errors.Is(perr, errTorn) {
		return l, perr
	}
	return l, nil
}

// rewrite replaces the log with r's seen-set and floors (writeAtomic)
// and opens it for appending.
func (l *seenLog) rewrite(r *receiver) error {
	var b []byte
	var err error
	for s, seq := range r.floor {
		if b, err = appendRecord(l.codec, b, seenRecord{Sender: s, Seq: seq, Floor: true}); err != nil {
			return err
		}
	}
	for k, exp := range r.seen {
		if b, err = appendRecord(l.codec, b, seenRecord{Sender: k.sender, Seq: k.seq, Expires: exp}); err != nil {
			return err
		}
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if err := writeAtomic(filepath.Dir(l.path), filepath.Base(l.path), b); err != nil {
		return fmt.Errorf("carrier: seen log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("carrier: seen log: %w", err)
	}
	l.f, l.records = f, len(r.seen)+len(r.floor)
	return nil
}

// add appends recs and syncs them; past twice maxSeen records it
// compacts the log from r instead.
func (l *seenLog) add(r *receiver, maxSeen int, recs ...seenRecord) error {
	if l.records+len(recs) > 2*maxSeen {
		return l.rewrite(r)
	}
	var b []byte
	for _, rec := range recs {
		var err error
		if b, err = appendRecord(l.codec, b, rec); err != nil {
			return err
		}
	}
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("carrier: seen log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("carrier: seen log: %w", err)
	}
	l.records += len(recs)
	return nil
}

func (l *seenLog) close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
