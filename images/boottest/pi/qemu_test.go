//go:build !tamago

package main

// TestQEMUPi boots the pi boot test image under QEMU and checks it: the
// exit code through semihosting (0, then 3), then the link UART echo over
// a QEMU chardev socket on 127.0.0.1, measuring round-trip time and
// throughput from this side. It runs only with OURO_QEMU_TEST=1 and
// PI_ELF=<image> (mk/pi.mk's qemu-test-pi sets both); PI_QEMU is the
// machine part of the QEMU command line (default raspi2b), PI_FIGURES a
// file to append the figures to.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const qemuTimeout = 90 * time.Second

func qemuArgs(t *testing.T) (elf string, cmd []string) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: set OURO_QEMU_TEST=1 and PI_ELF (make qemu-test-pi)")
	}
	elf = os.Getenv("PI_ELF")
	if elf == "" {
		t.Skip("SKIP: PI_ELF not set")
	}
	q := os.Getenv("PI_QEMU")
	if q == "" {
		q = "qemu-system-arm -machine raspi2b"
	}
	if _, err := exec.LookPath(strings.Fields(q)[0]); err != nil {
		t.Skipf("SKIP: %v", err)
	}
	return elf, append(strings.Fields(q), "-nographic", "-monitor", "none")
}

// console collects the guest's console and lets a test wait for a line.
type console struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
	done  chan struct{} // closed at the end of the output
}

func (c *console) run(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		c.mu.Lock()
		c.buf.WriteString(s.Text() + "\n")
		c.mu.Unlock()
		select {
		case c.lines <- s.Text():
		default:
		}
	}
	close(c.lines)
	close(c.done)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *console) waitFor(prefix string, d time.Duration) error {
	deadline := time.After(d)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return errors.New("console closed")
			}
			if strings.HasPrefix(l, prefix) {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no %q line within %v", prefix, d)
		}
	}
}

// boot starts QEMU with the given link serial and semihosting words; the
// console is QEMU's first -serial.
func boot(t *testing.T, elf string, base []string, link string, words ...string) (*exec.Cmd, *console) {
	ctx, cancel := context.WithTimeout(context.Background(), qemuTimeout)
	t.Cleanup(cancel)
	semi := "enable=on,target=native,arg=pi"
	for _, w := range words {
		semi += ",arg=" + w
	}
	args := append(slices.Clone(base[1:]), "-serial", "stdio")
	args = append(args, strings.Fields(link)...)
	args = append(args, "-semihosting-config", semi, "-kernel", elf)
	cmd := exec.CommandContext(ctx, base[0], args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &console{lines: make(chan string, 256), done: make(chan struct{})}
	go c.run(out)
	return cmd, c
}

// exitCode waits for QEMU to end; the console must be read to its end
// first (Wait closes the pipe).
func exitCode(cmd *exec.Cmd, c *console) int {
	<-c.done
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestQEMUPi(t *testing.T) {
	elf, base := qemuArgs(t)
	var figures []string

	for _, tc := range []struct {
		name  string
		words []string
		want  int
	}{
		{"boot", nil, 0},
		{"exit-code", []string{"exit=3"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			cmd, c := boot(t, elf, base, "-serial null", tc.words...)
			got := exitCode(cmd, c)
			if got != tc.want || !strings.Contains(c.String(), "boottest: PASS") {
				t.Fatalf("exit %d, want %d; console:\n%s", got, tc.want, c)
			}
			if tc.name == "boot" {
				figures = append(figures, fmt.Sprintf("boot test, QEMU start to exit: %v", time.Since(start).Round(10*time.Millisecond)))
				for _, l := range strings.Split(c.String(), "\n") {
					if strings.HasPrefix(l, "ouro boottest:") || strings.HasPrefix(l, "boottest: slept") {
						figures = append(figures, l)
					}
				}
			}
		})
	}

	t.Run("uart-echo", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		link := fmt.Sprintf("-chardev socket,id=link,host=127.0.0.1,port=%d,server=off,nodelay=on -serial chardev:link", port)
		cmd, c := boot(t, elf, base, link, "echo=60")
		defer cmd.Process.Kill()

		ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
		conn, err := ln.Accept()
		if err != nil {
			t.Fatalf("QEMU did not connect its link UART: %v\n%s", err, c)
		}
		defer conn.Close()
		if err := c.waitFor("boottest: echo on", 30*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, c)
		}
		conn.SetDeadline(time.Now().Add(60 * time.Second))

		// round trip of one byte, 200 times
		rtts := make([]time.Duration, 0, 200)
		b := []byte{0}
		for i := range cap(rtts) {
			b[0] = byte('a' + i%26)
			t0 := time.Now()
			if _, err := conn.Write(b); err != nil {
				t.Fatal(err)
			}
			var r [1]byte
			if _, err := io.ReadFull(conn, r[:]); err != nil {
				t.Fatalf("rtt %d: %v\n%s", i, err, c)
			}
			rtts = append(rtts, time.Since(t0))
			if r[0] != b[0] {
				t.Fatalf("rtt %d: got %q, want %q", i, r[0], b[0])
			}
		}
		slices.Sort(rtts)

		// throughput: 64 KiB out while reading the echo back
		const size = 64 << 10
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + i>>8)
		}
		t0 := time.Now()
		werr := make(chan error, 1)
		go func() {
			_, err := conn.Write(data)
			werr <- err
		}()
		got := make([]byte, size)
		if _, err := io.ReadFull(conn, got); err != nil {
			t.Fatalf("throughput: %v\n%s", err, c)
		}
		el := time.Since(t0)
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("throughput: echoed bytes differ")
		}

		if _, err := conn.Write([]byte("\nquit\n")); err != nil {
			t.Fatal(err)
		}
		if code := exitCode(cmd, c); code != 0 || !strings.Contains(c.String(), "boottest: PASS") {
			t.Fatalf("exit %d, want 0; console:\n%s", code, c)
		}
		figures = append(figures,
			fmt.Sprintf("link UART echo, 1-byte RTT over %d: min %v median %v p90 %v max %v", len(rtts),
				rtts[0].Round(time.Microsecond), rtts[len(rtts)/2].Round(time.Microsecond),
				rtts[len(rtts)*9/10].Round(time.Microsecond), rtts[len(rtts)-1].Round(time.Microsecond)),
			fmt.Sprintf("link UART echo, %d KiB each way: %v, %.1f KiB/s", size>>10, el.Round(time.Millisecond), float64(size)/1024/el.Seconds()))
		for _, l := range strings.Split(c.String(), "\n") {
			if strings.HasPrefix(l, "boottest: echo done") {
				figures = append(figures, l)
			}
		}
	})

	for _, f := range figures {
		t.Log(f)
	}
	if p := os.Getenv("PI_FIGURES"); p != "" {
		fh, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(fh, "# %s, %s\n%s\n", elf, strings.Join(base, " "), strings.Join(figures, "\n"))
			fh.Close()
		}
	}
}
