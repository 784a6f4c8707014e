//go:build tamago && arm && (pizero || pi1) && linkcpuinit

#include "textflag.h"

// cpuinit is the first code the image runs (runtime/goos.CPUInit jumps
// here): TamaGo's arm/init.s for a single-core ARMv6 (ARM1176JZF-S), which
// has neither HYP mode nor MPIDR, so there is nothing to park.
TEXT cpuinit(SB),NOSPLIT|NOFRAME,$0
	// enter System Mode, IRQ and FIQ masked
	WORD	$0xe321f0df	// msr CPSR_c, 0xdf

	// set the stack pointer (banked: after the mode switch)
	MOVW	runtime∕goos·RamStart(SB), R13
	MOVW	runtime∕goos·RamSize(SB), R1
	MOVW	runtime∕goos·RamStackOffset(SB), R2
	ADD	R1, R13
	SUB	R2, R13
	B	_rt0_tamago_start(SB)

// func wfi()
//
// ARMv6 wait for interrupt, the CP15 form (ARM1176JZF-S TRM, 3.2.22,
// c7 "Wait For Interrupt").
TEXT ·wfi(SB),NOSPLIT,$0
	MOVW	$0, R0
	WORD	$0xee070f90	// mcr p15, 0, r0, c7, c0, 4
	RET

// func cleanInvalidateDCache()
//
// ARMv6 clean and invalidate the entire data cache, then drain the write
// buffer (ARM1176JZF-S TRM, 3.2.22, c7 operations).
TEXT ·cleanInvalidateDCache(SB),NOSPLIT,$0
	MOVW	$0, R0
	WORD	$0xee070f1e	// mcr p15, 0, r0, c7, c14, 0
	WORD	$0xee070f9a	// mcr p15, 0, r0, c7, c10, 4
	RET

// func setXP()
//
// SCTLR.XP (bit 23): ARMv6 page table format, with XN, rather than the
// backward-compatible one with subpage permissions (ARM1176JZF-S TRM,
// 3.2.7 and 6.11). TamaGo's arm.InitMMU writes ARMv6/v7 descriptors.
TEXT ·setXP(SB),NOSPLIT,$0
	WORD	$0xee110f10	// mrc p15, 0, r0, c1, c0, 0
	ORR	$(1<<23), R0
	WORD	$0xee010f10	// mcr p15, 0, r0, c1, c0, 0
	RET
