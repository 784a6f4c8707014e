package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/images/internal/ipstack/ipstacktest"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/tools/testnet"
)

// measuredVMConfig is the armory image's configuration for the measured
// admission test: the Ethernet shim on the board's NIC and a unicast IPCP
// that enrolls in layer "uni" through the hosted node's h.uni.
const measuredVMConfig = `
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
board = true

[[ipcp]]
kind = "unicast"
name = "vm.uni"
layer = "uni"
[ipcp.unicast]
lower = ["eth"]
enroll = "h.uni"

[[app]]
kind = "echo"
name = "vm.echo"
[[app]]
kind = "halt"

[[ipnet]]
name = "vm.ip"
netstack = "10.77.0.9/24"
status = 80
routes = ["10.77.0.1=h.ip", "10.77.0.2=h.tun"]
`

// TestQEMUMeasured is the measured-admission test of the trust issue: a
// hosted node bootstraps layer "uni" admitting only two image
// measurements (its own and the armory image's, as the host computes it
// from the ELF file); the armory image, whose key derives from the
// board's unique key and which measures itself, proves both and enrolls.
// The same image rebuilt with one byte of its embedded configuration
// changed reports another measurement and is refused, counted as
// refused.measurement.
func TestQEMUMeasured(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tool := findToolchain(t)
	good := buildImage(t, tool, measuredVMConfig)
	changed := buildImage(t, tool, measuredVMConfig+" ") // one byte more
	mGood, err := identity.MeasureELF(good)
	if err != nil {
		t.Fatal(err)
	}
	mChanged, err := identity.MeasureELF(changed)
	if err != nil {
		t.Fatal(err)
	}
	if mGood == mChanged {
		t.Fatal("one byte changed, the same measurement")
	}
	mHost, err := identity.MeasureSelf()
	if err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("open measurement=%s measurement=%s", mGood, mHost)
	for _, tc := range []struct {
		name   string
		elf    string
		admits bool
	}{{"allowed", good, true}, {"one-byte-changed", changed, false}} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			sock := filepath.Join(t.TempDir(), "h.sock")
			h := startMeasuredHost(t, port, policy, mHost, sock)
			v := bootVM(t, tc.elf, "vm", fmt.Sprintf("socket,model=imx.enet,connect=127.0.0.1:%d,mac=02:00:00:00:00:02", port))
			v.checkIdentity(t, "vm", tc.elf)
			want, other := "members_enrolled", "refused.measurement"
			if !tc.admits {
				want, other = other, want
			}
			deadline := time.Now().Add(30 * time.Second)
			for uniStat(t, h, "h.uni", want) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("h.uni: no %s in 30 s", want)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if n := uniStat(t, h, "h.uni", other); n != 0 {
				t.Fatalf("h.uni: %s = %d", other, n)
			}
			if tc.admits {
				t.Logf("image %s enrolled under the measured policy", mGood)
				sealedFlowToVM(t, h, mGood)
				statusPageOfVM(t, h, mGood)
				curlStatusPageOfVM(t, sock, mGood)
			} else {
				t.Logf("image %s (one byte changed) refused under the measured policy", mChanged)
			}
		})
	}
}

// TestQEMUAuthority is the authority test of the trust issue: a hosted
// node bootstraps layer "uni" admitting holders of a layer authority's
// certificates. The armory image without a certificate is refused
// (refused.unknown_key at the host); the image with a certificate for
// its hardware-derived key in its embedded configuration enrolls. The
// board has no clock: it checks the host's certificate against the
// host's clock, signed in enrollment.
func TestQEMUAuthority(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tool := findToolchain(t)
	auth, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("authority authority=%x", []byte(auth.Public()))
	hostID, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(key ed25519.PublicKey, name string) []byte {
		now := time.Now()
		b, err := identity.IssueCert(context.Background(), identity.Cert{Serial: uint64(now.UnixNano()), Subject: key, Name: name, Layer: "uni",
			NotBefore: now.Add(-time.Hour).Unix(), NotAfter: now.Add(time.Hour).Unix()}, auth)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hostCert := filepath.Join(t.TempDir(), "h.cert")
	if err := os.WriteFile(hostCert, issue(hostID.Public(), "h"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := func(t *testing.T, port int) *irm.Broker {
		return startHostedNode(t, port, fmt.Sprintf("admission = %q\ncert = %q", policy, hostCert), func(c *node.Config) { c.Identity = hostID }, "")
	}
	plain := buildImage(t, tool, measuredVMConfig)

	var vmKey ed25519.PublicKey
	t.Run("no-certificate", func(t *testing.T) {
		port := freePort(t)
		h := host(t, port)
		v := bootVM(t, plain, "vm", fmt.Sprintf("socket,model=imx.enet,connect=127.0.0.1:%d,mac=02:00:00:00:00:02", port))
		vmKey = consoleKey(t, v, "vm")
		waitStat(t, h, "refused.unknown_key")
		if n := uniStat(t, h, "h.uni", "members_enrolled"); n != 0 {
			t.Fatalf("h.uni enrolled %d members", n)
		}
	})
	if vmKey == nil {
		t.Fatal("no key from the VM")
	}
	certified := buildImage(t, tool, strings.Replace(measuredVMConfig, `enroll = "h.uni"`,
		fmt.Sprintf("enroll = \"h.uni\"\ncert = \"base64:%s\"", base64.StdEncoding.EncodeToString(issue(vmKey, "vm"))), 1))
	t.Run("certificate", func(t *testing.T) {
		port := freePort(t)
		h := host(t, port)
		bootVM(t, certified, "vm", fmt.Sprintf("socket,model=imx.enet,connect=127.0.0.1:%d,mac=02:00:00:00:00:02", port))
		waitStat(t, h, "members_enrolled")
		t.Logf("the armory image (key %x) enrolled with its certificate in a layer admitted by authority", []byte(vmKey))
	})
}

// consoleKey returns the key the VM named name printed ("ouro node NAME:
// id ID key HEX").
func consoleKey(t *testing.T, v *vm, name string) ed25519.PublicKey {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	prefix := "ouro node " + name + ": id "
	for _, l := range v.console {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			if _, k, ok := strings.Cut(rest, " key "); ok {
				b, err := hex.DecodeString(strings.Fields(k)[0])
				if err == nil && len(b) == ed25519.PublicKeySize {
					return b
				}
			}
		}
	}
	t.Fatal("the VM did not print its key")
	return nil
}

// waitStat waits (30 s at most) for counter name of h.uni to be non-zero.
func waitStat(t *testing.T, h *irm.Broker, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for uniStat(t, h, "h.uni", name) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("h.uni: no %s in 30 s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startMeasuredHost starts the hosted bootstrapper of layer "uni" over an
// Ethernet shim listening for the VM on port, with measurement m in its
// identity document, and returns a management client's broker.
func startMeasuredHost(t *testing.T, port int, policy string, m identity.Measurement, sock string) *irm.Broker {
	t.Helper()
	return startHostedNode(t, port, fmt.Sprintf("admission = %q", policy), func(c *node.Config) { c.Measurement = m }, sock)
}

// startHostedNode starts the hosted bootstrapper h.uni of layer "uni"
// over an Ethernet shim listening for the VM on port, with keys added to
// its [ipcp.unicast] and set applied to its configuration, and returns a
// management client's broker. A sock path, if given, is the node's
// socket for programs (ouro).
func startHostedNode(t *testing.T, port int, keys string, set func(*node.Config), sock string) *irm.Broker {
	t.Helper()
	c, err := node.ParseConfig([]byte(fmt.Sprintf(`[node]
name = "h"
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
qemu_listen = "127.0.0.1:%d"
[[ipcp]]
kind = "unicast"
name = "h.uni"
layer = "uni"
[ipcp.unicast]
lower = ["eth"]
bootstrap = true
%s
`, port, keys)))
	if err != nil {
		t.Fatal(err)
	}
	set(c)
	brc := make(chan *irm.Broker, 1)
	var extras []node.Extra
	if sock != "" {
		extras = append(extras, node.GatewayWith(sock, c.GatewayOptions(), logx.Test(t)))
	}
	n, err := node.New(c, append(extras, node.Extra{Name: "client", Mgmt: true, Program: func(pd *kernel.PD) error {
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
	}})...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return <-brc
}

// sealedFlowToVM is the sealed-flow test of the armory image: a sealed
// flow from the hosted node to the VM's echo in layer "uni" names the
// VM's verified identity (its board and measured image) and carries
// pings and an echo flood; the same traffic unsealed is the baseline.
func sealedFlowToVM(t *testing.T, b *irm.Broker, m identity.Measurement) {
	t.Helper()
	for _, sealed := range []bool{true, false} {
		q := flow.QoS{Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: sealed}
		deadline := time.Now().Add(30 * time.Second)
		var (
			p    flow.Port
			info flow.Info
			err  error
		)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p, info, err = b.Alloc(ctx, "vm.echo", q)
			cancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond) // the VM's name is not in the directory yet
		}
		if err != nil {
			t.Fatalf("alloc vm.echo (sealed %v): %v", sealed, err)
		}
		path := "plain hosted -> vm.echo over uni"
		if sealed {
			path = "sealed hosted -> vm.echo over uni"
			if info.Peer == nil || info.Peer.Name != "vm" || info.Peer.Board == "" || !bytes.Equal(info.Peer.Measurement, m[:]) {
				t.Fatalf("sealed flow's peer %v, want the armory image measured %s", info.Peer, m)
			}
			t.Logf("sealed flow to vm.echo: peer %v", info.Peer)
		} else if info.Peer != nil {
			t.Fatalf("unsealed flow with a peer: %v", info.Peer)
		}
		f := exercisePort(t, p, path)
		p.Close()
		t.Logf("%v", f)
	}
}

// statusPageOfVM fetches the armory image's status page from its own
// TCP/IP stack ([[ipnet]] netstack 10.77.0.9, status 80), through a
// stack and bridge of the test's (10.77.0.1, bound as h.ip on the hosted
// node): the board is reachable at that address only across ouro flows.
// The page names the board and its measured image.
func statusPageOfVM(t *testing.T, b *irm.Broker, m identity.Measurement) {
	t.Helper()
	client := ipstacktest.Client(t, b, "10.77.0.1/24", "h.ip", ipnet.Route{Prefix: netip.MustParsePrefix("10.77.0.9/32"), Name: "vm.ip"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var page status.Page
	for {
		resp, err := client.Get("http://10.77.0.9:80/?format=json")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the VM's status page: %v", err)
		}
		time.Sleep(500 * time.Millisecond) // names still reaching the directory
	}
	if page.Node.Name != "vm" || page.Node.Board == "" || page.Node.Measurement != hex.EncodeToString(m[:]) || len(page.IPCPs.Rows) == 0 {
		t.Fatalf("the VM's status page: node %+v, %d IPCPs; want vm measured %s", page.Node, len(page.IPCPs.Rows), m)
	}
	t.Logf("the VM's status page over ouro flows in %v: node %s (%s), %d IPCPs, %d flows", time.Since(start).Round(time.Millisecond),
		page.Node.Name, page.Node.Board, len(page.IPCPs.Rows), len(page.Flows.Rows))
}

// curlStatusPageOfVM fetches the armory image's status page with curl
// through a TUN: "ouro ipnet h.tun" on the hosted node's socket, run in
// a network namespace of the test's, owns interface ouro0 (10.77.0.2)
// there and routes 10.77.0.9 to the VM's bridge; curl in the namespace
// gets the page. Skipped without root (the namespace and the TUN).
func curlStatusPageOfVM(t *testing.T, sock string, m identity.Measurement) {
	t.Helper()
	if err := testnet.NetnsAvailable(); err != nil {
		t.Logf("SKIP: curl through a TUN: %v", err)
		return
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Logf("SKIP: curl through a TUN: no curl (apt-get install curl)")
		return
	}
	ns := fmt.Sprintf("ouro-qstatus-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	inNS := func(name string, args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	}
	var out logx.Buffer
	br := inNS(bins.ouro, "--socket", sock, "ipnet", "h.tun", "--tun", "ouro0", "--mtu", "1280", "--route", "10.77.0.9=vm.ip")
	br.Stdout, br.Stderr = &out, &out
	if err := br.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		br.Process.Signal(syscall.SIGTERM)
		br.Wait()
		if t.Failed() {
			t.Logf("ouro ipnet:\n%s", out.String())
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "ready"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ouro ipnet not ready: %s", out.String())
		}
	}
	if b, err := inNS("ip", "addr", "add", "10.77.0.2/24", "dev", "ouro0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, b)
	}
	start := time.Now()
	var page status.Page
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		b, err := inNS("curl", "-s", "-m", "10", "http://10.77.0.9/?format=json").Output()
		if err == nil && json.Unmarshal(b, &page) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl the VM's status page through the TUN: %v: %s", err, b)
		}
	}
	if page.Node.Name != "vm" || page.Node.Measurement != hex.EncodeToString(m[:]) {
		t.Fatalf("curl: the VM's status page names %+v, want vm measured %s", page.Node, m)
	}
	t.Logf("the VM's status page by curl through a TUN in %v", time.Since(start).Round(time.Millisecond))
}
