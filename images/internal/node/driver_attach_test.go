package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// boardNode starts node "v" from vcfg with its board link ("enet") on a
// QEMU stream to node "h", whose Ethernet shim (layer "eth") listens on
// it; it returns v, a management broker on v and one on h. setup, if
// given, changes v before it starts. v's board has the links its
// configuration uses (boardNodeOn: others too).
func boardNode(t *testing.T, vcfg string, setup ...func(*Node)) (v *Node, bv, bh *irm.Broker) {
	t.Helper()
	return boardNodeOn(t, nil, vcfg, setup...)
}

// boardNodeOn is boardNode on a board with the links has as well; of
// them, only "enet" (the stream) can be opened.
func boardNodeOn(t *testing.T, has []boardPort, vcfg string, setup ...func(*Node)) (v *Node, bv, bh *irm.Broker) {
	t.Helper()
	port := freeTCPPort(t)
	appH, brH := mgmtApp("client")
	startNode(t, fmt.Sprintf("[node]\nname = \"h\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nqemu_listen = \"127.0.0.1:%d\"\n", port), appH)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dev, err := eth.DialQEMU(ctx, fmt.Sprintf("127.0.0.1:%d", port), net.HardwareAddr{2, 0, 0, 0, 7, 2})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig([]byte(vcfg))
	if err != nil {
		t.Fatal(err)
	}
	xs, err := Apps(c, AppEnv{})
	if err != nil {
		t.Fatal(err)
	}
	appV, brV := mgmtApp("mgmt")
	v, err = newNode(c, has, append(xs, appV)...)
	if err != nil {
		t.Fatal(err)
	}
	v.openLink = func(p boardPort) (*netstack.Mux, error) {
		if p != "enet" {
			return nil, fmt.Errorf("test: no board link %q", p)
		}
		return netstack.NewMux(newWakeStream(dev)), nil
	}
	for _, f := range setup {
		f(v)
	}
	if err := v.Start(); err != nil {
		dev.Close()
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	return v, <-brV, <-brH
}

// echoVia allocates a flow from b to "echo" and checks that an SDU comes
// back, retrying for up to 20 s (the IPCP may still be starting).
func echoVia(t *testing.T, b *irm.Broker, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		var p flow.Port
		p, _, err = b.Alloc(ctx, "echo", flow.BestEffort())
		if err == nil {
			ok := echoOnce(t, p, what, 2*time.Second)
			p.Close()
			if ok {
				return
			}
			err = fmt.Errorf("no echo")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: no echo over the board link in 20 s: %v", what, err)
}

// TestBoardLinkCreatedIPCP: an Ethernet shim created at run time ("ouro
// create") on a board link the node drives (for its configured UDP shim
// on the netstack) attaches to the link's driver with the cap the IRM
// gives it and carries a flow to the echo app; destroyed, it detaches,
// and created again it carries flows again. Before, the rings were wired
// in the system description at boot and a created IPCP held none: its
// start failed ("holds no ring").
func TestBoardLinkCreatedIPCP(t *testing.T) {
	_, bv, bh := boardNode(t, "[node]\nname = \"v\"\n[[ipcp]]\nkind = \"udp\"\nlayer = \"ip\"\n[ipcp.udp]\naddr = \"127.0.10.2:3435\"\n[ipcp.udp.netstack]\naddrs = [\"127.0.10.2/24\"]\nboard = true\n[[app]]\nkind = \"echo\"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	create := func() {
		t.Helper()
		if _, err := bv.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "v.eth", Layer: "eth", Args: map[string]string{"kind": "eth", "config": "board = true"}}); err != nil {
			t.Fatalf("create v.eth on the board link: %v", err)
		}
		if _, err := bv.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: "echo", Layer: "eth"}); err != nil {
			t.Fatalf("reg echo in layer eth: %v", err)
		}
	}
	create()
	echoVia(t, bh, "created")
	rows := statsRows(t, bv, "v.eth")
	if rows["driver.component"] != "driver.enet" || rows["driver.tx_frames"] == "0" {
		t.Errorf("stats v.eth: driver rows %v, want driver.enet with frames sent", rows)
	}
	if _, err := bv.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "v.eth"}); err != nil {
		t.Fatalf("destroy v.eth: %v", err)
	}
	// Its attachment ends with it: the driver lets go of its rings (the
	// UDP shim's stays).
	attached := func() string {
		t.Helper()
		dl := time.Now().Add(5 * time.Second)
		for {
			n := statsRows(t, bv, "v.udp")["driver.attached"]
			if n == "1" || time.Now().After(dl) {
				return n
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if n := attached(); n != "1" {
		t.Errorf("driver.attached %s after v.eth was destroyed, want 1 (v.udp's)", n)
	}
	create()
	echoVia(t, bh, "created again")
	if n := statsRows(t, bv, "v.eth")["driver.attached"]; n != "2" {
		t.Errorf("driver.attached %s with v.udp and v.eth, want 2", n)
	}
}

// TestBoardLinkUndriven: a shim created on a board link the board does
// not have is refused at create with an error naming the link.
func TestBoardLinkUndriven(t *testing.T) {
	_, bv, _ := boardNode(t, "[node]\nname = \"v\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nboard = true\n[[app]]\nkind = \"echo\"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := bv.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "v.usb", Layer: "usb", Args: map[string]string{"kind": "eth", "config": "board = \"usb\""}})
	if err == nil || !strings.Contains(err.Error(), `board link "usb": this board has no such link`) || !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("create on a board link the board lacks: %v, want ErrInvalid naming the link", err)
	}
}

// TestBoardLinkTwoOnAPort: two configured IPCPs on the same port of a
// board link both attach (before, only the first on a port got its ring
// and the second failed to start), and each gets the port's frames.
func TestBoardLinkTwoOnAPort(t *testing.T) {
	_, bv, bh := boardNode(t, "[node]\nname = \"v\"\n[[ipcp]]\nkind = \"eth\"\nname = \"v.a\"\nlayer = \"eth\"\n[ipcp.eth]\nboard = true\n[[ipcp]]\nkind = \"eth\"\nname = \"v.b\"\nlayer = \"other\"\n[ipcp.eth]\nboard = true\n")
	if n := statsRows(t, bv, "v.a")["driver.attached"]; n != "2" {
		t.Errorf("driver.attached %s with v.a and v.b on the shim port, want 2", n)
	}
	// h's name announcements and queries reach both: each shim's count
	// of control messages received moves.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		a, b := statsRows(t, bv, "v.a")["ctl_in"], statsRows(t, bv, "v.b")["ctl_in"]
		if a != "0" && b != "0" && a != "" && b != "" {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("ctl_in v.a %q, v.b %q after 10 s: want both to have received h's control messages", a, b)
		}
		actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
		bh.Alloc(actx, "nobody", flow.BestEffort()) // not found: what counts is the query
		acancel()
	}
}

// TestDriverAttachRefused: the driver answers a malformed attach call at
// once with labelRefused and the reason (counted), and holds a good one
// (the lease) until the caller gives up, then lets go of its rings.
func TestDriverAttachRefused(t *testing.T) {
	d := &driver{port: "enet"}
	d.opened(netstack.NewMux(newFloodDevice()), 1)
	sys := &kernel.System{
		Endpoints: []kernel.ObjectSpec{{Name: attachEndpoint("enet")}},
		Components: []kernel.ComponentSpec{
			{Name: "driver.enet", Budget: kernel.Budget{Bufs: 1 + popBatch, Objects: 1},
				Caps: []kernel.CapSpec{{Name: slotDriverAttach, Object: attachEndpoint("enet"), Rights: kernel.Read}}},
			{Name: "shim", Budget: kernel.Budget{Bufs: 16, Objects: 8},
				Caps: []kernel.CapSpec{{Name: attachSlot("enet"), Object: attachEndpoint("enet"), Rights: attachRights}}},
		},
	}
	type result struct {
		what, got string
	}
	results := make(chan result, 16)
	shim := func(pd *kernel.PD) error {
		ep, _ := pd.Slot(attachSlot("enet"))
		rx, _ := pd.NewRing(ringLen)
		tx, _ := pd.NewRing(ringLen)
		ok, _ := pd.NewNotification()
		call := func(what string, label, port uint64, rxRights, txRights kernel.Rights, ncaps int) {
			w, _ := pd.Mint(rx, rxRights, 0)
			r, _ := pd.Mint(tx, txRights, 0)
			o, _ := pd.Mint(ok, kernel.Write, 0)
			m := kernel.Msg{Label: label, NCaps: ncaps, Payload: make([]byte, 0, kernel.MaxPayload)}
			m.Words[0] = port
			m.Caps[0], m.Caps[1], m.Caps[2] = w, r, o
			ctx, cancel := context.WithTimeout(pd.Context(), 300*time.Millisecond)
			err := pd.CallCtx(ctx, ep, &m)
			cancel()
			pd.Delete(w)
			pd.Delete(r)
			pd.Delete(o)
			signalled, _ := pd.Poll(ok)
			switch {
			case err != nil && ctx.Err() != nil && signalled != 0:
				results <- result{what, "held"}
			case err != nil && ctx.Err() != nil:
				results <- result{what, "held, but not signalled"}
			case err != nil:
				results <- result{what, err.Error()}
			case m.Label == labelRefused:
				results <- result{what, "refused: " + string(m.Payload)}
			default:
				results <- result{what, fmt.Sprintf("label %d", m.Label)}
			}
		}
		call("wrong label", 9, portShim, kernel.Write, kernel.Read, 3)
		call("bad port", labelAttach, 7, kernel.Write, kernel.Read, 3)
		call("one cap", labelAttach, portShim, kernel.Write, kernel.Read, 1)
		call("read-only receive ring", labelAttach, portShim, kernel.Read, kernel.Read, 3)
		call("good", labelAttach, portShim, kernel.Write, kernel.Read, 3)
		close(results)
		<-pd.Context().Done()
		return nil
	}
	k := kernel.New(kernel.Config{})
	if err := k.Boot(sys, map[string]kernel.Program{"driver.enet": d.program, "shim": shim}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	want := map[string]string{
		"wrong label":            "refused: attach: label 9",
		"bad port":               "refused: attach: port 7",
		"one cap":                "refused: attach: 1 caps",
		"read-only receive ring": "refused: attach: the first cap is not Write",
		"good":                   "held",
	}
	n := 0
	for r := range results {
		n++
		if !strings.HasPrefix(r.got, want[r.what]) {
			t.Errorf("%s: %s, want %s…", r.what, r.got, want[r.what])
		}
		if r.what == "good" {
			// The call was given up: the driver lets go.
			dl := time.Now().Add(2 * time.Second)
			for len(d.att.Load().list()) != 0 && time.Now().Before(dl) {
				time.Sleep(5 * time.Millisecond)
			}
			if l := len(d.att.Load().list()); l != 0 {
				t.Errorf("%d attachments after the lease call was given up, want 0", l)
			}
		}
	}
	if n != len(want) {
		t.Errorf("%d calls answered, want %d", n, len(want))
	}
	if got := d.refused.Load(); got != 4 {
		t.Errorf("driver refused %d attach calls, want 4", got)
	}
}
