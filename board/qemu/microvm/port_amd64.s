//go:build tamago && amd64

#include "textflag.h"

// Port I/O, the TSC and RDRAND/RDSEED with their carry flag (Intel SDM
// Vol. 2: IN, OUT, RDTSC, RDRAND, RDSEED). Encoded as bytes where the Go
// assembler has no mnemonic, as tamago's internal/reg does.

// func inb(port uint16) uint8
TEXT ·inb(SB),NOSPLIT,$0-9
	MOVW	port+0(FP), DX
	BYTE	$0xec			// in al, dx
	MOVB	AL, ret+8(FP)
	RET

// func outb(port uint16, val uint8)
TEXT ·outb(SB),NOSPLIT,$0-3
	MOVW	port+0(FP), DX
	MOVB	val+2(FP), AL
	BYTE	$0xee			// out dx, al
	RET

// func outw(port uint16, val uint16)
TEXT ·outw(SB),NOSPLIT,$0-4
	MOVW	port+0(FP), DX
	MOVW	val+2(FP), AX
	BYTE	$0x66			// out dx, ax
	BYTE	$0xef
	RET

// func outl(port uint16, val uint32)
TEXT ·outl(SB),NOSPLIT,$0-8
	MOVW	port+0(FP), DX
	MOVL	val+4(FP), AX
	BYTE	$0xef			// out dx, eax
	RET

// func rdtsc() uint64
TEXT ·rdtsc(SB),NOSPLIT,$0-8
	RDTSC
	SHLQ	$32, DX
	ORQ	DX, AX
	MOVQ	AX, ret+0(FP)
	RET

// func rdrand64() (v uint64, ok bool)
TEXT ·rdrand64(SB),NOSPLIT,$0-9
	BYTE	$0x48; BYTE $0x0f; BYTE $0xc7; BYTE $0xf0	// rdrand rax
	SETCS	BL
	MOVQ	AX, v+0(FP)
	MOVB	BL, ok+8(FP)
	RET

// func rdseed64() (v uint64, ok bool)
TEXT ·rdseed64(SB),NOSPLIT,$0-9
	BYTE	$0x48; BYTE $0x0f; BYTE $0xc7; BYTE $0xf8	// rdseed rax
	SETCS	BL
	MOVQ	AX, v+0(FP)
	MOVB	BL, ok+8(FP)
	RET

// func haltForever()
TEXT ·haltForever(SB),NOSPLIT,$0
	CLI
loop:
	HLT
	JMP	loop

// MMIO accessors: one plain 32-bit load or store each. sync/atomic's
// store is XCHG, which also reads the register (a wasted, and for
// write-only registers invalid, device access); as a call into assembly
// neither is reordered by the compiler, and x86 keeps stores in order.

// func mmioRead32(addr uint32) uint32
TEXT ·mmioRead32(SB),NOSPLIT,$0-12
	MOVL	addr+0(FP), BX
	MOVL	(BX), AX
	MOVL	AX, ret+8(FP)
	RET

// func mmioWrite32(addr uint32, val uint32)
TEXT ·mmioWrite32(SB),NOSPLIT,$0-8
	MOVL	addr+0(FP), BX
	MOVL	val+4(FP), AX
	MOVL	AX, (BX)
	RET
