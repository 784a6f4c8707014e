package identity

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// Measurement is the SHA-256 of a node image: what a node runs. Its zero
// value is "not measured". It is comparable and encodes in CBOR as a
// 32-byte string.
type Measurement [sha256.Size]byte

// String returns the measurement in lower-case hex.
func (m Measurement) String() string { return hex.EncodeToString(m[:]) }

// IsZero reports whether m is the zero value (not measured).
func (m Measurement) IsZero() bool { return m == Measurement{} }

// ParseMeasurement parses 64 hex digits.
func ParseMeasurement(s string) (Measurement, error) {
	var m Measurement
	if len(s) != 2*len(m) {
		return m, fmt.Errorf("identity: measurement %q: want %d hex digits: %w", s, 2*len(m), ErrMalformed)
	}
	if _, err := hex.Decode(m[:], []byte(s)); err != nil {
		return Measurement{}, fmt.Errorf("identity: measurement %q: %w: %w", s, ErrMalformed, err)
	}
	return m, nil
}

// MarshalText returns String's form (for configuration files and JSON).
func (m Measurement) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses String's form.
func (m *Measurement) UnmarshalText(b []byte) error {
	v, err := ParseMeasurement(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MeasureFile returns the SHA-256 of the file at path (what sha256sum
// prints): the measurement of a hosted node's executable.
func MeasureFile(path string) (Measurement, error) {
	f, err := os.Open(path)
	if err != nil {
		return Measurement{}, fmt.Errorf("identity: measure: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Measurement{}, fmt.Errorf("identity: measure %s: %w", path, err)
	}
	var m Measurement
	h.Sum(m[:0])
	return m, nil
}

// MeasureSelf measures the running executable (os.Executable) on a
// hosted node. Bare metal has no file: a board measures its loaded image
// with MeasureBytes.
func MeasureSelf() (Measurement, error) {
	p, err := os.Executable()
	if err != nil {
		return Measurement{}, fmt.Errorf("identity: measure self: %w", err)
	}
	return MeasureFile(p)
}

// MeasureBytes measures an image given as memory segments (on bare metal:
// the loaded code and read-only data, in address order):
//
//	SHA-256( len(s1) || s1 || len(s2) || s2 || ... )
//
// where each len is the segment's length as 8 bytes big-endian. The
// lengths keep (A, B) and (A', B') with A||B == A'||B' apart. A host tool
// that measures an image file for a policy must cut the same segments.
func MeasureBytes(segments ...[]byte) Measurement {
	h := sha256.New()
	var n [8]byte
	for _, s := range segments {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write(s)
	}
	var m Measurement
	h.Sum(m[:0])
	return m
}

// ELFHole is the symbol of the table inside an image's read-only data
// that its runtime writes once running (TamaGo's amd64 interrupt
// descriptor table), which neither the image nor MeasureELF measures.
const ELFHole = "github.com/usbarmory/tamago/amd64.idt"
