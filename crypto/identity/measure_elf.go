//go:build !tamago

// MeasureELF reads an image file on a host (ouro measure); it is left out
// of bare-metal images, which measure themselves in memory
// (MeasureBytes), so that they do not link debug/elf (and debug/dwarf,
// compress/zlib with it).

package identity

import (
	"debug/elf"
	"fmt"
)

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
