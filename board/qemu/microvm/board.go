//go:build tamago && amd64

package microvm

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/usbarmory/tamago/amd64"
)

// Board is QEMU's microvm machine. The hardware is a singleton: an image
// holds one Board and calls Init once.
type Board struct {
	initOnce sync.Once
	initErr  error
	console  *Console
	nic      *NIC
}

// Init starts the interrupt service and the idle governor and switches the
// random source to checked RDRAND (see the package doc). Timers, the local
// APIC, the I/O APICs and COM1 were initialised when the runtime started.
func (b *Board) Init() error {
	b.initOnce.Do(func() {
		b.console = &Console{}
		if err := initEntropy(); err != nil {
			b.initErr = err
			return
		}
		startInterrupts()
	})

	return b.initErr
}

// Emulated reports true: microvm exists only in QEMU.
func (b *Board) Emulated() bool {
	return true
}

// Name describes the machine and the accelerator seen through CPUID
// (leaf 0x40000000: "TCGTCGTCGTCG" under TCG, "KVMKVMKVM" under KVM).
func (b *Board) Name() string {
	return fmt.Sprintf("QEMU microvm (x86-64, %s, TSC %.3f GHz)", accelerator(), float64(tscHz)/1e9)
}

func accelerator() string {
	_, ebx, ecx, edx := CPU.CPUID(amd64.CPUID_KVM_SIGNATURE, 0)
	sig := make([]byte, 0, 12)
	for _, r := range []uint32{ebx, ecx, edx} {
		sig = append(sig, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	switch string(sig) {
	case "TCGTCGTCGTCG":
		return "TCG"
	case "KVMKVMKVM\x00\x00\x00":
		return "KVM"
	default:
		return "unknown accelerator"
	}
}

// Console is the serial console: COM1, QEMU's first -serial (stdio with
// -nographic). Standard output and standard error go to it as well.
type Console struct{}

// Console returns the console; nil before Init.
func (b *Board) Console() *Console {
	return b.console
}

// Write transmits p, waiting for the UART. Concurrent writers interleave.
func (c *Console) Write(p []byte) (int, error) {
	return UART0.Write(p)
}

// Read returns the bytes already received, waiting (polling every
// consolePoll) until at least one is available: console input is for
// humans, not data, so no receive interrupt is wired.
func (c *Console) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}

	for {
		n := 0
		for n < len(p) {
			ch, ok := UART0.Rx()
			if !ok {
				break
			}
			p[n] = ch
			n++
		}

		if n > 0 {
			return n, nil
		}

		time.Sleep(consolePoll)
	}
}

const consolePoll = 20 * time.Millisecond

// Entropy returns the board's random source, crypto/rand.Reader, which
// the runtime wires to the board's generator (EntropySource).
func (b *Board) Entropy() io.Reader {
	return rand.Reader
}

// Reset restarts the machine through a triple fault (microvm has no reset
// register; with -no-reboot QEMU exits with status 0 instead).
func (b *Board) Reset() {
	amd64.Fault()
}
