#!/usr/bin/env bash
# ca.sh — the default congestion avoidance (mb-ecn) against none (nop) on
# an unloaded loopback, one flow across 1 and 2 unicast hops, in a network
# namespace of its own (docs/benchmarks.md, "Congestion avoidance").
#
# Run as root from the repository root:
#
#   tools/bench/ca.sh              # TIME=5 SIZE=1300 HOPS="1 2" CAS="nop mb-ecn"
#   BASE=/tmp/main-bin CAS="nop base:mb-ecn mb-ecn" tools/bench/ca.sh
#                                  # base: runs BASE's router and ouro
#   BINS="v2=/tmp/v2-bin" CAS="mb-ecn v2:mb-ecn" tools/bench/ca.sh
#                                  # v2: runs /tmp/v2-bin's (several builds in one run)
#   RING=1024 tools/bench/ca.sh    # every node's [irm] ring_size (default 256)
#
# Topology: router processes (images/router) in a chain joined by UDP shim
# links on 127.0.0.1, a unicast layer "uni" over them whose bootstrapping
# member (the middle one for 2 hops) sets `ca`. A perf server "sink" on
# the last node, `ouro perf sink` (raw QoS: no FRCT, so what the layer
# loses stays lost) from the first for TIME, flooding SIZE-byte SDUs.
# For each run: the sender's rate in each second (ouro perf --progress),
# what the server counted and the loss, the CPU each process used over
# the run (percent of one CPU: the nodes, the server, the client), and
# with STATS=1 every node's IPCPs' non-zero counters (drops by reason
# and congestion marks, marked.*); then, per hop count, mb-ecn's
# received rate over nop's, the same from 1 s after the server's first
# SDU on (`ouro perf`'s recv_steady_bps: issue 13 asks for 80% of nop's
# within 1 s of starting), and its sent rate in the second second over
# nop's received rate.
# The namespace, its processes and the temporary directory are removed on
# exit, whatever the exit.
set -euo pipefail

TIME=${TIME:-5}
BIN=
SIZE=${SIZE:-1300}
HOPS=${HOPS:-"1 2"}
CAS=${CAS:-"nop mb-ecn"}
RING=${RING:-} # if set: every node's [irm] ring_size (flow ring depth)
NS=ouro-ca-$$
TMP=$(mktemp -d /tmp/ouro-ca.XXXXXX)
PIDS=()
. "$(dirname "$0")/lib.sh"

trap cleanup EXIT INT TERM

need_root ca.sh "ip netns"

build_tools
# BASE=DIR: a "base:CA" entry of CAS runs DIR/router and DIR/ouro (say,
# built from main) instead, for a before/after in the same run.
mkdir -p "$TMP/base"
if [ -n "${BASE:-}" ]; then cp "$BASE/router" "$BASE/ouro" "$TMP/base/"; fi
# BINS="NAME=DIR ...": a "NAME:CA" entry of CAS runs DIR/router and
# DIR/ouro (other builds, to compare several in one run).
for b in ${BINS:-}; do
	mkdir -p "$TMP/${b%%=*}"
	cp "${b#*=}/router" "${b#*=}/ouro" "$TMP/${b%%=*}/"
done

netns_up


# run HOPS CA: prints one result line and leaves $TMP/res-HOPS-CA.
run() {
	local hops=$1 label=$2 ca=${2#*:} first last mid=
	local -A pid=()
	BIN=$TMP
	if [ "$label" != "$ca" ]; then BIN=$TMP/${label%%:*}; fi
	ROUTER=$BIN/router
	# The unicast lines end each node's config, so a table after them
	# is a top-level one: [irm] ring_size for the experiment RING=.
	local irm=
	if [ -n "$RING" ]; then irm=$'\n[irm]\nring_size = '$RING; fi
	if [ "$hops" = 1 ]; then
		node a 3501 '"b.uni" = "127.0.0.1:3502"' "bootstrap = true
admission = \"open\"
ca = \"$ca\"$irm"
		pid[a]=$NODEPID
		node b 3502 '"a.uni" = "127.0.0.1:3501"' "enroll = \"a.uni\"$irm"
		pid[b]=$NODEPID
		waitsock a b
		first=a last=b
	else
		node r 3511 '"a.uni" = "127.0.0.1:3510", "b.uni" = "127.0.0.1:3512"' "bootstrap = true
admission = \"open\"
ca = \"$ca\"$irm"
		pid[r]=$NODEPID
		waitsock r
		node a 3510 '"r.uni" = "127.0.0.1:3511"' "enroll = \"r.uni\"$irm"
		pid[a]=$NODEPID
		node b 3512 '"r.uni" = "127.0.0.1:3511"' "enroll = \"r.uni\"$irm"
		pid[b]=$NODEPID
		waitsock a b
		first=a last=b mid=r
	fi
	"${NSX[@]}" "$BIN/ouro" --socket "$TMP/$last.sock" perf --server sink >"$TMP/sink.log" 2>&1 &
	PIDS+=($!)
	pid[sink]=$!
	"${NSX[@]}" "$BIN/ouro" --socket "$TMP/$last.sock" echo echo >"$TMP/echo.log" 2>&1 &
	PIDS+=($!)
	# The layer is up when a ping crosses it.
	for _ in $(seq 50); do
		"${NSX[@]}" "$BIN/ouro" --socket "$TMP/$first.sock" ping echo -c 1 -W 500ms >/dev/null 2>&1 && break
		sleep 0.2
	done
	# CPU: each node's and the server's over the run (clock ticks), the
	# client's from bash's time (user and system seconds).
	local procs="$first $mid $last sink" t0=() t1=() p
	for p in $procs; do t0+=("$(cpu_ticks "${pid[$p]}")"); done
	local TIMEFORMAT='%U %S'
	{ time "${NSX[@]}" "$BIN/ouro" --socket "$TMP/$first.sock" perf sink -s "$SIZE" -t "${TIME}s" --progress --json \
		>"$TMP/perf-$hops-$label.json" 2>"$TMP/prog-$hops-$label.log" || true; } 2>"$TMP/ctime"
	for p in $procs; do t1+=("$(cpu_ticks "${pid[$p]}")"); done
	python3 - "$TMP/perf-$hops-$label.json" "$TMP/prog-$hops-$label.log" "$hops" "$label" >"$TMP/res-$hops-$label" <<'EOF'
import json, re, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    d = {"recv_bps": float("nan"), "server_reported": True, "loss_percent": float("nan")}
# Mbit/s in each second, whatever prefix the progress line chose (above
# 1000 Mbit/s it prints Gbit/s).
scale = {"k": 1e-3, "M": 1, "G": 1e3}
secs = [float(m.group(1)) * scale[m.group(2)] for m in re.finditer(r'SDU/s, ([0-9.]+) ([kMG])bit/s', open(sys.argv[2]).read())]
recv = d["recv_bps"] / 1e6 if d.get("server_reported") else float("nan")
# From 1 s after the server's first SDU on (nan: a server of a build
# without the steady counters).
steady = d.get("recv_steady_bps", 0) / 1e6 if d.get("server_reported") else float("nan")
print(sys.argv[3], sys.argv[4], "%.1f" % recv, d["loss_percent"], "%.1f" % (steady or float("nan")), " ".join("%.0f" % s for s in secs))
EOF
	read -r h c recv loss steady persec <"$TMP/res-$hops-$label"
	echo "$hops hop(s), ca=$label: received $recv Mbit/s ($steady from 1 s on), loss $loss%; sent per second (Mbit/s): $persec"
	local i=0 cpu="  CPU over the run, % of one:"
	for p in $procs; do
		cpu+=" $p $(( (t1[i] - t0[i]) / TIME ))"
		i=$((i + 1))
	done
	echo "$cpu client $(awk -v t="$TIME" '{printf "%d", ($1 + $2) * 100 / t}' "$TMP/ctime")"
	if [ -n "${STATS:-}" ]; then # where the losses are: every IPCP's non-zero counters (marked.*: congestion marks)
		for n in $first $mid $last; do
			for i in $n.udp $n.uni; do
				echo "  stats $i: $("${NSX[@]}" "$BIN/ouro" --socket "$TMP/$n.sock" --json stats "$i" 2>&1 |
					python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("%s=%s" % (r["counter"], r["value"]) for r in d["rows"] if r["value"] not in ("0", "-", "operational") and not r["counter"].startswith(("refused", "checks", "supervisor", "routing", "adjacencies.auth"))))' 2>&1)"
			done
		done
	fi
	stopall
}

for h in $HOPS; do
	for c in $CAS; do run "$h" "$c"; done
	for c in $CAS; do
		if [ "$c" = nop ] || [ ! -f "$TMP/res-$h-nop" ]; then continue; fi
		read -r _ _ nrecv _ nsteady _ <"$TMP/res-$h-nop"
		read -r _ _ mrecv _ msteady s1 s2 _ <"$TMP/res-$h-$c"
		awk -v n="$nrecv" -v m="$mrecv" -v ns="$nsteady" -v ms="$msteady" -v s="${s2:-0}" -v h="$h" -v c="$c" \
			'BEGIN{printf "%s hop(s): %s/nop received %.2f, from 1 s on %.2f; %s sent in its second second / nop received %.2f\n", h, c, m/n, ms/ns, c, s/n}'
	done
done
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
