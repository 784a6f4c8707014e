//go:build tamago && (arm || amd64)

// Command boottest is the bare-metal boot test for board/usbarmory and
// board/qemu/microvm (board_arm.go, board_amd64.go): it
// prints a banner with the board and the kind of unique key, exercises the
// entropy source, idles for a second in WFI, optionally echoes Ethernet
// frames, and exits through semihosting with the requested code.
//
// Under QEMU it reads its arguments from semihosting
// (-semihosting-config enable=on,arg=boottest,arg=WORD...):
//
//	exit=N        exit with code N instead of 0 (proves codes propagate)
//	echo=SECONDS  initialise the NIC and echo every received frame back to
//	              its sender for up to SECONDS, or until a frame of
//	              EtherType 0x88b6 with payload "quit" arrives
//
// On a real board there are no arguments: it runs the checks and halts.
// On QEMU microvm the words come from fw_cfg (-fw_cfg
// name=opt/ouro/args,string="exit=3 echo=20") and QEMU's exit status is
// (code<<1)|1 (isa-debug-exit); see docs/boards-microvm.md.
package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// echoType is the IEEE 802 local experimental EtherType 2, used by the echo
// test and its host peer (tools/qemu/enetpeer).
const echoType = 0x88b6

func main() {
	start := time.Now()
	b := &board{}

	if err := b.Init(); err != nil {
		fail("board init: %v", err)
	}

	args := parseArgs(b.Args())
	kind := b.UniqueKeyKind()

	fmt.Printf("ouro boottest: board=%q key=%q entropy=%q uptime=%v\n",
		b.Name(), kind, b.EntropySource(), time.Duration(time.Now().UnixNano()))

	checkEntropy(b)
	checkKey(b)
	checkIdle(b)
	boardReady(b)

	if s, ok := args["echo"]; ok {
		secs, err := strconv.Atoi(s)
		if err != nil {
			fail("echo=%q: %v", s, err)
		}
		echo(b, time.Duration(secs)*time.Second)
	}

	code := 0
	if s, ok := args["exit"]; ok {
		var err error
		if code, err = strconv.Atoi(s); err != nil {
			fail("exit=%q: %v", s, err)
		}
	}

	fmt.Printf("boottest: PASS in %v, exiting with code %d\n", time.Since(start).Round(time.Millisecond), code)
	exit(code)
}

func parseArgs(words []string) map[string]string {
	m := map[string]string{}
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok {
			m[k] = v
		}
	}
	return m
}

func fail(format string, a ...any) {
	fmt.Printf("boottest: FAIL: "+format+"\n", a...)
	exit(1)
}

func checkEntropy(b *board) {
	var x, y [32]byte

	if _, err := io.ReadFull(b.Entropy(), x[:]); err != nil {
		fail("entropy: %v", err)
	}
	if _, err := io.ReadFull(b.Entropy(), y[:]); err != nil {
		fail("entropy: %v", err)
	}
	if x == y || x == [32]byte{} {
		fail("entropy: repeated or zero output %x", x)
	}

	fmt.Printf("boottest: entropy ok %x...\n", x[:8])
}

func checkKey(b *board) {
	k1, kind, err := b.UniqueKey([]byte("ouro boottest"))
	if err != nil {
		fmt.Printf("boottest: unique key: %v (kind %v)\n", err, kind)
		return
	}

	k2, _, _ := b.UniqueKey([]byte("ouro boottest"))
	k3, _, _ := b.UniqueKey([]byte("ouro boottest 2"))
	if k1 != k2 || k1 == k3 {
		fail("unique key: not deterministic or not diversified")
	}

	id := sha256.Sum256(k1[:])
	fmt.Printf("boottest: unique key ok kind=%q secret=%v fingerprint=%x\n", kind, kind.Secret(), id[:8])
}

// checkIdle sleeps for a second and reports how much of it the core spent
// asleep (WFI on ARM, HLT on x86).
func checkIdle(b *board) {
	w0, a0 := b.IdleStats()
	t := time.Now()

	time.Sleep(time.Second)

	slept := time.Since(t)
	w1, a1 := b.IdleStats()
	asleep := a1 - a0

	fmt.Printf("boottest: slept %v, in %s %v over %d wake-ups\n", slept.Round(time.Millisecond), sleepInsn, asleep.Round(time.Millisecond), w1-w0)

	if slept < time.Second || slept > 2*time.Second {
		fail("idle: slept %v for 1s", slept)
	}
	// A core that spins while idle spends none of the sleep in WFI/HLT;
	// one that idles properly spends nearly all of it there on a quiet
	// host (999 ms of 1.002 s), but a loaded host that holds the emulator
	// off its CPU stretches the sleep with time the guest spends
	// neither asleep nor working (CI once saw 1.13 s of 1.40 s). Half
	// tells the two apart without timing the host.
	if asleep < slept/2 {
		fail("idle: only %v of %v in %s", asleep, slept, sleepInsn)
	}
}

// echo reflects frames back to their senders until quit or timeout.
func echo(b *board, limit time.Duration) {
	nic, err := b.NIC()
	if err != nil {
		fail("nic: %v", err)
	}
	if err := nic.Init(); err != nil {
		fail("nic init: %v", err)
	}

	fmt.Printf("boottest: echo on %v for up to %v\n", nic.HardwareAddr(), limit)

	// tamago's own Tx drops these silently; ours must refuse them
	if n, err := nic.Transmit([][]byte{make([]byte, maxFrameLen+1)}); n != 0 || !errors.Is(err, errFrameTooLong) {
		fail("transmit of %d bytes: queued %d, err %v", maxFrameLen+1, n, err)
	}

	frames := make([][]byte, 16)
	sizes := make([]int, len(frames))
	for i := range frames {
		frames[i] = make([]byte, maxFrameLen)
	}
	out := make([][]byte, 0, len(frames))

	done := make(chan struct{})
	go func() {
		time.Sleep(limit)
		close(done)
		nic.Close()
	}()

	for {
		n, err := nic.Receive(frames, sizes)
		if err != nil {
			break
		}

		out = out[:0]
		quit := false

		for i := 0; i < n; i++ {
			f := frames[i][:sizes[i]]
			if len(f) >= 18 && f[12] == echoType>>8 && f[13] == echoType&0xff && bytes.HasPrefix(f[14:], []byte("quit")) {
				quit = true
				continue
			}
			// swap destination and source
			var dst [6]byte
			copy(dst[:], f[0:6])
			copy(f[0:6], f[6:12])
			copy(f[6:12], dst[:])
			out = append(out, f)
		}

		if len(out) > 0 {
			if _, err := nic.Transmit(out); err != nil {
				fmt.Printf("boottest: transmit: %v\n", err)
			}
		}

		if quit {
			break
		}
	}

	s := nic.Stats()
	fmt.Printf("boottest: echo done: rx %d frames %d bytes, tx %d frames %d bytes, filtered %d, rx errors %d, tx too long %d, tx ring full %d\n",
		s.RxFrames, s.RxBytes, s.TxFrames, s.TxBytes, s.RxFiltered, s.RxErrors, s.TxTooLong, s.TxRingFull)

	if s.TxTooLong != 1 {
		fail("echo: tx too long counted %d, want 1", s.TxTooLong)
	}
	if s.RxErrors != 0 {
		fail("echo: %d receive errors", s.RxErrors)
	}

}
