//go:build tamago && arm && pi2 && linkcpuinit

#include "textflag.h"

// cpuinit is the first code the image runs (runtime/goos.CPUInit jumps
// here). It is TamaGo's arm/init.s with two additions:
//
//   - secondary cores are parked: QEMU's raspi2b starts all four cores at
//     the ELF entry point (the real firmware keeps cores 1-3 in its own
//     spin loop), and the Go runtime must run on core 0 only;
//   - in HYP mode (how the Pi 2 firmware starts a kernel) CNTHCTL grants
//     PL1 access to the physical counter and timer before dropping to SVC,
//     so the idle governor can program the timer (ARMv7-A ARM, B4.1.26).
TEXT cpuinit(SB),NOSPLIT|NOFRAME,$0
	// MPIDR.Aff0: the core number (Cortex-A7 MPCore TRM, 4.3.5)
	WORD	$0xee100fb0	// mrc p15, 0, r0, c0, c0, 5
	AND	$3, R0, R0
	CMP	$0, R0
	B.EQ	core0

	// WFI, not WFE: QEMU's TCG treats WFE as a mere yield, so cores
	// parked in WFE spin on the host; WFI halts the vCPU. Nothing wakes
	// them: no interrupt is routed to cores 1-3.
park:
	WORD	$0xe320f003	// wfi
	B	park

core0:
	// set stack pointer
	MOVW	runtime∕goos·RamStart(SB), R13
	MOVW	runtime∕goos·RamSize(SB), R1
	MOVW	runtime∕goos·RamStackOffset(SB), R2
	ADD	R1, R13
	SUB	R2, R13
	MOVW	R13, R3

	// detect HYP mode and switch to SVC if necessary
	WORD	$0xe10f0000	// mrs r0, CPSR
	AND	$0x1f, R0, R0	// get processor mode

	CMP	$0x10, R0	// USR mode
	BL.EQ	_rt0_tamago_start(SB)

	CMP	$0x1a, R0	// HYP mode
	B.NE	after_eret

	// CNTHCTL.PL1PCEN | PL1PCTEN
	MOVW	$3, R1
	WORD	$0xee8e1f11	// mcr p15, 4, r1, c14, c1, 0

	BIC	$0x1f, R0
	ORR	$0x1d3, R0	// AIF masked, SVC mode
	MOVW	$12(R15), R14	// add lr, pc, #12 (after_eret)
	WORD	$0xe16ff000	// msr SPSR_fsxc, r0
	WORD	$0xe12ef30e	// msr ELR_hyp, lr
	WORD	$0xe160006e	// eret

after_eret:
	// enter System Mode
	WORD	$0xe321f0df	// msr CPSR_c, 0xdf

	MOVW	R3, R13
	B	_rt0_tamago_start(SB)
