//go:build tamago && arm

#include "textflag.h"

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
