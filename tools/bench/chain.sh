#!/usr/bin/env bash
# chain.sh — a reliable byte stream across three lossy unicast hops
# (TestStreamThroughLossyChain) against TCP over the same end-to-end loss,
# in the same run (docs/benchmarks.md, "A byte stream across three lossy
# hops").
#
# Run as root from the repository root:
#
#   tools/bench/chain.sh                # BYTES=33554432 TIME=10 RUNS="0.05/0 0.05/0.05"
#   BASE=main tools/bench/chain.sh      # also BASE's code (a git revision),
#                                       # built from `git archive` in $TMP
#
# Baseline: iperf3 (TCP, MSS 1300) over 127.0.0.1 inside a network
# namespace of the script's own, iptables dropping at INPUT (data and ACKs
# both cross it) the end-to-end loss of three hops each losing LOSS:
# 1-(1-LOSS)^3 (14.3% for 5%). iptables cannot reorder: TCP's path only
# loses.
# ouro: the test binary of layer/unicast, TestStreamThroughLossyChain with
# OURO_TRANSFER_BYTES=BYTES and a fixed seed, for each LOSS/REORDER of
# RUNS (each hop drops LOSS of the data packets and holds back REORDER
# behind the next one, both ways; the layer's default ca, mb-ecn-local, unless
# CA is set). The stream is checked byte-identical by the test.
# The namespace, the processes and the temporary directory are removed on
# exit, whatever the exit.
set -euo pipefail

BYTES=${BYTES:-33554432}
TIME=${TIME:-10}
RUNS=${RUNS:-"0.05/0 0.05/0.05"}
SEED=${SEED:-1}
CA=${CA:-mb-ecn-local}
BASE=${BASE:-}
NS=ouro-chain-$$
TMP=$(mktemp -d /tmp/ouro-chain.XXXXXX)
PIDS=()
. "$(dirname "$0")/lib.sh"

trap cleanup EXIT INT TERM

need_root chain.sh "ip netns, iptables"
if ! command -v iperf3 >/dev/null; then
	echo "chain.sh: iperf3 not installed (apt-get install -y iperf3)" >&2
	exit 1
fi

cd "$(git rev-parse --show-toplevel)"
echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "== building the layer/unicast tests at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
go test -c -o "$TMP/unicast.test" ./layer/unicast
if [ -n "$BASE" ]; then
	mkdir "$TMP/base"
	git archive "$BASE" | tar -x -C "$TMP/base"
	echo "== and at BASE $BASE ($(git rev-parse --short "$BASE"))"
	(cd "$TMP/base" && go test -c -o "$TMP/unicast-base.test" ./layer/unicast)
fi

netns_up
"${NSX[@]}" iperf3 -s -B 127.0.0.1 -p 5201 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

# tcp LOSS: iperf3's received Mbit/s with the three hops' loss at INPUT.
tcp() {
	local p
	p=$(awk "BEGIN{print 1-(1-$1)^3}")
	"${NSX[@]}" iptables -A INPUT -m statistic --mode random --probability "$p" -j DROP
	"${NSX[@]}" iperf3 -c 127.0.0.1 -p 5201 -M 1300 -t "$TIME" -J >"$TMP/iperf.json"
	"${NSX[@]}" iptables -F INPUT
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f %s" % (d["end"]["sum_received"]["bits_per_second"]/1e6, d["end"]["sum_sent"].get("retransmits", "?")))' "$TMP/iperf.json"
}

# ouro BIN LOSS REORDER: the chain's Mbit/s and its log line.
ouro() {
	local out
	out=$(OURO_TRANSFER_BYTES=$BYTES OURO_TRANSFER_SEED=$SEED OURO_TRANSFER_LOSS=$2 OURO_TRANSFER_REORDER=$3 OURO_TRANSFER_CA=$CA \
		"$1" -test.run '^TestStreamThroughLossyChain$' -test.count=1 -test.v -test.timeout 30m 2>&1) || {
		echo "$out" | tail -20 >&2
		echo "? failed"
		return
	}
	echo "$(echo "$out" | grep -o '= [0-9.]* Mbit/s' | grep -o '[0-9.]*') $(echo "$out" | grep -o 'byte-identical.*')"
}

for run in $RUNS; do
	loss=${run%/*}
	reorder=${run#*/}
	read -r T TR <<<"$(tcp "$loss")"
	echo "TCP  (iperf3, MSS 1300, $(awk "BEGIN{printf \"%.1f\", 100*(1-(1-$loss)^3)}")% drop at INPUT): $T Mbit/s, $TR retransmits"
	read -r O OL <<<"$(ouro "$TMP/unicast.test" "$loss" "$reorder")"
	echo "ouro (3 hops, $loss loss and $reorder reorder each, ca $CA, $BYTES bytes): $O Mbit/s; $OL"
	[ "$O" != "?" ] && echo "ratio ouro/TCP: $(awk "BEGIN{printf \"%.3f\", $O/$T}")"
	if [ -n "$BASE" ]; then
		if [ "$reorder" != "$loss" ]; then
			echo "BASE: skipped (its test sets reorder = loss)"
		else
			read -r B BL <<<"$(ouro "$TMP/unicast-base.test" "$loss" "$reorder")"
			echo "BASE ouro: $B Mbit/s; $BL"
			[ "$B" != "?" ] && echo "ratio BASE/TCP: $(awk "BEGIN{printf \"%.3f\", $B/$T}")"
		fi
	fi
done
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
