#!/usr/bin/env bash
# fair.sh — flows sharing a real bottleneck: a veth pair between two
# network namespaces this script creates, tbf rate-limiting one side, the
# UDP shim across it and a unicast layer over that (docs/benchmarks.md,
# "Congestion avoidance").
#
# Run as root from the repository root:
#
#   tools/bench/fair.sh            # RATE=50mbit FLOWS="1 2 4" TIME=10 LATE=3 CAS="mb-ecn nop"
#   BASE=/tmp/main-bin CAS="base:mb-ecn mb-ecn nop" tools/bench/fair.sh
#                                  # base: runs BASE's router and ouro
#   BINS="v2=/tmp/v2-bin" CAS="mb-ecn v2:mb-ecn" tools/bench/fair.sh
#                                  # v2: runs /tmp/v2-bin's (several builds in one run)
#
# For each ca and each flow count N: N `ouro perf` clients in namespace A
# flood 1300-byte SDUs (raw QoS: nothing resent) to N perf servers in B
# through the layer, the last one starting LATE seconds after the others
# (when N > 1). Printed per flow: what the server counted (Mbit/s over the
# flow's own span), its loss, its share of the link's fair share
# (RATE/N), and its sending rate in each second (ouro perf --progress);
# the late flow's first second at 80% of an even split of what the others
# sent is reported as its time to share. The tbf qdisc's own drop count
# comes last. Namespaces, processes and the temporary directory are
# removed on exit, whatever the exit.
set -euo pipefail

RATE=${RATE:-50mbit}
BIN=
FLOWS=${FLOWS:-"1 2 4"}
TIME=${TIME:-10}
LATE=${LATE:-3}
SIZE=${SIZE:-1300}
CAS=${CAS:-"mb-ecn nop"}
NA=ouro-fa-$$
NB=ouro-fb-$$
TMP=$(mktemp -d /tmp/ouro-fair.XXXXXX)
PIDS=()
. "$(dirname "$0")/lib.sh"

cleanup() {
	stopall
	ip netns del "$NA" 2>/dev/null || true
	ip netns del "$NB" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

need_root fair.sh "ip netns, tc"

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

ip netns add "$NA"
ip netns add "$NB"
XA=(ip netns exec "$NA")
XB=(ip netns exec "$NB")
ip link add fa0 netns "$NA" type veth peer name fb0 netns "$NB"
"${XA[@]}" ip addr add 10.77.0.1/24 dev fa0
"${XB[@]}" ip addr add 10.77.0.2/24 dev fb0
for x in "$NA:fa0" "$NB:fb0"; do
	ip netns exec "${x%%:*}" ip link set lo up
	ip netns exec "${x%%:*}" ip link set "${x##*:}" up
done
# The bottleneck, A to B. latency bounds tbf's queue; a UDP socket's send
# buffer fills before it does, so the sender blocks rather than tbf drop.
"${XA[@]}" tc qdisc add dev fa0 root tbf rate "$RATE" burst 16kb latency 200ms
echo "== bottleneck: $("${XA[@]}" tc qdisc show dev fa0)"

# node X NS NAME ADDR PEERNAME PEERADDR UNICAST-LINES
node() {
	local ns=$1 name=$2
	cat >"$TMP/$name.toml" <<EOF
[node]
name = "$name"

[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "$3:3435"
dir = { "$4.uni" = "$5:3435" }

[[ipcp]]
kind = "unicast"
name = "$name.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
$6
EOF
	rm -f "$TMP/$name.sock"
	ip netns exec "$ns" "$BIN/router" -config "$TMP/$name.toml" -socket "$TMP/$name.sock" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do [ -S "$TMP/$name.sock" ] && break; sleep 0.1; done
}

# perfclient I T: flow I for T seconds; an allocation refused because the
# layer's directory does not know sinkI yet is tried again (20 times).
perfclient() {
	for _ in $(seq 20); do
		"${XA[@]}" "$BIN/ouro" --socket "$TMP/a.sock" perf "sink$1" -s "$SIZE" -t "${2}s" --progress --json \
			>"$TMP/perf$1.json" 2>"$TMP/prog$1.log" && return
		grep -q "not found" "$TMP/prog$1.log" || return
		sleep 0.2
	done
}

run() { # CA N
	local label=$1 ca=${1#*:} n=$2 i
	BIN=$TMP
	if [ "$label" != "$ca" ]; then BIN=$TMP/${label%%:*}; fi
	node "$NB" b 10.77.0.2 a 10.77.0.1 "bootstrap = true
admission = \"open\"
ca = \"$ca\""
	node "$NA" a 10.77.0.1 b 10.77.0.2 'enroll = "b.uni"'
	for i in $(seq "$n"); do
		"${XB[@]}" "$BIN/ouro" --socket "$TMP/b.sock" perf --server "sink$i" >"$TMP/sink$i.log" 2>&1 &
		PIDS+=($!)
	done
	"${XB[@]}" "$BIN/ouro" --socket "$TMP/b.sock" echo echo >/dev/null 2>&1 &
	PIDS+=($!)
	for _ in $(seq 50); do
		"${XA[@]}" "$BIN/ouro" --socket "$TMP/a.sock" ping echo -c 1 -W 500ms >/dev/null 2>&1 && break
		sleep 0.2
	done
	local drops0 cl=()
	drops0=$("${XA[@]}" tc -s qdisc show dev fa0 | awk '/dropped/ {sub(",", "", $7); print $7; exit}')
	for i in $(seq "$n"); do
		local t=$TIME
		if [ "$n" -gt 1 ] && [ "$i" = "$n" ]; then
			sleep "$LATE"
			t=$((TIME - LATE))
		fi
		perfclient "$i" "$t" &
		cl+=($!)
	done
	for p in "${cl[@]}"; do wait "$p" || true; done
	local drops
	drops=$("${XA[@]}" tc -s qdisc show dev fa0 | awk '/dropped/ {sub(",", "", $7); print $7; exit}')
	echo "-- ca=$label, $n flow(s)$([ "$n" -gt 1 ] && echo ", flow $n starts ${LATE} s late"): tbf dropped $((drops - drops0))"
	python3 - "$TMP" "$n" "$RATE" "$LATE" <<'EOF'
import json, re, sys
tmp, n, late = sys.argv[1], int(sys.argv[2]), float(sys.argv[4])
rate = float(re.match(r'([0-9.]+)', sys.argv[3]).group(1)) * {'k': 1e3, 'm': 1e6, 'g': 1e9}[sys.argv[3].lower().lstrip('0123456789.')[0]] / 1e6
persec = []
for i in range(1, n + 1):
    txt = open('%s/prog%d.log' % (tmp, i)).read()
    try:
        d = json.load(open('%s/perf%d.json' % (tmp, i)))
    except ValueError:
        print('flow %d: no result from ouro perf: %s' % (i, txt.strip().splitlines()[-1:] or '-'))
        persec.append([])
        continue
    ps = []
    for m in re.finditer(r'SDU/s, ([0-9.]+) ([kMG]?)bit/s', txt):
        ps.append(float(m.group(1)) * {'': 1e-6, 'k': 1e-3, 'M': 1, 'G': 1e3}[m.group(2)])
    persec.append(ps)
    recv = d['recv_bps'] / 1e6 if d.get('server_reported') else float('nan')
    print('flow %d: %.2f Mbit/s received (%.0f%% of %.2f, the fair share of %g Mbit/s), loss %.3f%%; sent per second: %s' % (
        i, recv, 100 * recv / (rate / n), rate / n, rate, d['loss_percent'], ' '.join('%.1f' % x for x in ps)))
if n > 1:
    # The late flow's second k covers [late+k-1, late+k) of the others'.
    lateps, off = persec[-1], int(late)
    for k, x in enumerate(lateps):
        others = [p[off + k] for p in persec[:-1] if off + k < len(p)]
        if others and x >= 0.8 * (sum(others) + x) / n:
            print('late flow: at 80%% of an even split in its second %d (within %d s of starting)' % (k + 1, k + 1))
            break
    else:
        print('late flow: never at 80% of an even split')
EOF
	if [ -n "${KEEPLOG:-}" ]; then cp "$TMP"/*.log "$KEEPLOG"/ 2>/dev/null || true; fi
	if [ -n "${STATS:-}" ]; then # where the losses and the marks are: the nodes' non-zero drop and marked.* counters
		# (and adjacencies.downs: an adjacency declared dead and made again loses
		# what was sent meanwhile, as no_route_local, tx_error and unknown_flow)
		for x in a:"$NA" b:"$NB"; do
			for i in udp uni; do
				echo "  stats ${x%%:*}.$i: $(ip netns exec "${x#*:}" "$BIN/ouro" --socket "$TMP/${x%%:*}.sock" --json stats "${x%%:*}.$i" 2>&1 |
					python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("%s=%s" % (r["counter"], r["value"]) for r in d["rows"] if r["counter"].startswith(("drops", "sent", "delivered", "packets", "adjacencies.ups", "adjacencies.downs", "marked")) and r["value"] != "0"))' 2>&1)"
			done
		done
	fi
	stopall
}

for ca in $CAS; do
	for n in $FLOWS; do run "$ca" "$n"; done
done
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
