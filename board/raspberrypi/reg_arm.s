//go:build tamago && arm

#include "textflag.h"

// Device register access. Assembly so that the compiler neither elides nor
// reorders an access and so that the functions are safe before the Go
// runtime is up (no stack growth, no write barriers).

// func read32(addr uint32) uint32
TEXT ·read32(SB),NOSPLIT,$0-8
	MOVW	addr+0(FP), R0
	MOVW	(R0), R1
	MOVW	R1, ret+4(FP)
	RET

// func write32(addr uint32, val uint32)
TEXT ·write32(SB),NOSPLIT,$0-8
	MOVW	addr+0(FP), R0
	MOVW	val+4(FP), R1
	MOVW	R1, (R0)
	RET

// func semihostingCall(op uint32, arg uintptr) uintptr
//
// ARM semihosting trap for A32 state: SVC 0x123456 with the operation in
// R0 and the parameter in R1, result in R0 ("Semihosting for AArch32 and
// AArch64", ARM DUI 0058, section 2.1). QEMU services it only when started
// with -semihosting; on real hardware it is an ordinary SVC and faults.
TEXT ·semihostingCall(SB),NOSPLIT,$0-12
	MOVW	op+0(FP), R0
	MOVW	arg+4(FP), R1
	WORD	$0xef123456	// svc 0x00123456
	MOVW	R0, ret+8(FP)
	RET
