# lib.sh — what the bench scripts share (sourced, not run): stopping
# their background processes and building the binaries they measure.
# A script sets TMP (a temporary directory) and PIDS=() before using it.

# stopall kills and reaps every process in PIDS.
stopall() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}

# need_root SCRIPT WHY: exit unless run as root.
need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$1: needs root ($2)" >&2
		exit 1
	fi
}

# build_tools: from the repository root, say how loaded the machine is
# (the figures depend on it) and build router and ouro into $TMP.
build_tools() {
	cd "$(git rev-parse --show-toplevel)"
	echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
	echo "== building router and ouro at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
	go build -o "$TMP/router" ./images/router
	go build -o "$TMP/ouro" ./tools/ouro
}
