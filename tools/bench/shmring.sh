#!/usr/bin/env bash
# Program <-> node data path, before/after: ouro ping RTT, ouro perf
# 1400 B and alloc_ms between two router processes over the UDP shim on
# 127.0.0.1, each variant beside plain UDP (ouro ping/perf --udp) in the
# same round (docs/benchmarks.md, "Shared rings").
#   tools/bench/shmring.sh DIR ROUNDS VARIANT...
# VARIANT is NAME=BUILDDIR[:ENV=VALUE]; BUILDDIR holds router and ouro
# (go build -o BUILDDIR/router ./images/router; ... ./tools/ouro), e.g.
#   tools/bench/shmring.sh /tmp/b 3 before=/tmp/main shm=/tmp/br sock=/tmp/br:OURO_SHM=0
set -e
. "$(dirname "$0")/lib.sh"
D=$1; R=$2; shift 2
mkdir -p "$D"
udp_pair "$D" 47101 47102 'echo = "127.0.0.1:47102", perf = "127.0.0.1:47102"'
for r in $(seq "$R"); do
  for v in "$@"; do
    name=${v%%=*}; rest=${v#*=}; X=${rest%%:*}; envs=""
    case $rest in *:*) envs=${rest#*:};; esac
    rm -f "$D/a.sock" "$D/b.sock"
    env $envs "$X/router" -config "$D/a.toml" -socket "$D/a.sock" >"$D/a.log" 2>&1 & PA=$!
    env $envs "$X/router" -config "$D/b.toml" -socket "$D/b.sock" >"$D/b.log" 2>&1 & PB=$!
    sleep 1
    env $envs OURO_SOCKET="$D/b.sock" "$X/ouro" echo echo >/dev/null 2>&1 & PE=$!
    env $envs OURO_SOCKET="$D/b.sock" "$X/ouro" perf --server perf >/dev/null 2>&1 & PS=$!
    sleep 0.5
    rtt=$(env $envs OURO_SOCKET="$D/a.sock" "$X/ouro" --json ping -c 500 -i 1ms -q echo | j rtt_avg_ms)
    perf=$(env $envs OURO_SOCKET="$D/a.sock" "$X/ouro" --json perf -t 3s -s 1400 perf | j recv_pps)
    allocs=$(for i in $(seq 15); do env $envs OURO_SOCKET="$D/a.sock" "$X/ouro" --json ping -c 1 echo | j alloc_ms; done | med)
    kill $PE $PS $PA $PB; wait $PE $PS $PA $PB 2>/dev/null || true
    "$X/ouro" echo --udp 127.0.0.1:47103 >/dev/null 2>&1 & PU=$!
    "$X/ouro" perf --server --udp 127.0.0.1:47104 >/dev/null 2>&1 & PV=$!
    sleep 0.3
    urtt=$("$X/ouro" --json ping --udp 127.0.0.1:47103 -c 500 -i 1ms -q | j rtt_avg_ms)
    uperf=$("$X/ouro" --json perf --udp 127.0.0.1:47104 -t 3s -s 1400 | j recv_pps)
    kill $PU $PV; wait $PU $PV 2>/dev/null || true
    echo "round=$r variant=$name rtt_ms=$rtt udp_rtt_ms=$urtt rtt_ratio=$(echo "$rtt $urtt" | awk '{printf "%.2f", $1/$2}') perf_sdu_s=$perf udp_perf_sdu_s=$uperf perf_ratio=$(echo "$perf $uperf" | awk '{if ($2>0) printf "%.2f", $1/$2}') alloc_ms_median=$allocs"
  done
done
