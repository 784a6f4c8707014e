package identity

import (
	"crypto/sha256"
	"debug/elf"
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

// MeasureELF measures an image file as the image measures itself once
// loaded: MeasureBytes over its code (runtime.text..runtime.etext) and
// its read-only data (runtime.rodata..runtime.erodata), located by the Go
// linker's symbols and read from the file's loadable segments. A table
// the runtime writes once running (ELFHole: TamaGo's amd64 interrupt
// descriptor table) is cut out of the read-only data, which then counts
// as the two segments either side of it. It is how a host computes the
// measurement a `measured` policy lists for a bare-metal image (`ouro
// measure IMAGE.elf`).
func MeasureELF(path string) (Measurement, error) {
	f, err := elf.Open(path)
	if err != nil {
		return Measurement{}, fmt.Errorf("identity: measure %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return Measurement{}, fmt.Errorf("identity: measure %s: symbols: %w", path, err)
	}
	want := map[string]uint64{"runtime.text": 0, "runtime.etext": 0, "runtime.rodata": 0, "runtime.erodata": 0}
	var hole, holeSize uint64
	found := 0
	for _, s := range syms {
		if v, ok := want[s.Name]; ok && v == 0 {
			want[s.Name] = s.Value
			found++
		}
		if s.Name == ELFHole {
			hole, holeSize = s.Value, s.Size
		}
	}
	if found != len(want) {
		return Measurement{}, fmt.Errorf("identity: measure %s: not a Go image (linker symbols missing): %w", path, ErrInvalid)
	}
	read := func(from, to uint64) ([]byte, error) {
		if to < from || to-from > 1<<30 {
			return nil, fmt.Errorf("identity: measure %s: bad range %#x..%#x: %w", path, from, to, ErrInvalid)
		}
		out := make([]byte, to-from)
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD {
				continue
			}
			lo, hi := max(from, p.Vaddr), min(to, p.Vaddr+p.Filesz)
			if lo >= hi {
				continue
			}
			if _, err := p.ReadAt(out[lo-from:hi-from], int64(lo-p.Vaddr)); err != nil {
				return nil, fmt.Errorf("identity: measure %s: %w", path, err)
			}
		}
		return out, nil
	}
	text, err := read(want["runtime.text"], want["runtime.etext"])
	if err != nil {
		return Measurement{}, err
	}
	rodata, err := read(want["runtime.rodata"], want["runtime.erodata"])
	if err != nil {
		return Measurement{}, err
	}
	if holeSize == 0 {
		return MeasureBytes(text, rodata), nil
	}
	at := hole - want["runtime.rodata"]
	if hole < want["runtime.rodata"] || at+holeSize > uint64(len(rodata)) {
		return Measurement{}, fmt.Errorf("identity: measure %s: runtime table %#x+%d outside the read-only data: %w", path, hole, holeSize, ErrInvalid)
	}
	return MeasureBytes(text, rodata[:at], rodata[at+holeSize:]), nil
}

// ELFHole is the symbol of the table inside an image's read-only data
// that its runtime writes once running (TamaGo's amd64 interrupt
// descriptor table), which neither the image nor MeasureELF measures.
const ELFHole = "github.com/usbarmory/tamago/amd64.idt"
