#!/bin/sh
# boottest.sh — run images/boottest under QEMU and check its exit codes and
# its ENET echo against tools/qemu/enetpeer (see docs/boards.md).
#
# Environment: ELF (the boottest image), QEMU_CMD (machine and serial
# options, without -kernel), ENETPEER (default bin/enetpeer), TIMEOUT.
# Every QEMU run is wrapped in timeout: a guest without semihosting never
# exits. Sockets bind 127.0.0.1 only.
set -u

: "${ELF:?ELF=path to the boottest image}"
: "${QEMU_CMD:?QEMU_CMD=qemu-system-arm ...}"
ENETPEER=${ENETPEER:-bin/enetpeer}
TIMEOUT=${TIMEOUT:-60}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

semi() { echo "-semihosting-config enable=on,target=native,arg=boottest$1"; }

# expect CODE NAME QEMU-ARGS...
expect() {
	want=$1 name=$2
	shift 2
	# shellcheck disable=SC2086
	timeout "$TIMEOUT" $QEMU_CMD "$@" -kernel "$ELF" >"$TMP/$name.log" 2>&1 </dev/null
	got=$?
	if [ "$got" -eq "$want" ] && grep -q '^boottest: PASS' "$TMP/$name.log"; then
		echo "PASS: $name (exit $got)"
	else
		echo "FAIL: $name: exit $got, want $want"
		sed 's/^/    /' "$TMP/$name.log"
		fails=$((fails + 1))
	fi
}

# shellcheck disable=SC2046
expect 0 boot -net none $(semi "")
# shellcheck disable=SC2046
expect 3 exit-code -net none $(semi ",arg=exit=3")

# ENET: the guest echoes, enetpeer checks every frame
"$ENETPEER" -portfile "$TMP/port" -guest 02:00:00:00:00:01 -n 2000 -timeout "${TIMEOUT}s" >"$TMP/peer.log" 2>&1 &
peer=$!
i=0
while [ ! -s "$TMP/port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
port=$(cat "$TMP/port" 2>/dev/null)
# shellcheck disable=SC2046
expect 0 enet-echo -nic "socket,model=imx.enet,connect=127.0.0.1:$port,mac=02:00:00:00:00:01" $(semi ",arg=echo=$TIMEOUT")
if wait $peer; then
	echo "PASS: enet-peer: $(sed -n 's/.*enetpeer: PASS: //p' "$TMP/peer.log")"
else
	echo "FAIL: enet-peer"
	sed 's/^/    /' "$TMP/peer.log"
	fails=$((fails + 1))
fi

if [ $fails -ne 0 ]; then
	echo "qemu-test: $fails FAILED"
	exit 1
fi
echo "qemu-test: ok"
