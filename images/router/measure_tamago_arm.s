//go:build tamago && arm

#include "textflag.h"

// func imageBounds() (text, etext, rodata, erodata, hole unsafe.Pointer, holeSize uintptr)
TEXT ·imageBounds(SB),NOSPLIT,$0-24
	MOVW	$runtime·text(SB), R0
	MOVW	R0, text+0(FP)
	MOVW	$runtime·etext(SB), R0
	MOVW	R0, etext+4(FP)
	MOVW	$runtime·rodata(SB), R0
	MOVW	R0, rodata+8(FP)
	MOVW	$runtime·erodata(SB), R0
	MOVW	R0, erodata+12(FP)
	MOVW	$0, R0
	MOVW	R0, hole+16(FP)
	MOVW	R0, holeSize+20(FP)
	RET
