#!/usr/bin/env bash
# alloc3.sh — the 3-hop variant of alloc.sh (issue 14's 0.7 ms target):
# four routers in a network namespace of the script's own, each a UDP
# shim on 127.0.0.1 and a unicast IPCP, chained a - m1 - m2 - b (each
# node's directory names only its neighbours), an echo on b, and N fresh
# `ouro ping -c 1` from a. It prints the median alloc_ms, a 3-SDU RTT and
# the forwarded counters of m1 and m2 (both non-zero: the flow crosses
# three hops), and the minimum alloc_ms; then warm_*: N allocations on
# one session (`ouro alloc -c N+1 -i 1ms`, the first left out, as in
# alloc.sh; "-" for a build without `ouro alloc`). Run as root from the
# repository root:
#   tools/bench/alloc3.sh ROUNDS N BUILDDIR...   (each holds router, ouro)
# A BUILDDIR may be NAME=BUILDDIR; several run interleaved in each round
# (before/after, as alloc.sh):
#   tools/bench/alloc3.sh 3 15 before=/tmp/main after=/tmp/br
set -euo pipefail
R=$1; N=$2; shift 2
NS=ouro-alloc3-$$
TMP=$(mktemp -d /tmp/ouro-alloc3.XXXXXX)
PIDS=()
. "$(dirname "$0")/lib.sh"
trap cleanup EXIT INT TERM
need_root alloc3.sh "ip netns"
netns_up
echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
for r in $(seq "$R"); do
for v in "$@"; do
	name=${v%%=*}; X=${v#*=}; ROUTER=$X/router; OURO=$X/ouro
	rm -f "$TMP"/*.sock
	node m1 3612 '"a.uni" = "127.0.0.1:3611", "m2.uni" = "127.0.0.1:3613"' 'bootstrap = true
admission = "open"'
	waitsock m1
	node m2 3613 '"m1.uni" = "127.0.0.1:3612", "b.uni" = "127.0.0.1:3614"' 'enroll = "m1.uni"'
	waitsock m2; sleep 0.5
	node a 3611 '"m1.uni" = "127.0.0.1:3612"' 'enroll = "m1.uni"'
	node b 3614 '"m2.uni" = "127.0.0.1:3613"' 'enroll = "m2.uni"'
	waitsock a b
	"${NSX[@]}" "$X/ouro" --socket "$TMP/b.sock" echo echo >"$TMP/echo.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 50); do
		"${NSX[@]}" "$X/ouro" --socket "$TMP/a.sock" ping echo -c 1 -W 500ms >/dev/null 2>&1 && break
		sleep 0.2
	done
	for i in $(seq "$N"); do "${NSX[@]}" "$X/ouro" --socket "$TMP/a.sock" --json ping -c 1 echo | j alloc_ms; done >"$TMP/alloc.txt"
	am=$(med <"$TMP/alloc.txt"); an=$(sort -n "$TMP/alloc.txt" | head -1)
	warm "$TMP/a.sock" "$X/ouro" "$N" >"$TMP/warm.txt"
	wm=$(medOr <"$TMP/warm.txt"); wn=$(minOr <"$TMP/warm.txt")
	hops=$("${NSX[@]}" "$X/ouro" --socket "$TMP/a.sock" --json ping -c 3 echo | j rtt_avg_ms) || hops=-
	echo "round=$r variant=$name hops=3 forwarded_m1=$(forwarded m1) forwarded_m2=$(forwarded m2) alloc_ms_median=$am alloc_ms_min=$an warm_ms_median=$wm warm_ms_min=$wn rtt_ms=$hops"
	stopall
done
done
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
