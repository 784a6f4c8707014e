//go:build tamago && (arm || amd64)

package main

import (
	"fmt"
	"unsafe"

	"github.com/ouronet/ouro/crypto/identity"
)

// imageBounds returns the linker's bounds of the loaded image's code
// (runtime.text..runtime.etext) and read-only data
// (runtime.rodata..runtime.erodata), and the table inside the read-only
// data that the runtime writes once running (amd64: TamaGo's interrupt
// descriptor table; arm: none, nil and 0): measure_tamago_$GOARCH.s.
func imageBounds() (text, etext, rodata, erodata, hole unsafe.Pointer, holeSize uintptr)

// measureImage measures the running image as identity.MeasureBytes over
// its code and read-only data less the runtime-written table, the same
// segments identity.MeasureELF cuts from the ELF file on a host
// ("ouro measure IMAGE.elf").
func measureImage() identity.Measurement {
	text, etext, rodata, erodata, hole, holeSize := imageBounds()
	segs := [][]byte{unsafe.Slice((*byte)(text), uintptr(etext)-uintptr(text))}
	if hole == nil {
		segs = append(segs, unsafe.Slice((*byte)(rodata), uintptr(erodata)-uintptr(rodata)))
	} else {
		segs = append(segs,
			unsafe.Slice((*byte)(rodata), uintptr(hole)-uintptr(rodata)),
			unsafe.Slice((*byte)(unsafe.Add(hole, holeSize)), uintptr(erodata)-uintptr(hole)-holeSize))
	}
	return identity.MeasureBytes(segs...)
}

// imageRanges describes the measured ranges (for the console).
func imageRanges() string {
	text, etext, rodata, erodata, hole, holeSize := imageBounds()
	s := fmt.Sprintf("text %#x-%#x, rodata %#x-%#x", uintptr(text), uintptr(etext), uintptr(rodata), uintptr(erodata))
	if hole != nil {
		s += fmt.Sprintf(" less %#x-%#x", uintptr(hole), uintptr(hole)+holeSize)
	}
	return s
}
