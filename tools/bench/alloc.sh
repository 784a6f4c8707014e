#!/usr/bin/env bash
# Flow allocation through the node sockets (issue 14): alloc_ms of fresh
# `ouro ping -c 1` runs between two router processes over the UDP shim
# on 127.0.0.1, beside a plain UDP request/response round trip between
# two processes (`ouro ping --udp -c 1`'s RTT) measured in the same round,
# so the ratio means something on a loaded machine
# (docs/benchmarks.md, "Allocation: where the time goes").
#   tools/bench/alloc.sh DIR ROUNDS N VARIANT...
# VARIANT is NAME=BUILDDIR; BUILDDIR holds router and ouro
# (go build -o BUILDDIR/router ./images/router; ... ./tools/ouro).
# Variants run interleaved in each round, e.g. before/after:
#   tools/bench/alloc.sh /tmp/al 5 15 before=/tmp/main after=/tmp/br
# Per round and variant it prints the median and minimum of N fresh
# allocations and of N UDP round trips, and median ratio alloc/udp.
# The 3-hop unicast variant is alloc3.sh. Beside the fresh programs' figure
# it prints warm_*: N allocations on one session (`ouro alloc -c N+1 -i 1ms`,
# the first left out: it waits for the session's start), "-" for a build
# without `ouro alloc` (WARM_OURO=PATH runs every variant's warm
# allocations with that ouro instead of the variant's). The interval matters on a machine whose idle CPUs
# wake slowly (docs/benchmarks.md, "Allocation after a pause").
#
# On a loaded machine the rounds swing more than a change does; then
#   tools/bench/alloc.sh --paired DIR N VARIANT...
# runs every variant's two routers and echo at once (each pair on ports
# of its own) and alternates single allocations between them, N each, so
# neighbouring samples see the same load. It prints each variant's
# median and minimum, and the median over samples of the ratio of each
# variant's allocation to the first variant's made just before it; then
# the same of warm allocations (3 runs of `ouro alloc -c 11 -i 1ms` per
# variant, alternating).
set -e
. "$(dirname "$0")/lib.sh"

if [ "$1" = --paired ]; then
  D=$2; N=$3; shift 3
  mkdir -p "$D"
  echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
  PIDS=(); k=0
  for v in "$@"; do
    X=${v#*=}; pa=$((47211 + 10*k)); pb=$((pa + 1))
    udp_pair "$D/v$k" $pa $pb "echo = \"127.0.0.1:$pb\""
    rm -f "$D/v$k/a.sock" "$D/v$k/b.sock"
    "$X/router" -config "$D/v$k/a.toml" -socket "$D/v$k/a.sock" >"$D/v$k/a.log" 2>&1 & PIDS+=($!)
    "$X/router" -config "$D/v$k/b.toml" -socket "$D/v$k/b.sock" >"$D/v$k/b.log" 2>&1 & PIDS+=($!)
    k=$((k + 1))
  done
  sleep 1
  k=0
  for v in "$@"; do
    OURO_SOCKET="$D/v$k/b.sock" "${v#*=}/ouro" echo echo >/dev/null 2>&1 & PIDS+=($!)
    : >"$D/v$k/alloc.txt"; : >"$D/v$k/warm.txt"; k=$((k + 1))
  done
  sleep 0.5
  for i in $(seq "$N"); do
    k=0
    for v in "$@"; do
      OURO_SOCKET="$D/v$k/a.sock" "${v#*=}/ouro" --json ping -c 1 echo | j alloc_ms >>"$D/v$k/alloc.txt"
      k=$((k + 1))
    done
  done
  for _ in 1 2 3; do
    k=0
    for v in "$@"; do
      warm "$D/v$k/a.sock" "${WARM_OURO:-${v#*=}/ouro}" 10 >>"$D/v$k/warm.txt"
      k=$((k + 1))
    done
  done
  stopall
  k=0
  for v in "$@"; do
    f="$D/v$k/alloc.txt" w="$D/v$k/warm.txt"
    ratio=$(paste "$D/v0/alloc.txt" "$f" | awk '$1>0 {print $2/$1}' | med)
    echo "variant=${v%%=*} n=$(wc -l <"$f") alloc_ms_median=$(med <"$f") alloc_ms_min=$(sort -n "$f" | head -1) ratio_to_${1%%=*}_median=$ratio warm_n=$(wc -l <"$w") warm_ms_median=$(medOr <"$w") warm_ms_min=$(minOr <"$w")"
    k=$((k + 1))
  done
  echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
  exit 0
fi
D=$1; R=$2; N=$3; shift 3
mkdir -p "$D"
udp_pair "$D" 47111 47112 'echo = "127.0.0.1:47112"'
min() { sort -n | head -1; }
echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
for r in $(seq "$R"); do
  for v in "$@"; do
    name=${v%%=*}; X=${v#*=}
    pair_up "$D" "$X"
    for i in $(seq "$N"); do
      OURO_SOCKET="$D/a.sock" "$X/ouro" --json ping -c 1 echo | j alloc_ms
    done >"$D/alloc.txt"
    warm "$D/a.sock" "${WARM_OURO:-$X/ouro}" "$N" >"$D/warm.txt"
    kill $PE $PA $PB; wait $PE $PA $PB 2>/dev/null || true
    "$X/ouro" echo --udp 127.0.0.1:47113 >/dev/null 2>&1 & PU=$!
    sleep 0.3
    for i in $(seq "$N"); do
      "$X/ouro" --json ping --udp 127.0.0.1:47113 -c 1 | j rtt_avg_ms
    done >"$D/udp.txt"
    kill $PU; wait $PU 2>/dev/null || true
    am=$(med <"$D/alloc.txt"); an=$(min <"$D/alloc.txt")
    um=$(med <"$D/udp.txt"); un=$(min <"$D/udp.txt")
    wm=$(medOr <"$D/warm.txt"); wn=$(minOr <"$D/warm.txt")
    echo "round=$r variant=$name n=$N alloc_ms_median=$am alloc_ms_min=$an udp_rtt_ms_median=$um udp_rtt_ms_min=$un ratio_median=$(echo "$am $um" | awk '{if ($2>0) printf "%.1f", $1/$2}') warm_ms_median=$wm warm_ms_min=$wn"
  done
done
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
