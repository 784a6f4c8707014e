//go:build tamago && amd64

#include "textflag.h"

// The interrupt path of the microvm for vectors 32-255 (installed by
// startInterrupts in place of tamago's, which wakes its interrupt
// goroutine with runtime.WakeG from the vector: see irq.go). It touches
// nothing of the Go runtime.

// func table()
//
// The IDT's targets for vectors 32-255: one 5-byte CALL each (E8 rel32,
// as tamago's own jump table), so take finds the vector from the return
// address the CALL pushed. startInterrupts checks the layout before it
// installs the table.
TEXT ·table(SB),NOSPLIT|NOFRAME,$0
	CALL	·take(SB)	// 32
	CALL	·take(SB)	// 33
	CALL	·take(SB)	// 34
	CALL	·take(SB)	// 35
	CALL	·take(SB)	// 36
	CALL	·take(SB)	// 37
	CALL	·take(SB)	// 38
	CALL	·take(SB)	// 39
	CALL	·take(SB)	// 40
	CALL	·take(SB)	// 41
	CALL	·take(SB)	// 42
	CALL	·take(SB)	// 43
	CALL	·take(SB)	// 44
	CALL	·take(SB)	// 45
	CALL	·take(SB)	// 46
	CALL	·take(SB)	// 47
	CALL	·take(SB)	// 48
	CALL	·take(SB)	// 49
	CALL	·take(SB)	// 50
	CALL	·take(SB)	// 51
	CALL	·take(SB)	// 52
	CALL	·take(SB)	// 53
	CALL	·take(SB)	// 54
	CALL	·take(SB)	// 55
	CALL	·take(SB)	// 56
	CALL	·take(SB)	// 57
	CALL	·take(SB)	// 58
	CALL	·take(SB)	// 59
	CALL	·take(SB)	// 60
	CALL	·take(SB)	// 61
	CALL	·take(SB)	// 62
	CALL	·take(SB)	// 63
	CALL	·take(SB)	// 64
	CALL	·take(SB)	// 65
	CALL	·take(SB)	// 66
	CALL	·take(SB)	// 67
	CALL	·take(SB)	// 68
	CALL	·take(SB)	// 69
	CALL	·take(SB)	// 70
	CALL	·take(SB)	// 71
	CALL	·take(SB)	// 72
	CALL	·take(SB)	// 73
	CALL	·take(SB)	// 74
	CALL	·take(SB)	// 75
	CALL	·take(SB)	// 76
	CALL	·take(SB)	// 77
	CALL	·take(SB)	// 78
	CALL	·take(SB)	// 79
	CALL	·take(SB)	// 80
	CALL	·take(SB)	// 81
	CALL	·take(SB)	// 82
	CALL	·take(SB)	// 83
	CALL	·take(SB)	// 84
	CALL	·take(SB)	// 85
	CALL	·take(SB)	// 86
	CALL	·take(SB)	// 87
	CALL	·take(SB)	// 88
	CALL	·take(SB)	// 89
	CALL	·take(SB)	// 90
	CALL	·take(SB)	// 91
	CALL	·take(SB)	// 92
	CALL	·take(SB)	// 93
	CALL	·take(SB)	// 94
	CALL	·take(SB)	// 95
	CALL	·take(SB)	// 96
	CALL	·take(SB)	// 97
	CALL	·take(SB)	// 98
	CALL	·take(SB)	// 99
	CALL	·take(SB)	// 100
	CALL	·take(SB)	// 101
	CALL	·take(SB)	// 102
	CALL	·take(SB)	// 103
	CALL	·take(SB)	// 104
	CALL	·take(SB)	// 105
	CALL	·take(SB)	// 106
	CALL	·take(SB)	// 107
	CALL	·take(SB)	// 108
	CALL	·take(SB)	// 109
	CALL	·take(SB)	// 110
	CALL	·take(SB)	// 111
	CALL	·take(SB)	// 112
	CALL	·take(SB)	// 113
	CALL	·take(SB)	// 114
	CALL	·take(SB)	// 115
	CALL	·take(SB)	// 116
	CALL	·take(SB)	// 117
	CALL	·take(SB)	// 118
	CALL	·take(SB)	// 119
	CALL	·take(SB)	// 120
	CALL	·take(SB)	// 121
	CALL	·take(SB)	// 122
	CALL	·take(SB)	// 123
	CALL	·take(SB)	// 124
	CALL	·take(SB)	// 125
	CALL	·take(SB)	// 126
	CALL	·take(SB)	// 127
	CALL	·take(SB)	// 128
	CALL	·take(SB)	// 129
	CALL	·take(SB)	// 130
	CALL	·take(SB)	// 131
	CALL	·take(SB)	// 132
	CALL	·take(SB)	// 133
	CALL	·take(SB)	// 134
	CALL	·take(SB)	// 135
	CALL	·take(SB)	// 136
	CALL	·take(SB)	// 137
	CALL	·take(SB)	// 138
	CALL	·take(SB)	// 139
	CALL	·take(SB)	// 140
	CALL	·take(SB)	// 141
	CALL	·take(SB)	// 142
	CALL	·take(SB)	// 143
	CALL	·take(SB)	// 144
	CALL	·take(SB)	// 145
	CALL	·take(SB)	// 146
	CALL	·take(SB)	// 147
	CALL	·take(SB)	// 148
	CALL	·take(SB)	// 149
	CALL	·take(SB)	// 150
	CALL	·take(SB)	// 151
	CALL	·take(SB)	// 152
	CALL	·take(SB)	// 153
	CALL	·take(SB)	// 154
	CALL	·take(SB)	// 155
	CALL	·take(SB)	// 156
	CALL	·take(SB)	// 157
	CALL	·take(SB)	// 158
	CALL	·take(SB)	// 159
	CALL	·take(SB)	// 160
	CALL	·take(SB)	// 161
	CALL	·take(SB)	// 162
	CALL	·take(SB)	// 163
	CALL	·take(SB)	// 164
	CALL	·take(SB)	// 165
	CALL	·take(SB)	// 166
	CALL	·take(SB)	// 167
	CALL	·take(SB)	// 168
	CALL	·take(SB)	// 169
	CALL	·take(SB)	// 170
	CALL	·take(SB)	// 171
	CALL	·take(SB)	// 172
	CALL	·take(SB)	// 173
	CALL	·take(SB)	// 174
	CALL	·take(SB)	// 175
	CALL	·take(SB)	// 176
	CALL	·take(SB)	// 177
	CALL	·take(SB)	// 178
	CALL	·take(SB)	// 179
	CALL	·take(SB)	// 180
	CALL	·take(SB)	// 181
	CALL	·take(SB)	// 182
	CALL	·take(SB)	// 183
	CALL	·take(SB)	// 184
	CALL	·take(SB)	// 185
	CALL	·take(SB)	// 186
	CALL	·take(SB)	// 187
	CALL	·take(SB)	// 188
	CALL	·take(SB)	// 189
	CALL	·take(SB)	// 190
	CALL	·take(SB)	// 191
	CALL	·take(SB)	// 192
	CALL	·take(SB)	// 193
	CALL	·take(SB)	// 194
	CALL	·take(SB)	// 195
	CALL	·take(SB)	// 196
	CALL	·take(SB)	// 197
	CALL	·take(SB)	// 198
	CALL	·take(SB)	// 199
	CALL	·take(SB)	// 200
	CALL	·take(SB)	// 201
	CALL	·take(SB)	// 202
	CALL	·take(SB)	// 203
	CALL	·take(SB)	// 204
	CALL	·take(SB)	// 205
	CALL	·take(SB)	// 206
	CALL	·take(SB)	// 207
	CALL	·take(SB)	// 208
	CALL	·take(SB)	// 209
	CALL	·take(SB)	// 210
	CALL	·take(SB)	// 211
	CALL	·take(SB)	// 212
	CALL	·take(SB)	// 213
	CALL	·take(SB)	// 214
	CALL	·take(SB)	// 215
	CALL	·take(SB)	// 216
	CALL	·take(SB)	// 217
	CALL	·take(SB)	// 218
	CALL	·take(SB)	// 219
	CALL	·take(SB)	// 220
	CALL	·take(SB)	// 221
	CALL	·take(SB)	// 222
	CALL	·take(SB)	// 223
	CALL	·take(SB)	// 224
	CALL	·take(SB)	// 225
	CALL	·take(SB)	// 226
	CALL	·take(SB)	// 227
	CALL	·take(SB)	// 228
	CALL	·take(SB)	// 229
	CALL	·take(SB)	// 230
	CALL	·take(SB)	// 231
	CALL	·take(SB)	// 232
	CALL	·take(SB)	// 233
	CALL	·take(SB)	// 234
	CALL	·take(SB)	// 235
	CALL	·take(SB)	// 236
	CALL	·take(SB)	// 237
	CALL	·take(SB)	// 238
	CALL	·take(SB)	// 239
	CALL	·take(SB)	// 240
	CALL	·take(SB)	// 241
	CALL	·take(SB)	// 242
	CALL	·take(SB)	// 243
	CALL	·take(SB)	// 244
	CALL	·take(SB)	// 245
	CALL	·take(SB)	// 246
	CALL	·take(SB)	// 247
	CALL	·take(SB)	// 248
	CALL	·take(SB)	// 249
	CALL	·take(SB)	// 250
	CALL	·take(SB)	// 251
	CALL	·take(SB)	// 252
	CALL	·take(SB)	// 253
	CALL	·take(SB)	// 254
	CALL	·tick(SB)	// 255 (the idle governor's APIC timer; the spurious vector)

// take records that vector v was taken (pending bit v, taken += 1) and
// returns to the interrupted code without an EOI: the local APIC holds v
// in service, which blocks v and every vector of its priority class and
// below until the service goroutine has served it and written the EOI.
// Interrupt gates clear IF, so nothing nests inside.
TEXT ·take(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	PUSHQ	CX
	PUSHQ	DX

	// the entry's return address: table + 5*(v-31)
	MOVQ	24(SP), AX
	MOVQ	$·table(SB), CX
	SUBQ	CX, AX
	XORQ	DX, DX
	MOVQ	$5, CX
	DIVQ	CX
	ADDQ	$31, AX			// v

	MOVQ	AX, CX
	SHRQ	$6, CX			// word
	ANDQ	$63, AX			// bit
	LEAQ	·pending(SB), DX
	LOCK
	BTSQ	AX, (DX)(CX*8)

	LOCK
	INCL	·taken(SB)

	POPQ	DX
	POPQ	CX
	POPQ	AX

	ADDQ	$8, SP			// the entry's return address
	IRETQ

// tick acknowledges vector 255 at once (the one-shot APIC timer that
// ends the idle governor's HLT), notes it in ticked and returns.
TEXT ·tick(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	MOVQ	$0xfee000b0, AX		// local APIC EOI register
	MOVL	$0, (AX)
	MOVL	$1, ·ticked(SB)
	POPQ	AX

	ADDQ	$8, SP
	IRETQ

// func halt()
//
// The idle governor's wait: with IF clear it looks for an interrupt taken
// and not yet served, or the timer it armed already fired (a deadline a
// few ticks away can pass before this), and returns at once if so;
// otherwise STI; HLT, whose interrupt shadow makes the check and the
// sleep atomic.
TEXT ·halt(SB),NOSPLIT,$0
	CLI
	MOVL	·taken(SB), AX
	CMPL	AX, $0
	JNE	skip
	MOVL	·ticked(SB), AX
	CMPL	AX, $0
	JNE	skip
	STI
	HLT
	RET
skip:
	STI
	RET

// func sidt() uintptr
//
// The IDT's base address (SIDT stores limit:2, base:8).
TEXT ·sidt(SB),NOSPLIT,$16-8
	LEAQ	0(SP), AX
	BYTE	$0x0f; BYTE $0x01; BYTE $0x08	// sidt (rax)
	MOVQ	2(SP), AX
	MOVQ	AX, ret+0(FP)
	RET

// func setGate(p uintptr, lo, hi uint64)
//
// Writes the 16-byte gate descriptor at p with IF clear.
TEXT ·setGate(SB),NOSPLIT,$0-24
	MOVQ	p+0(FP), AX
	MOVQ	lo+8(FP), BX
	MOVQ	hi+16(FP), CX
	PUSHFQ
	CLI
	MOVQ	BX, 0(AX)
	MOVQ	CX, 8(AX)
	POPFQ
	RET

// func tableAddr() uintptr
TEXT ·tableAddr(SB),NOSPLIT,$0-8
	MOVQ	$·table(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func codeByte(p uintptr) byte
TEXT ·codeByte(SB),NOSPLIT,$0-9
	MOVQ	p+0(FP), AX
	MOVB	(AX), AX
	MOVB	AX, ret+8(FP)
	RET
