#!/bin/sh
# stripelf.sh ELF — strip a bare-metal image in place down to the symbols
# the host's tools read (make image, make pi-image; not with DEBUG=1):
# runtime.text/etext/rodata/erodata, by which ouro measure locates the
# measured ranges; runtime.bss/enoptrbss, by which make imx and make
# sdcard find what their start-up stubs clear; TamaGo's amd64 IDT, which
# ouro measure cuts out. A panic's trace names functions from .gopclntab,
# which stays. The ELF's machine field is copied back: objcopy -I
# elf32-little (the host's binutils do not know ARM) writes "none".
# OBJCOPY: default objcopy -I elf32-little; plain objcopy for x86-64.
set -eu
elf=$1
OBJCOPY=${OBJCOPY:-objcopy -I elf32-little}
keep=""
for s in runtime.text runtime.etext runtime.rodata runtime.erodata runtime.bss runtime.enoptrbss \
	github.com/usbarmory/tamago/amd64.idt; do
	keep="$keep --keep-symbol=$s"
done
# shellcheck disable=SC2086
$OBJCOPY --strip-all $keep "$elf" "$elf.strip"
dd if="$elf" of="$elf.strip" bs=1 skip=18 seek=18 count=2 conv=notrunc status=none
mv -f "$elf.strip" "$elf"
