//go:build tamago && arm

#include "textflag.h"

// func vector()
//
// The IRQ exception vector (installed by Start in place of tamago's, which
// wakes the interrupt goroutine with runtime.WakeG from here: see
// armirq.go). It touches nothing of the Go runtime: it records that an
// interrupt is pending (pending = 1) and returns to the interrupted code
// with IRQs masked (SPSR.I set), so the interrupt, still pending at the
// interrupt controller, does not come back until the service goroutine has
// served it and unmasked IRQs again.
TEXT ·vector(SB),NOSPLIT|NOFRAME,$0
	// remove exception specific LR offset
	SUB	$4, R14, R14

	MOVM.DB.W	[R0-R1], (R13)	// push {r0, r1} on the IRQ mode stack

	MOVW	$1, R0
	MOVW	$·pending(SB), R1
	MOVW	R0, (R1)

	WORD	$0xe14f0000		// mrs r0, SPSR
	ORR	$1<<7, R0		// mask IRQs in the interrupted context
	WORD	$0xe169f000		// msr SPSR, r0

	MOVM.IA.W	(R13), [R0-R1]	// pop {r0, r1}

	// restore PC from LR and CPSR from SPSR
	MOVW.S	R14, R15
