#!/bin/sh
# tools/qemu/sizes.sh — build the router image for each board and write
# its sizes into docs/benchmarks.md between the "sizes:begin" and
# "sizes:end" markers (make sizes). Prints the table too. The boot image
# is the armory's .imx (make imx) and the Pi's SD card kernel (make
# sdcard); the microvm boots the ELF. Needs the TamaGo
# toolchain (docs/boards.md); without it, says SKIP: and changes nothing.
set -eu
doc=docs/benchmarks.md
table=$(mktemp)
trap 'rm -f "$table"' EXIT

row() { # board elf [imx]
	board=$1 elf=$2 imx=${3:-}
	sz() { stat -c %s "$1"; }
	sec() {
		h=$(readelf -SW "$elf" | sed 's/^ *\[ *[0-9]*\] *//' | awk -v n="$1" '$1 == n { print $5; exit }')
		printf '%d' "0x${h:-0}"
	}
	text=$(sec .text) rodata=$(sec .rodata) pcln=$(sec .gopclntab) data=$(sec .data) noptrdata=$(sec .noptrdata)
	loaded=$((text + rodata + pcln + data + noptrdata))
	mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
	imxcol="—"
	[ -n "$imx" ] && [ -f "$imx" ] && imxcol="$(sz "$imx") B"
	printf '| %s | %s B | %s | %s | %s | %s | %s |\n' "$board" "$(sz "$elf")" "$(mib "$loaded")" \
		"$(mib "$text")" "$(mib "$pcln")" "$(mib "$rodata")" "$imxcol" >>"$table"
}

build() { # make target and args; prints the ELF path
	make --no-print-directory "$@" >/dev/null 2>&1 || return 1
}

printf '| board | ELF | loaded (code, data, tables) | `.text` | `.gopclntab` | `.rodata` | boot image |\n|---|---|---|---|---|---|---|\n' >"$table"
out=$(make --no-print-directory image BOARD=usbarmory 2>&1) || {
	case "$out" in *SKIP:*) echo "$out" | grep SKIP:; exit 0 ;; esac
	echo "$out" >&2; exit 1
}
echo "sizes: usbarmory" >&2
make --no-print-directory imx BOARD=usbarmory >/dev/null 2>&1 || true
row "USB armory Mk II (usbarmory)" bin/router-usbarmory.elf bin/router-usbarmory.imx
# the same image with the node's own TCP/IP stack ([[ipnet]] netstack):
# make image adds gVisor for it (router -image-tags, netstack); and with a
# status page on it (status = 80), gVisor's TCP too (ipstack_tcp)
echo "sizes: usbarmory with its own TCP/IP stack" >&2
cfg=$(mktemp --suffix=.toml)
trap 'rm -f "$table" "$cfg"' EXIT
{ cat docs/examples/usbarmory.toml; printf '\n[[ipnet]]\nname = "lan"\nnetstack = "10.77.0.9/24"\n'; } >"$cfg"
build image BOARD=usbarmory CONFIG="$cfg" && row "USB armory, own TCP/IP stack (usbarmory, netstack)" bin/router-usbarmory.elf
echo "sizes: usbarmory with a status page" >&2
printf 'status = 80\n' >>"$cfg"
build image BOARD=usbarmory CONFIG="$cfg" && row "USB armory, status page (usbarmory, netstack, ipstack_tcp)" bin/router-usbarmory.elf
# without inlining (SMALL=1): smaller, slower
echo "sizes: usbarmory SMALL=1" >&2
build image BOARD=usbarmory SMALL=1 && row "USB armory, SMALL=1 (no inlining)" bin/router-usbarmory.elf
echo "sizes: microvm" >&2
build image BOARD=microvm && row "QEMU microvm (microvm)" bin/router-microvm.elf
echo "sizes: pi2" >&2
build pi-image BOARD=pi2 && { build sdcard BOARD=pi2 || true; } && row "Raspberry Pi 2 (pi2)" bin/router-pi2.elf bin/sdcard-pi2/kernel7.img
cat "$table"
awk -v t="$table" '
	/<!-- sizes:begin/ { print; while ((getline l < t) > 0) print l; skip = 1; next }
	/<!-- sizes:end/ { skip = 0 }
	!skip { print }
' "$doc" >"$doc.new" && mv "$doc.new" "$doc"
echo "sizes: $doc updated" >&2
