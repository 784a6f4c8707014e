//go:build tamago && arm && (pi2 || pizero || pi1)

// Command pi is the bare-metal boot test for board/raspberrypi (the
// Raspberry Pi 2, Zero and 1, and QEMU's raspi2b and raspi0): it prints a
// banner with the board and the kind of unique key, exercises the
// hardware RNG, idles for a second in WFI, optionally echoes the link UART,
// and exits with the requested code (semihosting under QEMU).
//
// Under QEMU it reads its arguments from semihosting
// (-semihosting-config enable=on,target=native,arg=pi,arg=WORD...):
//
//	exit=N        exit with code N instead of 0 (proves codes propagate)
//	echo=SECONDS  echo every byte the link UART (QEMU's second -serial)
//	              receives, for up to SECONDS or until the line "quit"
//
// Every run ends with the line "boottest: PASS ..." or "boottest: FAIL
// ...", then raspberrypi.ExitMarker and the code: a harness without
// semihosting checks those lines.
package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ouronet/ouro/board/raspberrypi"
)

func main() {
	start := time.Now()
	b := &raspberrypi.Board{}
	if err := b.Init(); err != nil {
		fail("board init: %v", err)
	}
	args := map[string]string{}
	for _, w := range b.Args() {
		if k, v, ok := strings.Cut(w, "="); ok {
			args[k] = v
		}
	}

	fmt.Printf("ouro boottest: board=%q serial=%016x key=%q entropy=%q uptime=%v\n",
		b.Name(), b.Serial(), b.UniqueKeyKind(), b.EntropySource(),
		time.Duration(time.Now().UnixNano()).Round(time.Microsecond))

	checkEntropy(b)
	checkKey(b)
	checkIdle(b)

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
	raspberrypi.Exit(code)
}

func fail(format string, a ...any) {
	fmt.Printf("boottest: FAIL: "+format+"\n", a...)
	raspberrypi.Exit(1)
}

func checkEntropy(b *raspberrypi.Board) {
	var x, y [32]byte
	t := time.Now()
	if _, err := io.ReadFull(b.Entropy(), x[:]); err != nil {
		fail("entropy: %v", err)
	}
	if _, err := io.ReadFull(b.Entropy(), y[:]); err != nil {
		fail("entropy: %v", err)
	}
	if x == y || x == [32]byte{} {
		fail("entropy: repeated or zero output %x", x)
	}
	fmt.Printf("boottest: entropy ok %x... (64 bytes in %v)\n", x[:8], time.Since(t))
}

func checkKey(b *raspberrypi.Board) {
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
// in WFI.
func checkIdle(b *raspberrypi.Board) {
	w0, a0 := b.IdleStats()
	t := time.Now()
	time.Sleep(time.Second)
	slept := time.Since(t)
	w1, a1 := b.IdleStats()
	asleep := a1 - a0
	fmt.Printf("boottest: slept %v, in WFI %v over %d wake-ups\n", slept.Round(time.Millisecond), asleep.Round(time.Millisecond), w1-w0)
	if slept < time.Second || slept > 2*time.Second {
		fail("idle: slept %v for 1s", slept)
	}
	if asleep < slept*9/10 {
		fail("idle: only %v of %v in WFI", asleep, slept)
	}
}

// echo writes back every byte the link UART receives until a line "quit"
// or the time limit.
func echo(b *raspberrypi.Board, limit time.Duration) {
	u := b.LinkUART()
	fmt.Printf("boottest: echo on the %s for up to %v\n", u.Name(), limit)
	u.SetReadDeadline(time.Now().Add(limit))
	buf := make([]byte, 512)
	var tail []byte
	for {
		n, err := u.Read(buf)
		if err != nil {
			fmt.Printf("boottest: echo: %v\n", err)
			break
		}
		if _, err := u.Write(buf[:n]); err != nil {
			fail("echo: write: %v", err)
		}
		tail = append(tail, buf[:n]...)
		if len(tail) > 16 {
			tail = tail[len(tail)-16:]
		}
		if bytes.HasSuffix(tail, []byte("\nquit\n")) {
			break
		}
	}
	s := u.Stats()
	fmt.Printf("boottest: echo done: rx %d bytes, tx %d bytes, %d interrupts, %d overruns, %d stalls\n",
		s.RxBytes, s.TxBytes, s.Interrupts, s.RxOverruns, s.RxStalls)
	if s.RxOverruns != 0 {
		fail("echo: %d overruns", s.RxOverruns)
	}
}
