#!/usr/bin/env bash
# loss.sh — a reliable FRCT flow against TCP under 10% random loss, on
# loopback, in a network namespace of its own (docs/benchmarks.md, "Loss
# recovery (FRCT)").
#
# Run as root from the repository root:
#
#   tools/bench/loss.sh            # LOSS=10 TIME=10 PINGS=1000
#   REORDER=5 DUP=2 tools/bench/loss.sh   # ouro's shims also reorder and
#                                         # duplicate (TCP's path cannot)
#
# Baseline: iperf3 (TCP, MSS 1300) over 127.0.0.1 inside the namespace with
# iptables dropping LOSS% of the packets arriving at INPUT (both directions
# of the connection cross it: data and ACKs).
# ouro: two router processes (images/router) joined by a UDP shim link on
# 127.0.0.1, each shim's own impairment stage dropping LOSS% of what it
# sends (so both directions lose, like the baseline); `ouro perf --qos data`
# with 1300-byte SDUs for TIME, then `ouro ping --qos data` PINGS times
# every 10 ms, whose round trips are summarised as percentiles.
# The namespace, its processes and the temporary directory are removed on
# exit, whatever the exit.
set -euo pipefail

LOSS=${LOSS:-10}
REORDER=${REORDER:-0}
DUP=${DUP:-0}
TIME=${TIME:-10}
PINGS=${PINGS:-1000}
NS=ouro-loss-$$
TMP=$(mktemp -d /tmp/ouro-loss.XXXXXX)
PIDS=()
. "$(dirname "$0")/lib.sh"

trap cleanup EXIT INT TERM

need_root loss.sh "ip netns, iptables"
if ! command -v iperf3 >/dev/null; then
	echo "loss.sh: iperf3 not installed (apt-get install -y iperf3)" >&2
	exit 1
fi

build_tools

netns_up

# --- baseline: TCP ---------------------------------------------------------
"${NSX[@]}" iptables -A INPUT -m statistic --mode random --probability "$(awk "BEGIN{print $LOSS/100}")" -j DROP
"${NSX[@]}" iperf3 -s -B 127.0.0.1 -p 5201 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
"${NSX[@]}" iperf3 -c 127.0.0.1 -p 5201 -M 1300 -t "$TIME" -J >"$TMP/iperf.json"
TCP=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e6))' "$TMP/iperf.json")
RETR=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["end"]["sum_sent"].get("retransmits", "?"))' "$TMP/iperf.json")
"${NSX[@]}" iptables -F INPUT
echo "TCP  (iperf3, MSS 1300, ${LOSS}% drop at INPUT): ${TCP} Mbit/s received, ${RETR} retransmits"

# --- ouro: two routers over the UDP shim ------------------------------------
node() { # name port peerport
	cat >"$TMP/$1.toml" <<EOF
[node]
name = "$1"

[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:$2"
dir = { "sink" = "127.0.0.1:$3", "echo" = "127.0.0.1:$3" }
[ipcp.udp.impair]
seed = $2
loss = $LOSS
reorder = $REORDER
duplicate = $DUP
EOF
	"${NSX[@]}" "$TMP/router" -config "$TMP/$1.toml" -socket "$TMP/$1.sock" >"$TMP/$1.log" 2>&1 &
	PIDS+=($!)
}
node a 3435 3436
node b 3436 3435
for s in a b; do
	for _ in $(seq 100); do [ -S "$TMP/$s.sock" ] && break; sleep 0.1; done
done
"${NSX[@]}" "$TMP/ouro" --socket "$TMP/a.sock" perf --server sink >"$TMP/sink.log" 2>&1 &
PIDS+=($!)
"${NSX[@]}" "$TMP/ouro" --socket "$TMP/a.sock" echo echo >"$TMP/echo.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$TMP/sink.log" 2>/dev/null && grep -q ready "$TMP/echo.log" 2>/dev/null && break; sleep 0.1; done

"${NSX[@]}" "$TMP/ouro" --socket "$TMP/b.sock" perf sink --qos data -s 1300 -t "$TIME" --no-progress --json >"$TMP/perf.json"
OURO=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["recv_bps"]/1e6) if d.get("server_reported") else "?")' "$TMP/perf.json")
LOSSPCT=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["loss_percent"])' "$TMP/perf.json")
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["server"]; print("ouro perf: sent %d SDUs, server counted %d, %d reordered" % (d["sent"], s["sdus"], s["reordered"]))' "$TMP/perf.json"
echo "ouro (perf --qos data, 1300-byte SDUs, ${LOSS}% shim loss each way, ${REORDER}% reorder, ${DUP}% duplicates): ${OURO} Mbit/s received, ${LOSSPCT}% of SDUs not delivered"
if [ "$OURO" != "?" ]; then
	echo "ratio ouro/TCP: $(awk "BEGIN{printf \"%.3f\", $OURO/$TCP}")"
fi

"${NSX[@]}" "$TMP/ouro" --socket "$TMP/b.sock" ping echo --qos data -c "$PINGS" -i 10ms -W 5s >"$TMP/ping.log" 2>&1 || true
tail -3 "$TMP/ping.log"
grep -o 'time=[0-9.]*' "$TMP/ping.log" | cut -d= -f2 | sort -g | awk -v n="$PINGS" '
	{ v[NR] = $1 }
	END {
		if (NR == 0) { print "ping --qos data: no replies"; exit }
		p = "ping --qos data (" NR "/" n " replies) ms:"
		split("50 90 99 100", q, " ")
		for (i = 1; i <= 4; i++) { k = int((q[i] / 100) * NR + 0.999999); if (k < 1) k = 1; p = p " p" q[i] "=" v[k] }
		under = 0; for (i = 1; i <= NR; i++) if (v[i] < 50) under++
		printf "%s; %.1f%% of sent under 50 ms\n", p, 100 * under / n
	}'
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
