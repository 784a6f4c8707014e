# lib.sh — what the bench scripts share (sourced, not run): stopping
# their background processes, building the binaries they measure, a
# network namespace of their own and unicast nodes in it. A script sets
# TMP (a temporary directory), PIDS=() and, for a namespace, NS before
# using it.

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

# cleanup: stop the processes, remove the namespace NS (if any) and TMP;
# a script traps it (trap cleanup EXIT INT TERM).
cleanup() {
	stopall
	if [ -n "${NS:-}" ]; then ip netns del "$NS" 2>/dev/null || true; fi
	rm -rf "$TMP"
}

# netns_up: make the network namespace NS with its loopback up; NSX is
# the command prefix that runs a command in it.
netns_up() {
	ip netns add "$NS"
	NSX=(ip netns exec "$NS")
	"${NSX[@]}" ip link set lo up
}

# node NAME PORT DIR UNICAST-LINES: start $ROUTER in NS with a UDP shim
# on 127.0.0.1:PORT reaching DIR (TOML "name" = "addr" pairs) and a
# unicast IPCP NAME.uni configured by UNICAST-LINES; its socket is
# $TMP/NAME.sock. Sets NODEPID.
node() {
	cat >"$TMP/$1.toml" <<EOF
[node]
name = "$1"

[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:$2"
dir = { $3 }

[[ipcp]]
kind = "unicast"
name = "$1.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
$4
EOF
	rm -f "$TMP/$1.sock"
	"${NSX[@]}" "$ROUTER" -config "$TMP/$1.toml" -socket "$TMP/$1.sock" >"$TMP/$1.log" 2>&1 &
	NODEPID=$!
	PIDS+=($NODEPID)
}

# waitsock NAME...: wait (up to 10 s each) for the nodes' sockets.
waitsock() {
	for s in "$@"; do
		for _ in $(seq 100); do [ -S "$TMP/$s.sock" ] && break; sleep 0.1; done
	done
}

# udp_pair DIR PA PB DIRMAP writes DIR/a.toml and DIR/b.toml: nodes a and
# b, each a UDP shim in layer "net" on 127.0.0.1 ports PA and PB, a's
# directory mapping DIRMAP's names (e.g. 'echo = "127.0.0.1:PB"') to b.
udp_pair() {
	mkdir -p "$1"
	printf '[node]\nname = "a"\n[[ipcp]]\nkind = "udp"\nlayer = "net"\n[ipcp.udp]\naddr = "127.0.0.1:%s"\ndir = { %s }\n' "$2" "$4" > "$1/a.toml"
	printf '[node]\nname = "b"\n[[ipcp]]\nkind = "udp"\nlayer = "net"\n[ipcp.udp]\naddr = "127.0.0.1:%s"\n' "$3" > "$1/b.toml"
}

# cpu_ticks PID... prints the CPU time (user and system, clock ticks of
# 1/100 s) each process has used so far, one per line (0 for one gone).
cpu_ticks() {
	for p in "$@"; do
		awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0
	done
}

# j KEY prints the first number a JSON text on stdin gives KEY.
j() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p" | head -1; }

# med prints the median of the numbers on stdin, one per line.
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# counters NODE IPCP NAME... prints the IPCP's counters NAME... at NODE,
# in order, space-separated (0 for one it does not list: a counter still
# at zero), through $TMP/NODE.sock (in the namespace NSX names, if any),
# with the ouro tool $OURO (default: the one build_tools made).
counters() {
	local node=$1 ipcp=$2
	shift 2
	"${NSX[@]}" "${OURO:-$TMP/ouro}" --socket "$TMP/$node.sock" --json stats "$ipcp" |
		python3 -c 'import json,sys
d = {r["counter"]: r["value"] for r in json.load(sys.stdin)["rows"]}
print(" ".join(str(d.get(k, 0)) for k in sys.argv[1:]))' "$@"
}

# forwarded NODE prints the `forwarded` counter of the unicast IPCP
# NODE.uni (counters).
forwarded() { counters "$1" "$1.uni" forwarded; }

# warm SOCKET OURO COUNT prints the times (ms) of COUNT allocations to
# "echo" on one session, one per line, after a first left out (it waits
# for the session's start): `ouro alloc -i 1ms` through SOCKET (in the
# namespace NSX names, if any); nothing if OURO has no alloc command.
warm() {
	"${NSX[@]}" "$2" --socket "$1" --json alloc -q -c $(($3 + 1)) -i 1ms echo 2>/dev/null |
		python3 -c 'import json,sys; print("\n".join(str(v) for v in json.load(sys.stdin)["alloc_ms"][1:]))' 2>/dev/null || true
}

# medOr prints the median of the numbers on stdin, or "-" for none.
medOr() { med | grep . || echo -; }

# minOr prints the least of the numbers on stdin, or "-" for none.
minOr() { sort -n | head -1 | grep . || echo -; }

# variant V parses a script's VARIANT argument,
# NAME=BUILDDIR[:ENV=VALUE[,ENV=VALUE]]: it sets name, X (the build
# directory) and envs (the ENV=VALUE words, for env).
variant() {
	name=${1%%=*}
	local rest=${1#*=}
	X=${rest%%:*}
	envs=""
	case $rest in *:*) envs=$(echo "${rest#*:}" | tr , ' ') ;; esac
}

# pair_up D X [ENV=VALUE...] starts the routers a and b that udp_pair
# wrote into D, built in X, with the environment given (fresh sockets in
# D, logs in D/a.log and D/b.log), and an echo serving "echo" on b, in
# the same environment or, where ECHO_ENV is set, in that one; it sets
# PA, PB and PE.
pair_up() {
	local d=$1 x=$2
	shift 2
	local eenv=("$@")
	if [ -n "${ECHO_ENV+x}" ]; then
		read -r -a eenv <<<"$ECHO_ENV"
	fi
	rm -f "$d/a.sock" "$d/b.sock"
	env "$@" "$x/router" -config "$d/a.toml" -socket "$d/a.sock" >"$d/a.log" 2>&1 &
	PA=$!
	env "$@" "$x/router" -config "$d/b.toml" -socket "$d/b.sock" >"$d/b.log" 2>&1 &
	PB=$!
	sleep 1
	env "${eenv[@]}" OURO_SOCKET="$d/b.sock" "$x/ouro" echo echo >/dev/null 2>&1 &
	PE=$!
	sleep 0.5
}
