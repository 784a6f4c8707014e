//go:build tamago && amd64

package microvm

import (
	"encoding/binary"
	"errors"
	_ "unsafe"

	"github.com/usbarmory/tamago/amd64"
)

// The runtime's random source.
//
// tamago's amd64 package installs RDRAND as the random source and seeds
// the runtime from it before any board code runs; it neither checks CPUID
// nor the carry flag (RDRAND's "no data" signal). Under TCG, QEMU
// implements RDRAND only for CPU models that advertise it (-cpu max) and
// then returns the host's getrandom(2) output; with the default qemu64
// model the instruction raises #UD before the IDT exists and the guest
// triple-faults. So RDRAND is required, and a fallback (RDSEED or TSC
// jitter) could never run; none is implemented. Init replaces the hook with
// one that checks the carry flag and retries, as Intel's DRNG guide
// (section 5.2.1) prescribes.

// rngFn is tamago's random source hook, behind runtime/goos.GetRandomData
// and so behind crypto/rand.
//
//go:linkname rngFn github.com/usbarmory/tamago/internal/rng.GetRandomDataFn
var rngFn func([]byte)

// rdrandRetries is how often a failed RDRAND is retried (Intel's DRNG
// software implementation guide, 5.2.1, recommends 10).
const rdrandRetries = 10

// CPUID leaf 1 ECX bit 30: RDRAND (Intel SDM Vol. 2A, CPUID, Table 3-10).
const cpuidRDRAND = 30

var errNoRDRAND = errors.New("microvm: CPU has no RDRAND (run QEMU with -cpu max)")

func initEntropy() error {
	_, _, ecx, _ := CPU.CPUID(amd64.CPUID_INFO, 0)
	if ecx&(1<<cpuidRDRAND) == 0 {
		return errNoRDRAND
	}

	rngFn = fillRDRAND
	return nil
}

func fillRDRAND(b []byte) {
	var w [8]byte

	for len(b) > 0 {
		var v uint64
		ok := false
		for i := 0; i < rdrandRetries && !ok; i++ {
			v, ok = rdrand64()
		}
		if !ok {
			panic("microvm: RDRAND returned no data 10 times in a row")
		}
		binary.LittleEndian.PutUint64(w[:], v)
		b = b[copy(b, w[:]):]
	}
}

// EntropySource names what Entropy draws from.
func (b *Board) EntropySource() string {
	return "RDRAND (under QEMU TCG: the host's getrandom)"
}
