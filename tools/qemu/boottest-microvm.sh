#!/bin/sh
# boottest-microvm.sh — run images/boottest on QEMU microvm (x86-64, TCG)
# and check its exit codes and its virtio-net echo against
# tools/qemu/enetpeer (see docs/boards-microvm.md).
#
# Environment: ELF (the boottest image), QEMU_CMD (machine options, without
# -kernel), ENETPEER (default bin/enetpeer), RELAY (default bin/relay),
# TIMEOUT. Every QEMU run is wrapped in timeout. Sockets bind 127.0.0.1.
#
# Exit codes go through isa-debug-exit: QEMU exits with (code<<1)|1, so the
# guest's 0 is 1 and 3 is 7. An exit status of 0 means the guest never
# reached the device (a triple fault with -no-reboot, e.g. a CPU without
# RDRAND: use -cpu max).
set -u

: "${ELF:?ELF=path to the boottest image}"
: "${QEMU_CMD:?QEMU_CMD=qemu-system-x86_64 ...}"
ENETPEER=${ENETPEER:-bin/enetpeer}
RELAY=${RELAY:-bin/relay}
TIMEOUT=${TIMEOUT:-60}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

# expect STATUS NAME ARGS QEMU-ARGS...
expect() {
	want=$1 name=$2 args=$3
	shift 3
	# shellcheck disable=SC2086
	timeout "$TIMEOUT" $QEMU_CMD "$@" -fw_cfg "name=opt/ouro/args,string=boottest $args" -kernel "$ELF" >"$TMP/$name.log" 2>&1 </dev/null
	got=$?
	if [ "$got" -eq "$want" ] && grep -q '^boottest: PASS' "$TMP/$name.log"; then
		echo "PASS: $name (exit status $got)"
	else
		echo "FAIL: $name: exit status $got, want $want"
		sed 's/^/    /' "$TMP/$name.log"
		return 1
	fi
}

expect 1 boot "" -net none || fails=$((fails + 1))
expect 7 exit-code "exit=3" -net none || fails=$((fails + 1))

# virtio-net: QEMU listens, the guest echoes; the relay joins QEMU and
# enetpeer once the guest's driver is up (QEMU drops frames before that)
"$ENETPEER" -portfile "$TMP/port" -guest 02:00:00:00:00:01 -n 2000 -timeout "${TIMEOUT}s" >"$TMP/peer.log" 2>&1 &
peer=$!
i=0
while [ ! -s "$TMP/port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
q=$("$RELAY" -freeport)
expect 1 virtio-echo "echo=$TIMEOUT" \
	-netdev "socket,id=n0,listen=127.0.0.1:$q" -device virtio-net-device,netdev=n0,mac=02:00:00:00:00:01 &
vm=$!
i=0
while ! grep -q 'boottest: echo on' "$TMP/virtio-echo.log" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
"$RELAY" -a "127.0.0.1:$q" -b "127.0.0.1:$(cat "$TMP/port")" >"$TMP/relay.log" 2>&1 &
wait $vm || fails=$((fails + 1))
if wait $peer; then
	echo "PASS: virtio-peer: $(sed -n 's/.*enetpeer: PASS: //p' "$TMP/peer.log")"
else
	echo "FAIL: virtio-peer"
	sed 's/^/    /' "$TMP/peer.log" "$TMP/relay.log"
	fails=$((fails + 1))
fi

if [ $fails -ne 0 ]; then
	echo "qemu-test-microvm: $fails FAILED"
	exit 1
fi
echo "qemu-test-microvm: ok"
