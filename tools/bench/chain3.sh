#!/usr/bin/env bash
# chain3.sh — forwarding by a unicast IPCP in a router process, between
# two others over the UDP shim, against a plain UDP relay in the same run
# (docs/benchmarks.md, "Forwarding through router processes").
#
# Run as root from the repository root:
#
#   tools/bench/chain3.sh             # TIME=5 SIZE=64 ROUNDS=2
#   BASE=main tools/bench/chain3.sh   # also BASE's routers (a git revision,
#                                     # built from `git archive` in $TMP)
#   SENDERS=2 tools/bench/chain3.sh   # that many floods at once from a
#                                     # (separate perf clients and flows):
#                                     # more offered to the middle router
#   PROFILE=1 tools/bench/chain3.sh   # also where the middle router's CPU
#                                     # goes during each flood (perf(1),
#                                     # the cpu-clock event, by part)
#   REPLAY=1 tools/bench/chain3.sh    # the middle router fed a replay of
#   REPLAY=1 RATES="500000 0" ...     # a's flood instead (below), at each
#                                     # rate (SDUs/s, 0: all the kernel takes)
#
# Topology, in a network namespace of the script's own: router processes
# (images/router) a - r - b joined by UDP shim links on 127.0.0.1, a
# unicast layer "uni" over them (ca = "nop": the flood is not paced, so
# what is measured is what the middle forwards, not what congestion
# avoidance lets through). `ouro perf sink` from a floods SIZE-byte SDUs
# (raw QoS) for TIME to a perf server on b; r forwards each.
# Measured at r: SDUs forwarded (its `forwarded` counter) per second of
# the flood, and the CPU time its process used (/proc/PID/stat), so
# forwarded per CPU-second is "per core"; what b received.
# Baseline: `ouro perf --udp` through a plain UDP relay (udprelay: one
# read and one write per datagram) between the same kind of sender and
# server, measured the same way.
#
# REPLAY=1: an ouro node originating a flood does more per SDU than r
# forwarding it, so on two cores r is never saturated and its figure per
# CPU-second is a lower bound. In this mode a short flood from a crosses r
# while `ouro capture r.udp` records what r's UDP shim receives; then a is
# killed (SIGKILL: its port is freed and its flows are not deallocated)
# and b with its programs is paused (SIGSTOP: what r forwards is dropped
# at b's socket), and tools/bench/udpreplay sends the captured SDUs again
# from a's address to r, in GSO runs as a's shim does, for TIME at each
# rate of RATES. r's hello period and flow timeout are raised (600 s) so
# that it keeps its adjacencies with the silent a and b meanwhile.
# Measured: what r forwarded, what it sent of that (its UDP shim's
# packets_out), what it dropped at its queues, its socket and its shim's
# ring, and its CPU time; sent per CPU-second is "per core". The
# baseline is udprelay fed by the same replay.
# The namespace, its processes and the temporary directory are removed on
# exit, whatever the exit.
set -euo pipefail

TIME=${TIME:-5}
SIZE=${SIZE:-64}
ROUNDS=${ROUNDS:-2}
BASE=${BASE:-}
PROFILE=${PROFILE:-}
SENDERS=${SENDERS:-1}
REPLAY=${REPLAY:-}
RATES=${RATES:-0}
NS=ouro-chain3-$$
TMP=$(mktemp -d /tmp/ouro-chain3.XXXXXX)
PIDS=()
. "$(dirname "$0")/lib.sh"

trap cleanup EXIT INT TERM

need_root chain3.sh "ip netns"
if [ -n "$REPLAY" ] && [ $((SIZE + 64)) -gt 1024 ]; then
	echo "chain3.sh: REPLAY needs SIZE at most 960 (a capture keeps at most 1024 bytes of a packet)" >&2
	exit 1
fi
if [ -n "$PROFILE" ] && ! command -v perf >/dev/null; then
	echo "chain3.sh: PROFILE=1 needs perf(1) (Debian: linux-perf)" >&2
	exit 1
fi
build_tools
go build -o "$TMP/udprelay" ./tools/bench/udprelay
go build -o "$TMP/udpreplay" ./tools/bench/udpreplay
if [ -n "$BASE" ]; then
	mkdir "$TMP/base"
	git archive "$BASE" | tar -x -C "$TMP/base"
	echo "== and router and ouro at BASE $BASE ($(git rev-parse --short "$BASE"))"
	(cd "$TMP/base" && go build -o "$TMP/base/router.bin" ./images/router && go build -o "$TMP/base/ouro.bin" ./tools/ouro)
fi
HZ=$(getconf CLK_TCK)

netns_up



# report LABEL FORWARDED CPU-TICKS SECONDS RECEIVED
report() {
	awk -v l="$1" -v f="$2" -v c="$3" -v hz="$HZ" -v s="$4" -v r="$5" 'BEGIN{
		cs = c / hz
		printf "%s: forwarded %d in %.2f s = %.0f k/s; middle CPU %.2f s (%.2f cores) = %.0f k forwarded per CPU-second; received %s\n",
			l, f, s, f / s / 1000, cs, cs / s, (cs > 0 ? f / cs / 1000 : 0), r }' | tee -a "$TMP/results"
}

# profile LABEL: the middle router's samples of the last flood
# ($TMP/perf.data), self time by part of the process: the unicast IPCP's
# data path (layer/unicast and its dt, pff, ca), the UDP shim, the
# kernel's rings and buffers (package kernel), the Go runtime, the
# operating system (system calls, the network stack), the rest; then
# the 15 hottest functions.
profile() {
	perf report -i "$TMP/perf.data" --no-children -g none --sort sym --stdio -q 2>/dev/null |
		awk -v l="$1" '
		$1 ~ /%$/ {
			p = $1; sub(/%/, "", p); s = $0; sub(/^[^\[]*\[[^\]]*\] */, "", s)
			part = "other"
			if ($2 == "[k]") part = "OS kernel"
			else if (s ~ /layer\/unicast/) part = "unicast IPCP"
			else if (s ~ /layer\/(udp|shim)|internal\/shim|layer\/ipcp/) part = "UDP shim"
			else if (s ~ /ouro\/kernel|irm/) part = "rings, buffers (kernel, irm)"
			else if (s ~ /^runtime\.|^internal\/runtime|^sync|^aeshash|^memeqbody|^indexbyte/) part = "Go runtime, sync"
			t[part] += p
			if (n < 15) top[n++] = sprintf("  %6.2f%%  %s", p, s)
		}
		END {
			printf "%s: middle router CPU by part:", l
			for (k in t) printf " %s %.0f%%;", k, t[k]
			printf "\n"
			for (i = 0; i < n; i++) print top[i]
		}' | tee -a "$TMP/results"
}

# ouro_round LABEL ROUTER: a round with the router binary ROUTER.
ouro_round() {
	ROUTER=$2
	node r 3522 '"a.uni" = "127.0.0.1:3521", "b.uni" = "127.0.0.1:3523"' 'bootstrap = true
admission = "open"
ca = "nop"'
	local rpid=$NODEPID
	waitsock r
	node a 3521 '"r.uni" = "127.0.0.1:3522"' 'enroll = "r.uni"'
	node b 3523 '"r.uni" = "127.0.0.1:3522"' 'enroll = "r.uni"'
	waitsock a b
	"${NSX[@]}" "$TMP/ouro" --socket "$TMP/b.sock" perf --server sink >"$TMP/sink.log" 2>&1 &
	PIDS+=($!)
	"${NSX[@]}" "$TMP/ouro" --socket "$TMP/b.sock" echo echo >"$TMP/echo.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 50); do
		"${NSX[@]}" "$TMP/ouro" --socket "$TMP/a.sock" ping echo -c 1 -W 500ms >/dev/null 2>&1 && break
		sleep 0.2
	done
	local f0 c0 t0 f1 c1 t1 ppid=
	if [ -n "$PROFILE" ]; then
		perf record -q -e cpu-clock -F 999 -g -p "$rpid" -o "$TMP/perf.data" >/dev/null 2>&1 &
		ppid=$!
	fi
	f0=$(forwarded r) c0=$(cpu_ticks "$rpid") t0=$(date +%s.%N)
	local k spids=()
	for k in $(seq 2 "$SENDERS"); do # the other floods, beside the first
		"${NSX[@]}" "$TMP/ouro" --socket "$TMP/a.sock" perf sink -s "$SIZE" -t "${TIME}s" --json >"$TMP/perf$k.json" 2>"$TMP/perf$k.err" &
		spids+=($!)
	done
	"${NSX[@]}" "$TMP/ouro" --socket "$TMP/a.sock" perf sink -s "$SIZE" -t "${TIME}s" --json >"$TMP/perf.json" 2>"$TMP/perf.err" || true
	for k in "${spids[@]}"; do wait "$k" || true; done
	f1=$(forwarded r) c1=$(cpu_ticks "$rpid") t1=$(date +%s.%N)
	if [ -n "$ppid" ]; then
		kill -INT "$ppid"
		wait "$ppid" 2>/dev/null || true
		profile "$1"
	fi
	local recv
	recv=$(python3 -c 'import json,sys
ds = [json.load(open(f)) for f in sys.argv[1:]]
print("%.0f k/s, loss %s" % (sum(d["recv_pps"] for d in ds) / 1000, " ".join("%.1f%%" % d["loss_percent"] for d in ds)))' "$TMP"/perf*.json 2>/dev/null || echo "? ($(head -c 200 "$TMP/perf.err"))")
	rm -f "$TMP"/perf*.json
	report "$1" $((f1 - f0)) $((c1 - c0)) "$(echo "$t1 - $t0" | bc)" "$recv"
	stopall
}

# replay_round LABEL ROUTER: r (router binary ROUTER) fed a replay of a's
# flood (REPLAY=1, above), once at each rate of RATES.
replay_round() {
	ROUTER=$2
	node r 3522 '"a.uni" = "127.0.0.1:3521", "b.uni" = "127.0.0.1:3523"' 'bootstrap = true
admission = "open"
ca = "nop"
hello = 60000
flow_timeout = "600s"'
	local rpid=$NODEPID
	waitsock r
	node a 3521 '"r.uni" = "127.0.0.1:3522"' 'enroll = "r.uni"'
	local apid=$NODEPID
	node b 3523 '"r.uni" = "127.0.0.1:3522"' 'enroll = "r.uni"
flow_timeout = "600s"'
	local bpid=$NODEPID
	waitsock a b
	"${NSX[@]}" "$TMP/ouro" --socket "$TMP/b.sock" perf --server sink >"$TMP/sink.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	"${NSX[@]}" "$TMP/ouro" --socket "$TMP/b.sock" echo echo >"$TMP/echo.log" 2>&1 &
	local epid=$!
	PIDS+=($epid)
	for _ in $(seq 50); do
		"${NSX[@]}" "$TMP/ouro" --socket "$TMP/a.sock" ping echo -c 1 -W 500ms >/dev/null 2>&1 && break
		sleep 0.2
	done
	# What r's shim receives of a short flood: 4096 whole SDUs.
	local snap=$((SIZE + 64)) slots=65536
	while [ $((snap * slots)) -gt $((8 << 20)) ]; do slots=$((slots / 2)); done
	"${NSX[@]}" "$TMP/ouro" --socket "$TMP/r.sock" capture r.udp -w "$TMP/replay.pcapng" -c 4096 -t 5s \
		--snap "$snap" --slots "$slots" in 2>"$TMP/capture.err" &
	local cpid=$!
	sleep 0.3
	"${NSX[@]}" "$TMP/ouro" --socket "$TMP/a.sock" perf sink -s "$SIZE" -t 1s >/dev/null 2>&1 || true
	wait "$cpid" || { echo "chain3.sh: capture at r failed: $(cat "$TMP/capture.err")" >&2; exit 1; }
	kill -KILL "$apid" # at once: a router that stops deallocates its flows
	wait "$apid" 2>/dev/null || true
	kill -STOP "$bpid" "$spid" "$epid"
	local rate
	for rate in $RATES; do
		local x0 x1 c0 c1 t0 t1 ppid=
		if [ -n "$PROFILE" ]; then
			perf record -q -e cpu-clock -F 999 -g -p "$rpid" -o "$TMP/perf.data" >/dev/null 2>&1 &
			ppid=$!
		fi
		x0=$(counters r r.uni forwarded drops.queue_full) x0="$x0 $(counters r r.udp packets_out drops.socket_overflow drops.rx_full)"
		c0=$(cpu_ticks "$rpid") t0=$(date +%s.%N)
		"${NSX[@]}" "$TMP/udpreplay" -pcap "$TMP/replay.pcapng" -from 127.0.0.1:3521 -to 127.0.0.1:3522 \
			-t "${TIME}s" -rate "$rate" --json >"$TMP/replay.json"
		c1=$(cpu_ticks "$rpid") t1=$(date +%s.%N)
		x1=$(counters r r.uni forwarded drops.queue_full) x1="$x1 $(counters r r.udp packets_out drops.socket_overflow drops.rx_full)"
		if [ -n "$ppid" ]; then
			kill -INT "$ppid"
			wait "$ppid" 2>/dev/null || true
			profile "$1, rate $rate"
		fi
		python3 - "$1" "$HZ" "$((c1 - c0))" "$(echo "$t1 - $t0" | bc)" "$TMP/replay.json" $x0 $x1 <<'PY' | tee -a "$TMP/results"
import json, sys
label, hz, ticks, secs, rj = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
v = [int(x) for x in sys.argv[6:]]
fwd, qfull, out, sock, rxfull = (b - a for a, b in zip(v[:5], v[5:]))
r = json.load(open(rj))
cs = ticks / hz
print("%s: offered %.0f k/s (-rate %g); r forwarded %.0f k/s, of them queued and sent %.0f k/s, dropped at its queues %.0f k/s, "
      "at its socket and shim ring %.0f k/s; r's CPU %.2f cores; sent per CPU-second %.0f k" % (
      label, r["pps"] / 1000, r["rate"], fwd / secs / 1000, out / secs / 1000, qfull / secs / 1000, (sock + rxfull) / secs / 1000,
      cs / secs, out / cs / 1000 if cs > 0 else 0))
PY
	done
	kill -CONT "$bpid" "$spid" "$epid"
	stopall
}

# relay_round [replay]: the baseline, udprelay between `ouro perf --udp`
# and its server; with "replay", fed the replay of REPLAY=1 instead.
relay_round() {
	local replay=${1:-} label="plain UDP relay"
	if [ -z "$replay" ]; then
		"${NSX[@]}" "$TMP/ouro" perf --server --udp 127.0.0.1:3532 >"$TMP/usink.log" 2>&1 &
		PIDS+=($!)
	fi
	"${NSX[@]}" "$TMP/udprelay" -listen 127.0.0.1:3531 -to 127.0.0.1:3532 >"$TMP/relay.out" 2>&1 &
	local rpid=$!
	PIDS+=($rpid)
	sleep 0.3
	local c0 t0 c1 t1 recv
	c0=$(cpu_ticks "$rpid") t0=$(date +%s.%N)
	if [ -n "$replay" ]; then
		"${NSX[@]}" "$TMP/udpreplay" -pcap "$TMP/replay.pcapng" -from 127.0.0.1:3530 -to 127.0.0.1:3531 -t "${TIME}s" >"$TMP/replay.out"
	else
		"${NSX[@]}" "$TMP/ouro" perf --udp 127.0.0.1:3531 -s "$SIZE" -t "${TIME}s" --json >"$TMP/uperf.json" 2>"$TMP/uperf.err" || true
	fi
	c1=$(cpu_ticks "$rpid") t1=$(date +%s.%N)
	kill "$rpid"
	wait "$rpid" 2>/dev/null || true
	if [ -n "$replay" ]; then
		label="plain UDP relay, replay" recv="replay: $(cat "$TMP/replay.out")"
	else
		recv=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f k/s, loss %.1f%%" % (d["recv_pps"] / 1000, d["loss_percent"]))' "$TMP/uperf.json" 2>/dev/null || echo "? ($(head -c 200 "$TMP/uperf.err"))")
	fi
	report "$label" "$(awk '/^forwarded/{print $2}' "$TMP/relay.out")" $((c1 - c0)) "$(echo "$t1 - $t0" | bc)" "$recv"
	stopall
}

if [ -n "$REPLAY" ]; then
	for i in $(seq "$ROUNDS"); do
		echo "== round $i (replay)"
		if [ -n "$BASE" ] && [ $((i % 2)) = 0 ]; then replay_round "ouro at $BASE, r fed a replay" "$TMP/base/router.bin"; fi
		replay_round "ouro, r fed a replay" "$TMP/router"
		if [ -n "$BASE" ] && [ $((i % 2)) = 1 ]; then replay_round "ouro at $BASE, r fed a replay" "$TMP/base/router.bin"; fi
		relay_round replay
	done
	echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
	exit 0
fi
for i in $(seq "$ROUNDS"); do
	echo "== round $i"
	relay_round
	# With BASE, the two alternate which goes first.
	if [ -n "$BASE" ] && [ $((i % 2)) = 0 ]; then ouro_round "ouro at $BASE, 3 routers" "$TMP/base/router.bin"; fi
	ouro_round "ouro, 3 routers" "$TMP/router"
	if [ -n "$BASE" ] && [ $((i % 2)) = 1 ]; then ouro_round "ouro at $BASE, 3 routers" "$TMP/base/router.bin"; fi
done
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
