//go:build tamago && (arm || amd64)

// Bare-metal entry point of the router image for the USB armory Mk II and
// QEMU's mcimx6ul-evk (board/usbarmory, main_tamago_arm.go) and for QEMU's
// microvm (board/qemu/microvm, main_tamago_amd64.go): the same node
// assembly as hosted, with the configuration embedded at build time, the
// board NIC under the shims and in-node applications instead of the socket
// gateway.
//
// Under QEMU the image reads words from the board's command line (mcimx6ul-evk:
// -semihosting-config enable=on,arg=router,arg=WORD...; microvm: -fw_cfg
// name=opt/ouro/args,string="WORD WORD..."):
//
//	name=NAME          the node name (default: from the board's unique key)
//	exit-after=DUR     stop and exit with code 3 after DUR (a watchdog for tests)
//
// A "halt" app in the configuration ends the node with the code a client
// sends it ("halt CODE"); the board exits with it (semihosting on
// mcimx6ul-evk, isa-debug-exit on microvm: QEMU then exits (CODE<<1)|1).
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/images/internal/node"
)

// config is the node configuration, TOML encoded as standard base64, set
// at link time by mk/tamago.mk (make image CONFIG=node.toml: -X
// main.config=...). Empty: defaultConfig.
var config string

// defaultConfig is the configuration of an image built without CONFIG: an
// Ethernet shim on the board NIC and an echo app, so that a hosted node on
// the same Ethernet can allocate a flow to "echo" and ping it.
const defaultConfig = `
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
board = true

[[app]]
kind = "echo"
`

// exitWatchdog is the exit code when exit-after expires.
const exitWatchdog = 3

func main() {
	b := &board{}
	if err := b.Init(); err != nil {
		fail("board init: %v", err)
	}
	args := map[string]string{}
	if b.Emulated() {
		for _, w := range b.Args() {
			if k, v, ok := strings.Cut(w, "="); ok {
				args[k] = v
			}
		}
	}

	text := defaultConfig
	if config != "" {
		raw, err := base64.StdEncoding.DecodeString(config)
		if err != nil {
			fail("embedded config: %v", err)
		}
		text = string(raw)
	}
	name := args["name"]
	if name == "" {
		name = boardName(b)
	}
	text, err := withName(text, name)
	if err != nil {
		fail("embedded config: %v", err)
	}
	cfg, err := node.ParseConfig([]byte(text))
	if err != nil {
		fail("%v", err)
	}
	if slices.Contains(imageTags(cfg), "netstack") && !node.HasNetstack {
		fail("the configuration uses the node's own TCP/IP stack ([ipcp.udp.netstack] or [[ipnet]] netstack) but this image was built without it: build it with make image CONFIG=FILE, which adds -tags netstack (router -image-tags FILE)")
	}
	if slices.Contains(imageTags(cfg), "ipstack_tcp") && !node.HasTCP {
		fail("the configuration serves a status page ([[ipnet]] status) but this image was built without TCP: build it with make image CONFIG=FILE, which adds -tags ipstack_tcp (router -image-tags FILE)")
	}

	// The node's identity: derived from the board's hardware unique key
	// (the same board always has the same key; docs/security.md says
	// which boards' keys are secret), and what the image measured of
	// itself, which the signer puts in the node's identity document.
	huk, _, err := b.UniqueKey([]byte("ouro identity v1"))
	if err != nil {
		fail("board unique key: %v", err)
	}
	if cfg.Identity, err = identity.FromHUK(huk[:]); err != nil {
		fail("identity: %v", err)
	}
	cfg.Measurement = measureImage()
	cfg.Board = b.Name()

	node.UseBoard(b)
	halt := make(chan int, 1)
	// Apps and IP bridges report on the console at info even when [node]
	// log is unset, as they always have on boards.
	appCfg := *cfg
	if appCfg.Node.Log == "" {
		appCfg.Node.Log = "info"
	}
	appLog, err := node.NewLogger(&appCfg, os.Stdout)
	if err != nil {
		fail("%v", err)
	}
	apps, err := node.Apps(cfg, node.AppEnv{
		Log: appLog,
		Halt: func(code int) {
			select {
			case halt <- code:
			default:
			}
		},
	})
	if err != nil {
		fail("%v", err)
	}
	// IP bridges on the node's own TCP/IP stack (netstack = ...): a
	// board has no TUN.
	bridges, err := node.IPNets(cfg, nil, appLog)
	if err != nil {
		fail("%v", err)
	}
	n, err := node.New(cfg, append(apps, bridges...)...)
	if err != nil {
		fail("%v", err)
	}
	if err := n.Start(); err != nil {
		fail("%v", err)
	}

	kind := b.UniqueKeyKind()
	fmt.Printf("ouro node %s: board %s, identity key %s, entropy %s\n",
		n.Name(), b.Name(), kind, b.EntropySource())
	// Tests compare these with the host's view (ouro measure IMAGE.elf).
	fmt.Printf("ouro node %s: id %s key %x\n", n.Name(), cfg.Identity.Name(), []byte(cfg.Identity.Public()))
	fmt.Printf("ouro node %s: measurement %s (%s)\n", n.Name(), cfg.Measurement, imageRanges())
	if cfg.Node.Metrics != "" {
		// docs/observability.md: the HTTP metrics are hosted only.
		fmt.Printf("ouro node %s: [node] metrics = %q ignored: bare-metal images serve no metrics\n", n.Name(), cfg.Node.Metrics)
	}
	if nic := node.BoardNIC(); nic != nil {
		fmt.Printf("ouro node %s: nic %v\n", n.Name(), nic.HardwareAddr())
	}
	for _, l := range node.LayerSummary(cfg) {
		fmt.Printf("ouro node %s: %s\n", n.Name(), l)
	}
	// Tests and scripts wait for this line; uptime is the guest clock.
	fmt.Printf("ouro node %s ready (uptime %v)\n", n.Name(), time.Duration(time.Now().UnixNano()).Round(time.Millisecond))

	var watchdog <-chan time.Time
	if s, ok := args["exit-after"]; ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			fail("exit-after=%q: %v", s, err)
		}
		watchdog = time.After(d)
	}
	code := 0
	select {
	case code = <-halt:
		fmt.Printf("ouro node %s: halt %d\n", n.Name(), code)
	case <-watchdog:
		code = exitWatchdog
		fmt.Printf("ouro node %s: exit-after expired\n", n.Name())
	}
	time.Sleep(50 * time.Millisecond) // let the halt reply leave
	stopped := make(chan struct{})
	go func() { n.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		fmt.Printf("ouro node %s: stop took over 2s\n", n.Name())
	}
	for _, l := range n.DriverSummary() {
		fmt.Printf("ouro node %s: %s\n", n.Name(), l)
	}
	if nic := node.BoardNIC(); nic != nil {
		s := nic.Stats()
		fmt.Printf("ouro node %s: nic rx %d frames %d bytes, tx %d frames %d bytes, filtered %d, rx errors %d, tx ring full %d, interrupts %d, rx found late %d\n",
			n.Name(), s.RxFrames, s.RxBytes, s.TxFrames, s.TxBytes, s.RxFiltered, s.RxErrors, s.TxRingFull, s.Interrupts, s.RxLate)
	}
	fmt.Printf("ouro node %s: exit %d\n", n.Name(), code)
	boardExit(code)
}

// boardName is boardPrefix ("usbarmory", "microvm"), a dash and 6 hex
// digits of a hash of the board's unique key (under QEMU the key is the
// published test key: every VM gets the same name unless given name=).
func boardName(b *board) string {
	k, _, err := b.UniqueKey([]byte("ouro node name"))
	if err != nil {
		return boardPrefix
	}
	h := sha256.Sum256(k[:])
	return boardPrefix + "-" + hex.EncodeToString(h[:3])
}

func fail(format string, a ...any) {
	fmt.Printf("router: FAIL: "+format+"\n", a...)
	boardExit(1)
}
