#!/bin/sh
# imxpayload.sh ELF OUT — the payload of a USB armory .imx (make imx):
# a 40-byte start-up stub at TEXT_START - 4 KiB that clears
# runtime.bss..runtime.enoptrbss (the TamaGo runtime does not, and the
# boot ROM does not zero DDR) and jumps to the ELF's entry, zeros up to
# TEXT_START, then the ELF's loaded sections (.text through .data, as
# objcopy -O binary lays them out; no .bss/.noptrbss). The boot ROM loads
# it at the stub's address and enters the stub; so the .imx does not
# carry the 32 MiB of zeros of Go 1.26's .noptrbss.
#
# Prints "STUB ENTRY BSS END" (hex) on stdout. Environment: TEXT_START
# (default 0x80010000), GO (default go), OBJCOPY (default objcopy -I
# elf32-little). The same stub clears BSS in the Pi's SD card kernel
# (mk/pi.mk).
set -eu
elf=$1 out=$2
TEXT_START=${TEXT_START:-0x80010000}
GO=${GO:-go}
OBJCOPY=${OBJCOPY:-objcopy -I elf32-little}
stub=$((TEXT_START - 0x1000))

sym() { $GO tool nm "$elf" | awk -v s="$1" '$3 == s { print $1 }'; }
text=$(sym runtime.text) bss=$(sym runtime.bss) end=$(sym runtime.enoptrbss)
entry=$(od -An -tx4 -j24 -N4 "$elf" | tr -d ' ')
[ -n "$text" ] && [ -n "$bss" ] && [ -n "$end" ] || { echo "imxpayload: $elf: runtime symbols missing" >&2; exit 1; }
[ "$((0x$text))" -eq "$((TEXT_START))" ] || { echo "imxpayload: $elf: text at 0x$text, want $TEXT_START" >&2; exit 1; }

le() { for s in 0 8 16 24; do printf "\\$(printf '%03o' $(( ($1 >> s) & 255 )))"; done; }
# ldr r0, =bss; ldr r1, =end; mov r2, #0
# 1: cmp r0, r1; strlo r2, [r0], #4; blo 1b
# ldr pc, =entry
{ for w in 0xe59f0014 0xe59f1014 0xe3a02000 0xe1500001 0x34802004 0x3afffffc 0xe59ff004 \
	0x$bss 0x$end 0x$entry; do le "$w"; done; } >"$out"
truncate -s 4096 "$out"
$OBJCOPY --wildcard -R '.note*' -R .bss -R .noptrbss -O binary "$elf" "$out.tmp"
cat "$out.tmp" >>"$out"
rm -f "$out.tmp"
printf '%x %s %s %s\n' "$stub" "$entry" "$bss" "$end"
