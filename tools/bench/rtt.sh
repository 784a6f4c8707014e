#!/usr/bin/env bash
# Round trip through the node: `ouro ping` between two router processes
# over the UDP shim on 127.0.0.1 beside `ouro ping --udp` in the same
# round, per-ping median and p90, and the CPU the routers, the echo
# program and ping spent meanwhile (docs/benchmarks.md, "Round trip
# through the node").
#   tools/bench/rtt.sh DIR ROUNDS VARIANT...
# VARIANT is NAME=BUILDDIR[:ENV=VALUE[,ENV=VALUE]]; BUILDDIR holds router
# and ouro (go build -o BUILDDIR/router ./images/router; ... ./tools/ouro):
#   tools/bench/rtt.sh /tmp/rtt 5 before=/tmp/main after=/tmp/br nospin=/tmp/br:OURO_SHM_SPIN=0
# Per round and variant it prints rtt_med/rtt_p90 (ms, of 500 pings at
# 1 ms), loc_med/loc_p90 (the same through one router's local layer: the
# program<->node hops without the UDP shim between routers),
# uni_med/uni_p90 (the same over a unicast layer over the UDP shim
# between two routers: one hop of the layer), udp_med/udp_p90, the
# ratios (uni_ratio: uni_med over udp_med), and cpu_pct / udp_cpu_pct: CPU
# time of every process of the run (both routers, echo, ping) as a
# share of one core over the ping's wall time (clock ticks, 10 ms
# resolution; loc_cpu_pct likewise for the one-router run).
set -e
. "$(dirname "$0")/lib.sh"
D=$1; R=$2; shift 2
mkdir -p "$D"
udp_pair "$D" 47101 47102 'echo = "127.0.0.1:47102"'
cat > "$D/l.toml" <<EOT
[node]
name = "l"
[[ipcp]]
kind = "local"
layer = "loc"
EOT
# c and d: a unicast layer "uni" over UDP shims (c bootstraps, d
# enrolls), for the round trip across one hop of a unicast layer.
uni() {
  printf '[node]\nname = "%s"\n[[ipcp]]\nkind = "udp"\nlayer = "net"\n[ipcp.udp]\naddr = "127.0.0.1:%s"\ndir = { "%s.uni" = "127.0.0.1:%s" }\n[[ipcp]]\nkind = "unicast"\nname = "%s.uni"\nlayer = "uni"\n[ipcp.unicast]\nlower = ["net"]\n%s\n' "$1" "$2" "$3" "$4" "$1" "$5" > "$D/$1.toml"
}
uni c 47104 d 47105 'bootstrap = true
admission = "open"'
uni d 47105 c 47104 'enroll = "c.uni"'
# ticks PID...: user+system clock ticks of the processes so far.
ticks() { for p in "$@"; do cut -d')' -f2 "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}'; done | awk '{s+=$1} END {print s+0}'; }
# rtts FILE: the per-reply times of a ping's output, sorted.
rtts() { sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$1" | sort -n; }
q() { awk -v q="$1" '{a[NR]=$1} END {i=int(NR*q+0.5); if (i<1) i=1; print a[i]}'; }
hz=$(getconf CLK_TCK)
# run PIDS... -- CMD...: CMD's output in $D/out, pct= CPU of PIDS and CMD.
run() {
  pids=""; while [ "$1" != -- ]; do pids="$pids $1"; shift; done; shift
  t0=$(ticks $pids); s0=$(date +%s%N)
  "$@" >"$D/out" 2>&1 & pc=$!
  # the pinger's own ticks, sampled every 50 ms while it runs (its
  # last 50 ms may be missed: /proc has nothing once it is reaped)
  pt=0; while kill -0 $pc 2>/dev/null; do pt=$(ticks $pc); sleep 0.05; done
  wait $pc || true
  t1=$(ticks $pids); s1=$(date +%s%N)
  pct=$(echo "$t0 $t1 $pt $s0 $s1 $hz" | awk '{printf "%.0f", 100*($2-$1+$3)/$6/(($5-$4)/1e9)}')
}
for r in $(seq "$R"); do
  for v in "$@"; do
    variant "$v"
    pair_up "$D" "$X" $envs
    run $PA $PB $PE -- env $envs OURO_SOCKET="$D/a.sock" "$X/ouro" ping -c 500 -i 1ms echo
    rtts "$D/out" > "$D/t"; med=$(q 0.5 < "$D/t"); p90=$(q 0.9 < "$D/t"); n=$(wc -l < "$D/t"); cpu=$pct
    kill $PE $PA $PB; wait $PE $PA $PB 2>/dev/null || true
    rm -f "$D/l.sock"
    env $envs "$X/router" -config "$D/l.toml" -socket "$D/l.sock" >"$D/l.log" 2>&1 & PL=$!
    sleep 1
    env $envs OURO_SOCKET="$D/l.sock" "$X/ouro" echo echo >/dev/null 2>&1 & PE=$!
    sleep 0.5
    run $PL $PE -- env $envs OURO_SOCKET="$D/l.sock" "$X/ouro" ping -c 500 -i 1ms echo
    rtts "$D/out" > "$D/t"; lmed=$(q 0.5 < "$D/t"); lp90=$(q 0.9 < "$D/t"); lcpu=$pct
    kill $PE $PL; wait $PE $PL 2>/dev/null || true
    rm -f "$D/c.sock" "$D/d.sock"
    env $envs "$X/router" -config "$D/c.toml" -socket "$D/c.sock" >"$D/c.log" 2>&1 & PC=$!
    sleep 0.5
    env $envs "$X/router" -config "$D/d.toml" -socket "$D/d.sock" >"$D/d.log" 2>&1 & PD=$!
    sleep 1
    env $envs OURO_SOCKET="$D/d.sock" "$X/ouro" echo echo >/dev/null 2>&1 & PE=$!
    for _ in $(seq 50); do # the layer is up when a ping crosses it
      env $envs OURO_SOCKET="$D/c.sock" "$X/ouro" ping -c 1 -W 500ms echo >/dev/null 2>&1 && break
      sleep 0.2
    done
    run $PC $PD $PE -- env $envs OURO_SOCKET="$D/c.sock" "$X/ouro" ping -c 500 -i 1ms echo
    rtts "$D/out" > "$D/t"; nmed=$(q 0.5 < "$D/t"); np90=$(q 0.9 < "$D/t")
    kill $PE $PC $PD; wait $PE $PC $PD 2>/dev/null || true
    "$X/ouro" echo --udp 127.0.0.1:47103 >/dev/null 2>&1 & PU=$!
    sleep 0.3
    run $PU -- "$X/ouro" ping --udp 127.0.0.1:47103 -c 500 -i 1ms
    rtts "$D/out" > "$D/t"; umed=$(q 0.5 < "$D/t"); up90=$(q 0.9 < "$D/t")
    kill $PU; wait $PU 2>/dev/null || true
    echo "round=$r variant=$name replies=$n rtt_med=$med rtt_p90=$p90 loc_med=$lmed loc_p90=$lp90 uni_med=$nmed uni_p90=$np90 udp_med=$umed udp_p90=$up90 med_ratio=$(echo "$med $umed" | awk '{printf "%.2f", $1/$2}') p90_ratio=$(echo "$p90 $up90" | awk '{printf "%.2f", $1/$2}') uni_ratio=$(echo "$nmed $umed" | awk '{printf "%.2f", $1/$2}') cpu_pct=$cpu loc_cpu_pct=$lcpu udp_cpu_pct=$pct load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
