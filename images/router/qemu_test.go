//go:build linux

package main

// The bare-metal router under QEMU, wired to hosted nodes in this process.
//
// TestQEMU builds the router image with the TamaGo toolchain (config
// embedded, as mk/tamago.mk does), boots it on QEMU's mcimx6ul-evk with its
// ENET on a QEMU socket stream to 127.0.0.1, and from a hosted node in this
// process allocates flows to the VM's echo app: over the Ethernet shim, and
// over the UDP shim on both sides' netstacks (127.0.10.0/24). Each path
// runs ping (RTT) and perf (echo throughput), then the same traffic against
// a hosted node in the VM's place, and ends the VM through its halt app,
// checking QEMU's exit code (semihosting SYS_EXIT_EXTENDED).
//
// It runs only with OURO_QEMU_TEST=1 (make qemu-test) and skips with a
// "SKIP:" message when the toolchain or qemu-system-arm is missing.
// OURO_QEMU_FIGURES=FILE appends the figures as text lines.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/images/internal/qemutest"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/tools/qemu/hub"
)

// vmConfig is the VM's embedded configuration: the Ethernet shim and a
// netstack-backed UDP shim share the board NIC; echo and halt apps.
// devEth and devNS are the device lines; a hosted node in the VM's place
// uses the same text with QEMU streams instead of the board.
const vmConfig = `
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
%s

[[ipcp]]
kind = "udp"
layer = "ip"
[ipcp.udp]
addr = "127.0.10.2:3435"
[ipcp.udp.netstack]
addrs = ["127.0.10.2/24"]
%s

[[app]]
kind = "echo"
[[app]]
kind = "perf"
[[app]]
kind = "halt"
`

// haltCode is what the test asks the VM to exit with: neither 0 nor a
// panic's 2 nor the watchdog's 3.
const haltCode = 42

// Figures of one run.
type figures struct {
	path            string
	pings, pingLost int
	rttMin, rttAvg  time.Duration
	rttP50, rttMax  time.Duration
	perfSDUs, sent  uint64
	perfBytes       uint64
	perfSpan        time.Duration
	sduSize, window int
}

func (f figures) mbps() float64 { return float64(f.perfBytes*8) / f.perfSpan.Seconds() / 1e6 }

func (f figures) String() string {
	lost := ""
	if f.pingLost > 0 {
		lost = fmt.Sprintf(" (%d lost)", f.pingLost)
	}
	return fmt.Sprintf("%-18s ping n=%d%s rtt min/avg/p50/max %v/%v/%v/%v; perf %d-byte SDUs window %d: %d/%d echoed in %v = %.2f Mbit/s, %.0f SDU/s",
		f.path, f.pings, lost, f.rttMin, f.rttAvg, f.rttP50, f.rttMax, f.sduSize, f.window, f.perfSDUs, f.sent,
		f.perfSpan.Round(time.Millisecond), f.mbps(), float64(f.perfSDUs)/f.perfSpan.Seconds())
}

func TestQEMU(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tool := findToolchain(t)
	elf := buildImage(t, tool, fmt.Sprintf(vmConfig, "board = true", "board = true"))

	paths := []struct {
		name string
		// hosted is the config of the hosted client node listening on
		// port; peer is the config of a hosted node in the VM's place
		// dialling port.
		hosted func(port int) string
		peer   func(port int) string
	}{
		{"eth", func(port int) string {
			return fmt.Sprintf("[node]\nname = \"host\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nqemu_listen = \"127.0.0.1:%d\"\n", port)
		}, func(port int) string {
			// the UDP shim's stream goes nowhere: a listener nobody dials
			return "[node]\nname = \"peer\"\n" + fmt.Sprintf(vmConfig,
				fmt.Sprintf("qemu_connect = \"127.0.0.1:%d\"", port), "qemu_listen = \"127.0.0.1:0\"")
		}},
		{"udp-netstack", func(port int) string {
			return fmt.Sprintf(`[node]
name = "host"
[[ipcp]]
kind = "udp"
layer = "ip"
[ipcp.udp]
addr = "127.0.10.1:3435"
dir = { echo = "127.0.10.2:3435", halt = "127.0.10.2:3435" }
[ipcp.udp.netstack]
addrs = ["127.0.10.1/24"]
qemu_listen = "127.0.0.1:%d"
`, port)
		}, func(port int) string {
			return "[node]\nname = \"peer\"\n" + fmt.Sprintf(vmConfig,
				"qemu_listen = \"127.0.0.1:0\"", fmt.Sprintf("qemu_connect = \"127.0.0.1:%d\"", port))
		}},
	}
	var all []figures
	var perfLines []string // ouro perf against the VM's perf app
	for _, p := range paths {
		t.Run(p.name+"/vm", func(t *testing.T) {
			port := freePort(t)
			client := startHosted(t, p.hosted(port), nil)
			vm := bootVM(t, elf, "vm", fmt.Sprintf("socket,model=imx.enet,connect=127.0.0.1:%d,mac=02:00:00:00:00:02", port))
			vm.checkIdentity(t, "vm", elf)
			f := exercise(t, client, p.name+" to VM")
			if p.name == "eth" {
				perfLines = perfApp2(t, client, "armory VM", 4000)
			}
			all = append(all, f)
			halt(t, client)
			if code := vm.wait(t, 20*time.Second); code != haltCode {
				t.Fatalf("VM exit code %d, want %d (halt)", code, haltCode)
			}
		})
		t.Run(p.name+"/hosted", func(t *testing.T) {
			port := freePort(t)
			client := startHosted(t, p.hosted(port), nil)
			halted := make(chan int, 1)
			startHosted(t, p.peer(port), func(code int) { halted <- code })
			all = append(all, exercise(t, client, p.name+" to hosted"))
			if p.name == "eth" { // the baseline of the VM's perf figures
				perfLines = append(perfLines, perfApp2(t, client, "hosted peer", 4000)...)
			}
			halt(t, client)
			select {
			case code := <-halted:
				if code != haltCode {
					t.Fatalf("halt code %d, want %d", code, haltCode)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("hosted peer did not halt")
			}
		})
	}
	// Two hosted nodes on the VM's one segment through a QEMU hub, each in
	// its own layer (eth shim / UDP shim on netstack): both reach the
	// VM's echo at once. A - VM - B flows need a unicast layer over both
	// shims in the VM (TODO when layer/unicast lands: enroll A and B
	// through the VM and allocate from A to an echo on B).
	t.Run("hub/eth+udp", func(t *testing.T) {
		pa, pb := freePort(t), freePort(t)
		a := startHosted(t, paths[0].hosted(pa), nil)
		b := startHosted(t, paths[1].hosted(pb), nil)
		vm := bootVMNet(t, elf, "vm", hubNet("02:00:00:00:00:02", pa, pb)...)
		// baseline for the unicast subtests' idle figure: no unicast layer
		t.Logf("eth+udp hub: QEMU idle (eth and UDP shims, no unicast layer): %.1f%% of a host core over 2s", vm.idleCPU(2*time.Second))
		var wg sync.WaitGroup
		for i, br := range []*irm.Broker{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := alloc(t, br, "echo")
				defer p.Close()
				buf := make([]byte, flow.MaxSDU)
				for j := 0; j < 100; j++ {
					msg := []byte(fmt.Sprintf("node %d sdu %d", i, j))
					if err := p.Write(msg, time.Now().Add(2*time.Second)); err != nil {
						t.Errorf("node %d: write: %v", i, err)
						return
					}
					n, err := p.Read(buf, time.Now().Add(2*time.Second))
					if err != nil || string(buf[:n]) != string(msg) {
						t.Errorf("node %d: echo %d: %q, %v", i, j, buf[:n], err)
						return
					}
				}
			}()
		}
		wg.Wait()
		halt(t, b)
		if code := vm.wait(t, 20*time.Second); code != haltCode {
			t.Fatalf("VM exit code %d, want %d (halt)", code, haltCode)
		}
	})

	// A - VM - B through a unicast layer: A and B each reach only the VM
	// (hub streams), the VM bootstraps layer "uni" over both its shims,
	// A and B enroll through it, and A's flow to an echo on B is forwarded
	// by the VM at the unicast layer. The same with a hosted node in the
	// VM's place gives the ratio.
	uniElf := buildImage(t, tool, uniVMConfig("board = true", "board = true"))
	all = append(all, uniSubtests(t, "VM", func(t *testing.T, pa, pb int) *vm {
		return bootVMNet(t, uniElf, "vm", hubNet("02:00:00:00:00:02", pa, pb)...)
	}, haltCode)...)

	var lines []string
	for _, f := range all {
		lines = append(lines, f.String())
		t.Log(f)
	}
	lines = append(lines, perfLines...)
	if out := os.Getenv("OURO_QEMU_FIGURES"); out != "" {
		fh, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(fh, "%s image %s\n", time.Now().Format(time.RFC3339), elfSize(elf))
			for _, l := range lines {
				fmt.Fprintln(fh, l)
			}
			fh.Close()
		}
	}
}

// toolchain is how to run the TamaGo build.
type toolchain struct{ tamago string }

// findToolchain locates the tamago command and QEMU or skips.
func findToolchain(t *testing.T) toolchain {
	t.Helper()
	return toolchain{tamago: qemutest.Tamago(t, "qemu-system-arm", "qemu-system-arm")}
}

// buildImage builds images/router for the USB armory with cfg embedded
// (mk/tamago.mk's command line, and its stripping) and returns the ELF's
// path.
func buildImage(t *testing.T, tc toolchain, cfg string) string {
	t.Helper()
	return buildImageTags(t, tc, cfg, "usbarmory")
}

// buildImageTags is buildImage with the given build tags (e.g.
// "usbarmory,faultinject").
func buildImageTags(t *testing.T, tc toolchain, cfg, tags string) string {
	t.Helper()
	elf := filepath.Join(t.TempDir(), "router-usbarmory.elf")
	ld := "-T 0x80010000 -R 0x1000 -w -X main.config=" + base64.StdEncoding.EncodeToString([]byte(cfg))
	cmd := exec.Command("nice", boardBuild(tc.tamago, tags+configTags(t, cfg), ld, elf)...)
	cmd.Env = append(os.Environ(), "GOOS=tamago", "GOOSPKG=github.com/usbarmory/tamago", "GOARCH=arm", "GOARM=7")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tamago build: %v\n%s", err, out)
	}
	if err := stripImage(elf, ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %v", elfSize(elf), time.Since(start).Round(100*time.Millisecond))
	return elf
}

// boardBuild is the command line (after "nice") that builds a board
// image as make image does: with tags, the linker flags ld, into elf.
// $OURO_BOARD_GCFLAGS, if set, are mk/tamago.mk's TAMAGO_GCFLAGS (for
// example make SMALL=1's "-gcflags=all=-l"), to compare builds.
func boardBuild(tamago, tags, ld, elf string) []string {
	args := []string{tamago, "build", "-trimpath", "-tags", tags}
	args = append(args, strings.Fields(os.Getenv("OURO_BOARD_GCFLAGS"))...)
	return append(args, "-ldflags", ld, "-o", elf, ".")
}

// configTags returns ",TAG..." for the build tags a board image needs for
// cfg (router -image-tags, as make image adds them), or "".
func configTags(t *testing.T, cfg string) string {
	t.Helper()
	c, err := node.ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatalf("image configuration: %v", err)
	}
	if tags := imageTags(c); len(tags) > 0 {
		return "," + strings.Join(tags, ",")
	}
	return ""
}

// stripImage strips elf as make image does (tools/qemu/stripelf.sh, with
// objcopy as OBJCOPY; "" is the script's default, for ARM), so that the
// tests boot and measure what make builds.
func stripImage(elf, objcopy string) error {
	cmd := exec.Command("../../tools/qemu/stripelf.sh", elf)
	if objcopy != "" {
		cmd.Env = append(os.Environ(), "OBJCOPY="+objcopy)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stripelf.sh %s: %v\n%s", elf, err, out)
	}
	return nil
}

func elfSize(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return path
	}
	return fmt.Sprintf("%s (%d bytes)", filepath.Base(path), st.Size())
}

func freePort(t *testing.T) int {
	t.Helper()
	// Below Linux's ephemeral range (32768-60999 by default): a port the
	// kernel chose for us would be free to be chosen again as the local
	// port of any connect() until the node that is to listen on it binds
	// it, and a listener's bind then fails. One from this range is only
	// ever taken by a bind, which this check makes.
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free TCP port on 127.0.0.1 in 20000-31999")
	return 0
}

// vm is a running QEMU guest.
type vm struct {
	cmd     *exec.Cmd
	mu      sync.Mutex // guards console
	console []string
	ready   chan time.Duration // wall time from start to the ready line
	done    chan struct{}
	code    int
}

// bootVM starts the image under timeout with nic as its first -nic and
// waits for "ouro node NAME ready". The console goes to the test log when
// the test ends.
func bootVM(t *testing.T, elf, name, nic string) *vm {
	t.Helper()
	return bootVMNet(t, elf, name, "-nic", nic)
}

// hubNet wires the VM's ENET to a QEMU hub with one socket stream per
// port (connecting to hosted nodes listening on 127.0.0.1): several
// hosted nodes share the VM's single Ethernet segment, each on a layer of
// its own (e.g. one on the eth shim, one on the UDP shim), so that the VM
// is the only node in both (the A - VM - B topology).
func hubNet(mac string, ports ...int) []string {
	args := []string{"-net", "nic,model=imx.enet,macaddr=" + mac}
	for _, p := range ports {
		args = append(args, "-net", fmt.Sprintf("socket,connect=127.0.0.1:%d", p))
	}
	return args
}

// bootVMNet is bootVM with arbitrary QEMU network arguments.
func bootVMNet(t *testing.T, elf, name string, netArgs ...string) *vm {
	t.Helper()
	v := &vm{ready: make(chan time.Duration, 1), done: make(chan struct{})}
	v.cmd = exec.Command("timeout", "120", "qemu-system-arm", "-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
		"-nographic", "-monitor", "none", "-serial", "null", "-serial", "stdio")
	v.cmd.Args = append(v.cmd.Args, netArgs...)
	v.cmd.Args = append(v.cmd.Args,
		"-semihosting-config", "enable=on,target=native,arg=router,arg=name="+name+",arg=exit-after=90s",
		"-kernel", elf)
	startVM(t, v, name)
	return v
}

// startVM starts v's QEMU command, keeps its console, and waits until the
// guest prints "ouro node NAME ready"; the VM is stopped (and its console
// logged) when the test ends. Every board's boot function uses it.
func startVM(t *testing.T, v *vm, name string) {
	t.Helper()
	mon := addMonitor(t, v.cmd)
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	start := time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l := strings.TrimRight(sc.Text(), "\r")
			v.mu.Lock()
			v.console = append(v.console, l)
			v.mu.Unlock()
			if strings.HasPrefix(l, "ouro node "+name+" ready") {
				v.ready <- time.Since(start)
			}
		}
		err := v.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			v.code = ee.ExitCode()
		} else if err != nil {
			v.code = -1
		}
		close(v.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("VM monitor (a hung guest's state):\n%s", dumpMonitor(mon))
		}
		v.stop()
		v.mu.Lock()
		defer v.mu.Unlock()
		t.Logf("VM console:\n    %s", strings.Join(v.console, "\n    "))
	})
	select {
	case d := <-v.ready:
		t.Logf("VM ready %v after starting qemu", d.Round(time.Millisecond))
	case <-v.done:
		// the console's end in the failure itself: a CI log may show
		// only the lines around it
		v.mu.Lock()
		tail := v.console[max(0, len(v.console)-15):]
		v.mu.Unlock()
		t.Fatalf("VM exited (status %d) before ready %v after starting qemu; console ends:\n    %s",
			v.code, time.Since(start).Round(time.Millisecond), strings.Join(tail, "\n    "))
	case <-time.After(60 * time.Second):
		t.Fatal("VM not ready in 60s")
	}
}

// stop ends the VM if it still runs: SIGTERM to timeout, which passes it
// on to QEMU (a SIGKILL would leave QEMU running, holding the console
// pipe, until its exit-after watchdog), then SIGKILL after 5 s.
func (v *vm) stop() {
	select {
	case <-v.done:
		return
	default:
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(5 * time.Second):
		v.cmd.Process.Kill()
		<-v.done
	}
}

// checkIdentity checks what the booted image says of itself: the
// measurement it took of its loaded code and read-only data is the one
// the host computes from the ELF file (ouro measure), and its identity
// key is the one derived from the board's unique key.
func (v *vm) checkIdentity(t *testing.T, name, elf string) {
	t.Helper()
	want, err := identity.MeasureELF(elf)
	if err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	console := strings.Join(v.console, "\n")
	v.mu.Unlock()
	line := fmt.Sprintf("ouro node %s: measurement %s", name, want)
	if !strings.Contains(console, line) {
		t.Fatalf("the image did not report the host's measurement %q", line)
	}
	if !strings.Contains(console, "ouro node "+name+": id ") {
		t.Fatal("the image did not report its identity")
	}
	t.Logf("image measurement %s agrees with the host's (ouro measure)", want)
}

// wait waits for the VM to exit and returns QEMU's exit code.
func (v *vm) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-v.done:
		return v.code
	case <-time.After(d):
		t.Fatalf("VM still running after %v", d)
		return -1
	}
}

// startHosted starts a hosted node from cfg with its [[app]]s and a client
// component whose broker it returns.
func startHosted(t *testing.T, cfg string, haltFn func(int)) *irm.Broker {
	t.Helper()
	c, err := node.ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	xs, err := node.Apps(c, node.AppEnv{Halt: haltFn})
	if err != nil {
		t.Fatal(err)
	}
	brc := make(chan *irm.Broker, 1)
	xs = append(xs, node.Extra{Name: "client", Program: func(pd *kernel.PD) error {
		ep, err := pd.Slot("irm")
		if err != nil {
			return err
		}
		b, err := irm.OpenSession(pd.Context(), pd, ep, irm.SessionReq{})
		if err != nil {
			return err
		}
		brc <- b
		<-pd.Context().Done()
		return nil
	}, Mgmt: true})
	n, err := node.New(c, xs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return <-brc
}

// alloc allocates a flow to name, retrying while the peer is not there yet.
func alloc(t *testing.T, b *irm.Broker, name string) flow.Port {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		p, _, err := b.Alloc(ctx, name, flow.BestEffort())
		if err == nil {
			return p
		}
		if ctx.Err() != nil {
			t.Fatalf("alloc %s: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// exercise pings and perfs the echo app behind b's only layer.
func exercise(t *testing.T, b *irm.Broker, path string) figures {
	t.Helper()
	p := alloc(t, b, "echo")
	defer p.Close()
	return exercisePort(t, p, path)
}

// perfApp runs "ouro perf"'s client against the perf app behind b's
// layer for a second (1000-byte SDUs) at rate SDUs/s (0 floods; a report
// may wait 5 s behind what a slow link still holds), logs the figures
// and returns them as a line.
func perfApp(t *testing.T, b *irm.Broker, where string, rate float64) string {
	t.Helper()
	p := alloc(t, b, "perf")
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := probe.PerfClient(ctx, p, probe.PerfConfig{Name: "perf", Duration: time.Second, Size: 1000, Rate: rate, ReportTimeout: 5 * time.Second})
	if err != nil {
		logStats(t, b)
		t.Fatalf("perf against the %s's perf app (sent %d): %v", where, res.Sent, err)
	}
	if !res.HaveServer || res.Server.SDUs == 0 {
		t.Fatalf("perf against the %s's perf app: no data counted (%+v)", where, res)
	}
	pace := "flooding"
	if rate > 0 {
		pace = fmt.Sprintf("at %.0f SDU/s", rate)
	}
	line := fmt.Sprintf("ouro perf against the %s's perf app, 1000-byte SDUs for 1 s %s: sent %d (%.1f Mbit/s), counted %d (%.1f Mbit/s), loss %.1f%%",
		where, pace, res.Sent, res.SendBPS/1e6, res.Server.SDUs, res.RecvBPS/1e6, res.Loss)
	t.Log(line)
	return line
}

// logStats logs the counters of each IPCP of the node b belongs to, so
// that a failed exchange with a VM says in which direction SDUs went
// missing (CI once saw a perf flow to the microvm lose every report).
func logStats(t *testing.T, b *irm.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ipcps, err := ipcp.ReadAll(ctx, b.Mgmt, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil {
		t.Logf("stats: %v", err)
		return
	}
	for _, row := range ipcps.Table.RowMaps() {
		st, err := ipcp.ReadAll(ctx, b.Mgmt, ipcp.MgmtReq{Cmd: "stats", IPCP: row["name"]})
		if err != nil {
			t.Logf("stats %s: %v", row["name"], err)
			continue
		}
		var kv []string
		for _, r := range st.Table.Rows {
			if len(r) >= 2 && r[1] != "0" {
				kv = append(kv, r[0]+"="+r[1])
			}
		}
		t.Logf("stats %s (non-zero): %s", row["name"], strings.Join(kv, " "))
	}
}

// perfApp2 is perfApp's runs against a board: a flood (what the guest
// takes in) and a pace it can keep up with on this host.
func perfApp2(t *testing.T, b *irm.Broker, where string, paced float64) []string {
	t.Helper()
	return []string{perfApp(t, b, where, 0), perfApp(t, b, where, paced)}
}

// exercisePort pings and perfs the echo at the other end of p.
func exercisePort(t *testing.T, p flow.Port, path string) figures {
	t.Helper()
	f := figures{path: path, pings: 200, sduSize: 1024, window: 16}
	buf := make([]byte, flow.MaxSDU)

	// ping: one 64-byte SDU at a time, sequence in the first byte
	var rtts []time.Duration
	msg := make([]byte, 64)
	for i := 0; i < f.pings; i++ {
		msg[0] = byte(i)
		t0 := time.Now()
		if err := p.Write(msg, t0.Add(2*time.Second)); err != nil {
			t.Fatalf("ping %d: write: %v", i, err)
		}
		for {
			n, err := p.Read(buf, t0.Add(time.Second))
			if errors.Is(err, flow.ErrTimeout) {
				// a best-effort flow may lose an SDU: count it; the
				// test fails on more than 2% lost
				f.pingLost++
				t.Logf("%s: ping %d: no echo in 1s (lost)", path, i)
				break
			}
			if err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			if n == len(msg) && buf[0] == byte(i) {
				rtts = append(rtts, time.Since(t0))
				break
			}
		}
	}
	if f.pingLost > f.pings/50 || len(rtts) == 0 {
		t.Fatalf("%s: %d of %d pings lost", path, f.pingLost, f.pings)
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	var sum time.Duration
	for _, r := range rtts {
		sum += r
	}
	f.rttMin, f.rttMax, f.rttP50 = rtts[0], rtts[len(rtts)-1], rtts[len(rtts)/2]
	f.rttAvg = sum / time.Duration(len(rtts))
	for _, d := range []*time.Duration{&f.rttMin, &f.rttAvg, &f.rttP50, &f.rttMax} {
		*d = d.Round(time.Microsecond)
	}

	// perf: keep window SDUs in flight for 3 s; an echo returns a credit,
	// a lost one is written off after 200 ms
	credits := make(chan struct{}, f.window)
	for range f.window {
		credits <- struct{}{}
	}
	data := make([]byte, f.sduSize)
	stop := time.Now().Add(3 * time.Second)
	start := time.Now()
	wdone := make(chan uint64)
	go func() {
		var sent uint64
		for time.Now().Before(stop) {
			select {
			case <-credits:
			case <-time.After(200 * time.Millisecond):
			}
			if p.Write(data, time.Now().Add(time.Second)) != nil {
				break
			}
			sent++
		}
		wdone <- sent
	}()
	var last time.Time
	for {
		n, err := p.Read(buf, time.Now().Add(500*time.Millisecond))
		if err != nil {
			if time.Now().After(stop) {
				break
			}
			continue
		}
		if n == f.sduSize {
			f.perfSDUs++
			f.perfBytes += uint64(n)
			last = time.Now()
			select {
			case credits <- struct{}{}:
			default:
			}
		}
	}
	f.sent = <-wdone
	f.perfSpan = last.Sub(start)
	if f.perfSDUs == 0 {
		t.Fatalf("%s: perf: no SDU echoed", path)
	}
	return f
}

// halt asks the peer's halt app to end with haltCode.
func halt(t *testing.T, b *irm.Broker) {
	t.Helper()
	p := alloc(t, b, "halt")
	defer p.Close()
	if err := p.Write([]byte(fmt.Sprintf("halt %d", haltCode)), time.Now().Add(2*time.Second)); err != nil {
		t.Fatalf("halt: %v", err)
	}
	buf := make([]byte, 64)
	if n, err := p.Read(buf, time.Now().Add(5*time.Second)); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, flow.ErrClosed) {
		t.Logf("halt reply: %q, %v", buf[:n], err)
	}
}

// uniVMTail adds to vmConfig a unicast IPCP over both shims that
// bootstraps layer "uni": the router between A and B.
const uniVMTail = `
[[ipcp]]
kind = "unicast"
name = "vm.uni"
layer = "uni"
[ipcp.unicast]
lower = ["eth", "ip"]
bootstrap = true
admission = "open"
`

// uniVMConfig is vmConfig with the unicast layer on top.
func uniVMConfig(devEth, devNS string) string {
	return fmt.Sprintf(vmConfig, devEth, devNS) + uniVMTail
}

// uniEchoApp is B's echo, under a name only B has, so that A's flow can
// only be allocated in the unicast layer.
const uniEchoApp = "\n[[app]]\nkind = \"echo\"\nname = \"echo.b\"\n"

// uniTopologies are the shims A and B reach the router over: "eth" the
// Ethernet shim, "udp" the UDP shim on a netstack (the router's is
// 127.0.10.2). In eth+udp A and B share no layer below "uni"; in udp+udp
// they share the IP segment but neither's UDP directory names the other,
// so their only adjacencies are with the router.
var uniTopologies = []struct{ name, a, b string }{
	{"eth+udp", "eth", "udp"},
	{"udp+udp", "udp", "udp"},
}

// uniHostIP is the netstack address of hosted member name.
func uniHostIP(name string) string {
	if name == "a" {
		return "127.0.10.1"
	}
	return "127.0.10.3"
}

// uniShim is the [[ipcp]] of a shim of kind ("eth" or "udp") in its layer
// ("eth" or "ip") on a QEMU stream device (dev: qemu_listen/qemu_connect
// line); for udp, at ip, with the router (and its halt app) in the
// directory.
func uniShim(kind, ip, dev string) string {
	if kind == "eth" {
		return fmt.Sprintf("[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\n%s\n", dev)
	}
	return fmt.Sprintf(`[[ipcp]]
kind = "udp"
layer = "ip"
[ipcp.udp]
addr = "%s:3435"
dir = { "vm.uni" = "127.0.10.2:3435", halt = "127.0.10.2:3435" }
[ipcp.udp.netstack]
addrs = ["%s/24"]
%s
`, ip, ip, dev)
}

// uniLower is the layer a shim kind is in.
func uniLower(kind string) string {
	if kind == "eth" {
		return "eth"
	}
	return "ip"
}

// uniMember is the config of hosted node name: one shim of kind on a QEMU
// stream it listens on at port, a unicast IPCP NAME.uni enrolling through
// vm.uni over it, and apps. A layer's query waits at most 500 ms: the
// IRM uses the first layer in declaration order that reaches a name, so
// the Ethernet shim's unanswered broadcast query for a name only the
// unicast layer has holds each allocation attempt up for the timeout
// (default 2 s).
func uniMember(name, kind string, port int, apps string) string {
	return fmt.Sprintf("[node]\nname = %q\n[irm]\nquery_timeout = \"500ms\"\n", name) +
		uniShim(kind, uniHostIP(name), fmt.Sprintf("qemu_listen = \"127.0.0.1:%d\"", port)) +
		fmt.Sprintf(`[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = [%q]
enroll = "vm.uni"
`, name, uniLower(kind)) + apps
}

// uniPeer is the config of a hosted node in the router's place: the VM's
// configuration with QEMU streams instead of the board. When A and B both
// use the UDP shim they share one segment (the VM's NIC on a QEMU hub):
// the peer's netstack then joins an in-process hub (tools/qemu/hub)
// wired to A's and B's streams, so the topology is the VM's.
func uniPeer(t *testing.T, ka, kb string, pa, pb int) string {
	t.Helper()
	const nowhere = "qemu_listen = \"127.0.0.1:0\"" // a listener nobody dials
	connect := func(port int) string { return fmt.Sprintf("qemu_connect = \"127.0.0.1:%d\"", port) }
	cfg := "[node]\nname = \"peer\"\n"
	switch {
	case ka == "eth" && kb == "udp":
		return cfg + uniVMConfig(connect(pa), connect(pb))
	case ka == "udp" && kb == "udp":
		h := hub.New()
		t.Cleanup(func() { h.Close() })
		for _, p := range []int{pa, pb} {
			if err := h.Dial(fmt.Sprintf("127.0.0.1:%d", p), 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		addr, err := h.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return cfg + uniVMConfig(nowhere, fmt.Sprintf("qemu_connect = %q", addr))
	}
	t.Fatalf("uniPeer: topology %s+%s", ka, kb)
	return ""
}

// exerciseUni allocates a flow from a to B's echo in layer "uni", checks
// that A and B each have the router as their one neighbour (peer: the
// hosted router's broker, whose IPCP's forwarded count must cover the
// traffic; nil for the VM), and pings and perfs through it.
//
// With the VM (v), it also measures QEMU's host CPU over 2 s with the
// layer up (hellos, routing ticks, the flow's keepalives) and no traffic.
func exerciseUni(t *testing.T, a, b, peer *irm.Broker, path string, v *vm) figures {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var p flow.Port
	for {
		port, info, err := a.Alloc(ctx, "echo.b", flow.BestEffort())
		if err == nil {
			if info.Layer != "uni" {
				port.Close()
				t.Fatalf("echo.b allocated in layer %q, want uni", info.Layer)
			}
			p = port
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("alloc echo.b: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer p.Close()
	t.Logf("%s: layer up and flow A -> echo.b allocated %v after the router started", path, time.Since(start).Round(time.Millisecond))
	for _, m := range []struct {
		br   *irm.Broker
		ipcp string
	}{{a, "a.uni"}, {b, "b.uni"}} {
		if n := uniStat(t, m.br, m.ipcp, "neighbours"); n != 1 {
			t.Errorf("%s has %d neighbours, want 1 (the router)", m.ipcp, n)
		}
		if n := uniStat(t, m.br, m.ipcp, "members"); n != 3 {
			t.Errorf("%s sees %d members, want 3", m.ipcp, n)
		}
	}
	if v != nil {
		t.Logf("%s: QEMU idle with the layer up: %.1f%% of a host core over 2s", path, v.idleCPU(2*time.Second))
	}
	f := exercisePort(t, p, path)
	if peer != nil {
		if n := uniStat(t, peer, "vm.uni", "forwarded"); n < 2*f.perfSDUs {
			t.Errorf("the router forwarded %d packets, want at least %d (perf both ways)", n, 2*f.perfSDUs)
		}
	}
	if n := uniStat(t, a, "a.uni", "forwarded"); n != 0 {
		t.Errorf("a.uni forwarded %d packets, want 0", n)
	}
	return f
}

// uniStat is counter name of the unicast IPCP ipcp (its stats command).
func uniStat(t *testing.T, b *irm.Broker, proc, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: proc})
	if err != nil {
		t.Fatalf("stats of %s: %v", proc, err)
	}
	for _, row := range r.Table.Rows {
		if len(row) == 2 && row[0] == name {
			var v uint64
			fmt.Sscan(row[1], &v)
			return v
		}
	}
	t.Fatalf("stats of %s: no %q in %v", proc, name, r.Table.Rows)
	return 0
}

// cpuTicks is the CPU time (user + system, in clock ticks of 1/100 s) the
// VM's QEMU process (the child of timeout) has used so far, or -1.
func (v *vm) cpuTicks() int64 {
	pid := v.cmd.Process.Pid
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(kids))
	if len(f) == 0 {
		return -1
	}
	st, err := os.ReadFile("/proc/" + f[0] + "/stat")
	if err != nil {
		return -1
	}
	// fields after the command's closing parenthesis: state is field 3,
	// utime and stime are fields 14 and 15
	rest := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	if len(rest) < 13 {
		return -1
	}
	var u, s int64
	fmt.Sscan(rest[11], &u)
	fmt.Sscan(rest[12], &s)
	return u + s
}

// idleCPU is the share of one host core the VM's QEMU used over d while
// the test sent nothing, in percent (-1: not measurable).
func (v *vm) idleCPU(d time.Duration) float64 {
	a := v.cpuTicks()
	time.Sleep(d)
	b := v.cpuTicks()
	if a < 0 || b < 0 {
		return -1
	}
	return float64(b-a) / 100 / d.Seconds() * 100
}

// uniSubtests runs A - router - B for each of uniTopologies: with the VM
// (boot starts the router image with its NIC on a hub wired to A's and
// B's stream ports; QEMU must exit with status code after the halt), then
// with a hosted node in its place. label names the VM in the figures.
func uniSubtests(t *testing.T, label string, boot func(t *testing.T, pa, pb int) *vm, code int) []figures {
	var all []figures
	for _, top := range uniTopologies {
		t.Run("uni/"+top.name+"/"+strings.ToLower(label), func(t *testing.T) {
			pa, pb := freePort(t), freePort(t)
			a := startHosted(t, uniMember("a", top.a, pa, ""), nil)
			b := startHosted(t, uniMember("b", top.b, pb, uniEchoApp), nil)
			vm := boot(t, pa, pb)
			all = append(all, exerciseUni(t, a, b, nil, top.name+" uni A-"+label+"-B", vm))
			halt(t, a)
			if got := vm.wait(t, 20*time.Second); got != code {
				t.Fatalf("QEMU exit status %d, want %d (halt %d)", got, code, haltCode)
			}
		})
		t.Run("uni/"+top.name+"/hosted", func(t *testing.T) {
			pa, pb := freePort(t), freePort(t)
			a := startHosted(t, uniMember("a", top.a, pa, ""), nil)
			b := startHosted(t, uniMember("b", top.b, pb, uniEchoApp), nil)
			halted := make(chan int, 1)
			v := startHosted(t, uniPeer(t, top.a, top.b, pa, pb), func(code int) { halted <- code })
			all = append(all, exerciseUni(t, a, b, v, top.name+" uni A-hosted-B", nil))
			halt(t, a)
			select {
			case code := <-halted:
				if code != haltCode {
					t.Fatalf("halt code %d, want %d", code, haltCode)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("hosted peer did not halt")
			}
		})
	}
	return all
}

// addMonitor gives cmd's QEMU a QMP socket in a test directory, for
// dumpMonitor; it returns the path.
func addMonitor(t *testing.T, cmd *exec.Cmd) string {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	cmd.Args = append(cmd.Args, "-qmp", "unix:"+path+",server=on,wait=off")
	return path
}

// dumpMonitor asks a running QEMU (over QMP) for the guest CPU's
// registers, the instructions at its PC and (x86) its local APIC, for the
// log of a failed test: a guest that stopped answering shows where it is
// (a HLT with an interrupt held in service, a loop). It gives up after 3 s.
func dumpMonitor(path string) string {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return fmt.Sprintf("(no monitor: %v)", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	enc, dec := json.NewEncoder(c), json.NewDecoder(c)
	var out strings.Builder
	enc.Encode(map[string]any{"execute": "qmp_capabilities"})
	for _, hmp := range []string{"info registers", "x/8i $pc", "info lapic"} {
		enc.Encode(map[string]any{"execute": "human-monitor-command", "arguments": map[string]string{"command-line": hmp}})
	}
	for answers := 0; answers < 4; {
		var m struct {
			Return any `json:"return"`
			Error  any `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			fmt.Fprintf(&out, "(monitor: %v)\n", err)
			break
		}
		switch r := m.Return.(type) {
		case nil:
			if m.Error != nil {
				fmt.Fprintf(&out, "(monitor: %v)\n", m.Error)
				answers++
			}
			continue // the greeting, an event
		case string:
			out.WriteString(r)
		}
		answers++
	}
	return out.String()
}
