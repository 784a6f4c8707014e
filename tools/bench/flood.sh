#!/usr/bin/env bash
# Floods vs the wire (issue 14): received SDU/s and loss of an `ouro
# perf` flood (1000 B and 1400 B) between two router processes over the
# UDP shim on 127.0.0.1, and in the same round the plain-UDP pair `ouro
# perf --udp` (separate processes, sendmmsg/recvmmsg batches) and
# `iperf3 -u -b 0`, with the ratios (docs/benchmarks.md, "Floods vs the
# wire").
#   tools/bench/flood.sh DIR ROUNDS VARIANT...
# VARIANT is NAME=BUILDDIR; BUILDDIR holds router and ouro
# (go build -o BUILDDIR/router ./images/router; ... ./tools/ouro), e.g.
#   tools/bench/flood.sh /tmp/f 3 before=/tmp/main after=/tmp/br
# Each line: round, variant, size, the load average, then for ouro
# (flows), udp (ouro perf --udp) and iperf3: received SDU/s and loss %
# (for flows also the CPU time per received SDU of the perf server's
# process and of the receiving router, b: on a shared machine it moves
# less than the rates), and the sending router's, a, per SDU sent;
# then flow/udp and flow/iperf3 ratios of
# received SDU/s.
# P sets the first of the five UDP ports it uses (default 47111), so that
# two runs on one machine do not collide. SIZES sets the SDU sizes
# (default "1000 1400"); MAX_SDU sets the routers' UDP shims' max_sdu
# (for SDUs over 1400 bytes, docs/config.md), e.g.
#   MAX_SDU=8000 SIZES="1400 8000" tools/bench/flood.sh /tmp/f 3 new=/tmp/br
set -e
. "$(dirname "$0")/lib.sh"
D=$1; R=$2; shift 2
T=${T:-3}
P=${P:-47111}
PA=$P PB=$((P+1)) PU=$((P+3)) PI3=$((P+4))
mkdir -p "$D"
udp_pair "$D" $PA $PB 'perf = "127.0.0.1:'$PB'"'
if [ -n "${MAX_SDU:-}" ]; then
  for f in "$D/a.toml" "$D/b.toml"; do echo "max_sdu = $MAX_SDU" >> "$f"; done
fi
# iperf3's receiver: SDUs received per second and loss % from --json.
ip3() { python3 -c '
import json, sys
s = json.load(sys.stdin)["end"]["sum"]
print("%.1f %.2f" % ((s["packets"] - s["lost_packets"]) / s["seconds"], s["lost_percent"]))'; }
ratio() { echo "$1 $2" | awk '{if ($2>0) printf "%.2f", $1/$2; else print "-"}'; }
# cpu PID...: each process's CPU time so far, in clock ticks (1/100 s).
cpu() { for p in "$@"; do awk '{printf "%d ", $14+$15}' /proc/$p/stat; done; }
for r in $(seq "$R"); do
  for v in "$@"; do
    name=${v%%=*}; X=${v#*=}
    for s in ${SIZES:-1000 1400}; do
      rm -f "$D/a.sock" "$D/b.sock"
      "$X/router" -config "$D/a.toml" -socket "$D/a.sock" >"$D/a.log" 2>&1 & RA=$!
      "$X/router" -config "$D/b.toml" -socket "$D/b.sock" >"$D/b.log" 2>&1 & RB=$!
      sleep 1
      OURO_SOCKET="$D/b.sock" "$X/ouro" perf --server perf >/dev/null 2>&1 & PS=$!
      sleep 0.5
      c0=$(cpu $PS $RB) a0=$(cpu $RA)
      OURO_SOCKET="$D/a.sock" "$X/ouro" --json perf -t "${T}s" -s $s --no-progress perf >"$D/flow.json" || true
      c1=$(cpu $PS $RB) a1=$(cpu $RA)
      kill $PS $RA $RB; wait $PS $RA $RB 2>/dev/null || true
      fpps=$(j recv_pps <"$D/flow.json"); floss=$(j loss_percent <"$D/flow.json")
      fsdus=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["server"]["sdus"])' <"$D/flow.json" 2>/dev/null || echo 0)
      cpus=$(echo "$c0 $c1 ${fsdus:-0}" | awk '{if ($5>0) printf "%.2f %.2f", ($3-$1)*1e6/$5/100, ($4-$2)*1e6/$5/100; else print "- -"}')
      fsent=$(j sent <"$D/flow.json")
      acpu=$(echo "$a0 $a1 ${fsent:-0}" | awk '{if ($3>0) printf "%.2f", ($2-$1)*1e6/$3/100; else print "-"}')

      "$X/ouro" perf --server --udp 127.0.0.1:$PU >/dev/null 2>&1 & PV=$!
      sleep 0.3
      "$X/ouro" --json perf --udp 127.0.0.1:$PU -t "${T}s" -s $s --no-progress >"$D/udp.json" || true
      kill $PV; wait $PV 2>/dev/null || true
      upps=$(j recv_pps <"$D/udp.json"); uloss=$(j loss_percent <"$D/udp.json")

      iperf3 -s -B 127.0.0.1 -p $PI3 -1 >/dev/null 2>&1 & PI=$!
      sleep 0.3
      set -- $(iperf3 -c 127.0.0.1 -p $PI3 -u -b 0 -l $s -t "$T" --json | ip3) "$@"
      ipps=$1; iloss=$2; shift 2
      wait $PI 2>/dev/null || true

      echo "round=$r variant=$name size=$s load=$(cut -d" " -f1 /proc/loadavg) flow_sdu_s=$fpps flow_loss=$floss srv_cpu_us/sdu=${cpus% *} node_b_cpu_us/sdu=${cpus#* } node_a_cpu_us/sent=$acpu udp_sdu_s=$upps udp_loss=$uloss iperf3_sdu_s=$ipps iperf3_loss=$iloss flow/udp=$(ratio "$fpps" "$upps") flow/iperf3=$(ratio "$fpps" "$ipps")"
    done
  done
done
