#!/bin/sh
# pkgsizes.sh ELF [N] — what takes the space in an image: the sizes of the
# ELF's symbols (go tool nm -size) summed by Go package, the N largest
# (default 30), with the code (T), read-only data (R: tables, type
# descriptors) and initialised data (D) of each. BSS takes no room in the
# image and is left out. The ELF needs its symbol table: build it with
# DEBUG=1 (make image BOARD=usbarmory DEBUG=1); a stripped image has none.
#
# A symbol belongs to the package its name starts with: the text up to
# the first "." after the last "/" once generic arguments ("[...]") are
# cut off, so "gvisor.dev/gvisor/pkg/tcpip/stack.(*NIC).DeliverNetworkPacket"
# is gvisor.dev/gvisor/pkg/tcpip/stack. A type's equality function
# ("type:.eq.net/netip.Prefix") counts for the type's package, one of a
# generic shape for "go.shape". The linker's own symbols stay under their
# prefix: "go:func" (the funcdata of every function: stack maps, inlining
# trees), "go:itab". Symbols without a package (assembly, the linker's
# markers) are "(other)". Type descriptors and strings are in .rodata
# without symbols. .gopclntab (line tables, a third of an image) has no
# symbols either: it grows with the number and size of functions, so it
# follows the code column. The last lines are the total of all symbols and
# the size of .gopclntab.
#
# PKGSIZES_DEPTH=K groups by the first K path elements instead
# (PKGSIZES_DEPTH=3: gvisor.dev/gvisor/pkg, github.com/ouronet/ouro).
set -eu
elf=${1:?usage: pkgsizes.sh ELF [N]}
n=${2:-30}
GO=${GO:-go}
syms=$($GO tool nm -size "$elf" 2>&1) || {
	case "$syms" in
	*"no symbol"*) echo "pkgsizes: $elf has no symbols: build it with DEBUG=1 (make image DEBUG=1)" >&2 ;;
	*) echo "pkgsizes: $elf: $syms" >&2 ;;
	esac
	exit 1
}
pcln=$(readelf -SW "$elf" | sed 's/^ *\[ *[0-9]*\] *//' | awk '$1 == ".gopclntab" { print $5; exit }')
echo "$syms" | awk -v n="$n" -v depth="${PKGSIZES_DEPTH:-0}" -v pcln="$((0x${pcln:-0}))" '
function pkgof(s,   i, j, d, rest, p) {
	if (s ~ /^go:(func|itab|string|cuinfo|buildinfo)/) { sub(/\..*/, "", s); return s }
	sub(/^type:(\.eq\.|\.hash\.)?/, "", s)
	sub(/^(noalg\.)?([*]|\[\]|\[[0-9]+\]|map\[|chan |func\(|struct \{ )*/, "", s)
	if (s ~ /^go\.shape\./) return "go.shape"
	# generic arguments, an anonymous struct'"'"'s later fields
	i = index(s, "["); if (i > 0) s = substr(s, 1, i - 1)
	i = index(s, " "); if (i > 0) s = substr(s, 1, i - 1)
	# the package ends at the first "." after the last "/"
	rest = s; j = 0
	while ((d = index(rest, "/")) > 0) { j += d; rest = substr(rest, d + 1) }
	i = index(rest, ".")
	if (i == 0) return "(other)" # assembly, the linker'"'"'s, builtin types'"'"' eq
	p = substr(s, 1, j + i - 1)
	if (depth > 0) {
		k = split(p, el, "/"); p = el[1]
		for (i = 2; i <= depth && i <= k; i++) p = p "/" el[i]
	}
	return p
}
NF >= 4 && $3 !~ /^[bBU]$/ {
	name = $4; for (f = 5; f <= NF; f++) name = name " " $f
	p = pkgof(name); sz = $2 + 0
	tot[p] += sz; all += sz
	c = toupper($3)
	if (c == "T") t[p] += sz; else if (c == "R") r[p] += sz; else d[p] += sz
}
END {
	for (p in tot) printf "%d\t%d\t%d\t%d\t%s\n", tot[p], t[p], r[p], d[p], p | "sort -rn | head -" n
	close("sort -rn | head -" n)
	printf "%d\t\t\t\t(all symbols, %d packages)\n", all, length(tot)
	printf "%d\t\t\t\t(.gopclntab, no symbols)\n", pcln
}' | awk -F'\t' 'BEGIN { printf "%10s %10s %10s %10s  %s\n", "bytes", "code", "rodata", "data", "package" }
{ printf "%10s %10s %10s %10s  %s\n", $1, $2, $3, $4, $5 }'
