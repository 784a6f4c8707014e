//go:build tamago && amd64

package main

import (
	"fmt"

	"github.com/ouronet/ouro/board/qemu/microvm"
)

// QEMU's microvm machine under TCG (board/qemu/microvm).
type board = microvm.Board

const (
	maxFrameLen = microvm.MaxFrameLen
	sleepInsn   = "HLT"
)

var errFrameTooLong = microvm.ErrFrameTooLong

func exit(code int) { microvm.Exit(code) }

// boardReady prints the calibrated timer rates: the figures the idle
// governor and the clock depend on.
func boardReady(b *board) {
	tsc, apic := microvm.TimerFrequencies()
	fmt.Printf("boottest: TSC %d Hz, APIC timer %d Hz (calibrated against the PIT)\n", tsc, apic)
}
