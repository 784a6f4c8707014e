#!/usr/bin/env bash
# alloccpu.sh — what a warm allocation costs in CPU, and how long it takes
# (issue 14; docs/benchmarks.md, "Rings kept between flows, and one
# processor while quiet"): two router processes over the UDP shim on
# 127.0.0.1 and an echo on b, as alloc.sh runs them; per round and
# variant, N allocations and closes back to back on one session
# (`ouro alloc -c N -i 0`) and the CPU time each process spent per
# allocation (routers and echo from /proc/PID/stat, the client from
# time(1)), then the medians of 3 runs of 100 warm allocations at 1 ms
# intervals (`ouro alloc -c 101 -i 1ms`).
#   tools/bench/alloccpu.sh DIR ROUNDS N VARIANT...
# VARIANT is NAME=BUILDDIR[:ENV=VALUE[,ENV=VALUE]] as in rtt.sh (the
# environment of the routers; PENV=... in the script's environment is
# the programs'):
#   tools/bench/alloccpu.sh /tmp/ac 2 2000 main=/tmp/main new=/tmp/new p1=/tmp/main:GOMAXPROCS=1
set -e
. "$(dirname "$0")/lib.sh"
D=$1; R=$2; N=$3; shift 3
udp_pair "$D" 47121 47122 'echo = "127.0.0.1:47122"'
PIDS=()
trap stopall EXIT INT TERM
echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
for r in $(seq "$R"); do
  for v in "$@"; do
    variant "$v"
    ECHO_ENV=${PENV:-} pair_up "$D" "$X" $envs
    PIDS=($PA $PB $PE)
    env ${PENV:-} OURO_SOCKET="$D/a.sock" "$X/ouro" alloc -c 11 -i 1ms -q echo >/dev/null
    t0=($(cpu_ticks $PA $PB $PE)); s0=$(date +%s%N)
    cl=$( { /usr/bin/time -f "%U %S" env ${PENV:-} OURO_SOCKET="$D/a.sock" "$X/ouro" alloc -c "$N" -i 0 -q echo >/dev/null; } 2>&1 | tail -1 | awk '{print ($1+$2)*100}')
    s1=$(date +%s%N); t1=($(cpu_ticks $PA $PB $PE))
    warm=""
    for _ in 1 2 3; do
      warm="$warm$(env ${PENV:-} OURO_SOCKET="$D/a.sock" "$X/ouro" alloc -c 101 -i 1ms -q echo | tail -1 | sed 's/.*= //' | cut -d/ -f2),"
    done
    echo "$r $name $N $s0 $s1 ${t0[*]} ${t1[*]} $cl ${warm%,} $(cut -d' ' -f1 /proc/loadavg)" | awk '{n=$3; t=1e4/n;
      printf "round=%s variant=%s n=%d b2b_us=%.0f cpu_us_a=%.0f cpu_us_b=%.0f cpu_us_echo=%.0f cpu_us_client=%.0f cpu_us_total=%.0f warm_ms_medians=%s load=%s\n",
        $1, $2, n, ($5-$4)/1e3/n, ($9-$6)*t, ($10-$7)*t, ($11-$8)*t, $12*t, ($9-$6+$10-$7+$11-$8+$12)*t, $13, $14}'
    stopall
  done
done
