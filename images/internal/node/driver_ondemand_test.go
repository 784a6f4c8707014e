package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/ipcp"
)

// opens counts a node's board link initialisations and
// re-initialisations, by link.
type opens struct {
	mu     sync.Mutex
	n      map[boardPort]int
	resets map[boardPort]int
}

// count wraps v's openLink (set by boardNodeOn) to count its calls.
func (o *opens) count(v *Node) {
	o.n, o.resets = map[boardPort]int{}, map[boardPort]int{}
	open := v.openLink
	v.openLink = func(p boardPort) (*netstack.Mux, error) {
		o.mu.Lock()
		o.n[p]++
		o.mu.Unlock()
		return open(p)
	}
	// As the boards' resets do, one before the device was opened fails.
	v.resetLink = func(p boardPort) func() error {
		return func() error {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.resets[p]++
			if o.n[p] == 0 {
				return fmt.Errorf("test: %s reset before it was opened", p)
			}
			return nil
		}
	}
}

func (o *opens) resetsOf(p boardPort) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.resets[p]
}

func (o *opens) of(p boardPort) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[p]
}

// createEth creates the Ethernet shim name in layer on board link cfg
// ("board = ...") through b.
func createEth(ctx context.Context, b *irm.Broker, name, layer, cfg string) error {
	_, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: name, Layer: layer, Args: map[string]string{"kind": "eth", "config": cfg}})
	return err
}

// TestBoardLinkOnDemand: a node whose configuration uses no board link
// still has a driver component for each link its board has, idle: the
// device is not initialised at boot. An Ethernet shim created at run
// time on the link initialises it (once) and carries a flow; destroyed,
// it leaves the driver and the device running, and created again it
// attaches without a second initialisation. A restart of the driver
// then re-initialises the device, as for a link used at boot. Before,
// the create failed: the node drove only the links its configured
// IPCPs used.
func TestBoardLinkOnDemand(t *testing.T) {
	var o opens
	v, bv, bh := boardNodeOn(t, []boardPort{"enet", "usb"}, "[node]\nname = \"v\"\n[[app]]\nkind = \"echo\"\n", o.count)
	for _, c := range []string{"driver.enet", "driver.usb"} {
		if st, _, err := v.Kernel().State(c); err != nil || st != "running" {
			t.Fatalf("%s: %q, %v; want running (idle) from boot", c, st, err)
		}
	}
	if n := o.of("enet"); n != 0 {
		t.Fatalf("enet initialised %d times at boot with no IPCP on it, want 0", n)
	}
	if s := strings.Join(v.DriverSummary(), "\n"); !strings.Contains(s, "driver.enet: device not initialised (no IPCP used it)") {
		t.Errorf("driver summary before any use:\n%s\nwant driver.enet not initialised", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	create := func(what string) {
		t.Helper()
		if err := createEth(ctx, bv, "v.eth", "eth", "board = true"); err != nil {
			t.Fatalf("%s: create v.eth on the idle board link: %v", what, err)
		}
		if _, err := bv.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: "echo", Layer: "eth"}); err != nil {
			t.Fatalf("%s: reg echo in layer eth: %v", what, err)
		}
		echoVia(t, bh, what)
	}
	create("created on demand")
	if n := o.of("enet"); n != 1 {
		t.Errorf("enet initialised %d times after the first create, want 1", n)
	}
	rows := statsRows(t, bv, "v.eth")
	if rows["driver.component"] != "driver.enet" || rows["driver.incarnations"] != "1" || rows["driver.device_resets"] != "0" || rows["driver.rx_frames"] == "0" {
		t.Errorf("stats v.eth: driver rows %v, want driver.enet in its first incarnation, no reset, frames received", rows)
	}
	if _, err := bv.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "v.eth"}); err != nil {
		t.Fatalf("destroy v.eth: %v", err)
	}
	if st, _, _ := v.Kernel().State("driver.enet"); st != "running" {
		t.Errorf("driver.enet %q after the last shim on it was destroyed, want running", st)
	}
	create("created again")
	if n := o.of("enet"); n != 1 {
		t.Errorf("enet initialised %d times after a second create, want 1 (the device stays initialised)", n)
	}
	if err := v.Kernel().Restart("driver.enet"); err != nil {
		t.Fatal(err)
	}
	echoVia(t, bh, "after the driver's restart")
	rows = statsRows(t, bv, "v.eth")
	if rows["driver.incarnations"] != "2" || rows["driver.device_resets"] != "1" {
		t.Errorf("stats v.eth after a restart of the driver: %v, want 2 incarnations, 1 device reset", rows)
	}
	if n := o.resetsOf("enet"); n != 1 {
		t.Errorf("enet re-initialised %d times, want 1 (the restart's)", n)
	}
	// An idle driver's restart has no device to re-initialise: it comes
	// back idle (a reset there would fail and end every incarnation).
	if err := v.Kernel().Restart("driver.usb"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if st, inc, _ := v.Kernel().State("driver.usb"); st != "running" || inc != 2 {
		t.Errorf("driver.usb after a restart while idle: %q, incarnation %d; want running, 2", st, inc)
	}
	if n, r := o.of("usb"), o.resetsOf("usb"); n != 0 || r != 0 {
		t.Errorf("usb initialised %d and re-initialised %d times, want 0 and 0: no shim used it", n, r)
	}
}

// TestBoardLinkInitFails: a shim created on a board link whose device
// fails to initialise (the test board's "usb" cannot be opened, as the
// USB armory's gadget cannot under QEMU) is refused with ErrInvalid and
// the device's error, naming the link; the driver keeps the failure and
// does not try the hardware again, and the node carries on.
func TestBoardLinkInitFails(t *testing.T) {
	var o opens
	v, bv, _ := boardNodeOn(t, []boardPort{"enet", "usb"}, "[node]\nname = \"v\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nboard = true\n[[app]]\nkind = \"echo\"\n", o.count)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := `board link "usb": initialising the device: test: no board link "usb"`
	for i := range 2 {
		err := createEth(ctx, bv, "v.usb", "usb", `board = "usb"`)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, flow.ErrInvalid) {
			t.Errorf("create %d on a link that fails to initialise: %v, want ErrInvalid with %q", i+1, err, want)
		}
	}
	if n := o.of("usb"); n != 1 {
		t.Errorf("usb initialisation tried %d times, want 1", n)
	}
	if s := strings.Join(v.DriverSummary(), "\n"); !strings.Contains(s, "driver.usb: device not initialised ("+want) {
		t.Errorf("driver summary:\n%s\nwant driver.usb's initialisation error", s)
	}
	if st, _, _ := v.Kernel().State("driver.usb"); st != "running" {
		t.Errorf("driver.usb %q after its device failed, want running (refusing attaches)", st)
	}
	// The configured shim on the other link is not disturbed.
	if r := statsRows(t, bv, "v.eth"); r["driver.component"] != "driver.enet" {
		t.Errorf("stats v.eth: %v", r)
	}
}
