//go:build tamago && amd64

#include "textflag.h"

// func imageBounds() (text, etext, rodata, erodata, hole unsafe.Pointer, holeSize uintptr)
//
// The hole is TamaGo's interrupt descriptor table, a read-only data
// symbol the runtime fills in at boot; its pointer (idtptr: a 2-byte
// limit, then the 8-byte base) says where and how long.
TEXT ·imageBounds(SB),NOSPLIT,$0-48
	LEAQ	runtime·text(SB), AX
	MOVQ	AX, text+0(FP)
	LEAQ	runtime·etext(SB), AX
	MOVQ	AX, etext+8(FP)
	LEAQ	runtime·rodata(SB), AX
	MOVQ	AX, rodata+16(FP)
	LEAQ	runtime·erodata(SB), AX
	MOVQ	AX, erodata+24(FP)
	MOVQ	github·com∕usbarmory∕tamago∕amd64·idtptr+2(SB), AX
	MOVQ	AX, hole+32(FP)
	XORQ	AX, AX
	MOVW	github·com∕usbarmory∕tamago∕amd64·idtptr+0(SB), AX
	INCQ	AX
	MOVQ	AX, holeSize+40(FP)
	RET
