package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
)

// reach returns, for each component of sys, the objects it holds caps to
// with the union of their rights, and the badges of its caps per object.
func reach(sys *kernel.System) (rights map[string]map[string]kernel.Rights, badges map[string]map[string][]kernel.Badge) {
	rights = map[string]map[string]kernel.Rights{}
	badges = map[string]map[string][]kernel.Badge{}
	for _, c := range sys.Components {
		rights[c.Name] = map[string]kernel.Rights{}
		badges[c.Name] = map[string][]kernel.Badge{}
		for _, cp := range c.Caps {
			rights[c.Name][cp.Object] |= cp.Rights
			badges[c.Name][cp.Object] = append(badges[c.Name][cp.Object], cp.Badge)
		}
	}
	return rights, badges
}

// TestWhoCanReachWhom checks the live system description of a running
// node (IPCPs, the IRM, the root, the gateway with a program's session
// component, in-node apps): no application or session component can
// reach an IPCP's endpoint, a fault endpoint or another component; each
// cap to the IRM carries its holder's role; supervision is as documented.
func TestWhoCanReachWhom(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	pa := freeUDPPort(t)
	c, err := ParseConfig([]byte(fmt.Sprintf(`
[node]
name = "n"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
[[ipcp]]
kind = "local"
[[app]]
kind = "echo"
`, pa)))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := Apps(c, AppEnv{})
	if err != nil {
		t.Fatal(err)
	}
	mx, mch := mgmtApp("app.manager")
	n, err := New(c, append(apps, Gateway(sock, logx.Test(t)), mx)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	<-mch
	prog, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := prog.Bind(ctx, "svc"); err != nil { // the session component exists now
		t.Fatal(err)
	}
	// A flow, so that rings are in the description too; the echo app
	// binds its name as it starts, which may be after the gateway took
	// this program (its session is ready before the program connects).
	var f flow.Port
	for {
		f, _, err = prog.Alloc(ctx, "echo", flow.BestEffort())
		if err == nil {
			break
		}
		if !errors.Is(err, flow.ErrNotFound) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer f.Close()

	sys := n.Describe()
	rights, badges := reach(sys)
	kinds := map[string]kernel.Kind{}
	for _, e := range sys.Endpoints {
		kinds[e.Name] = kernel.KindEndpoint
	}
	ipcpEPs := map[string]bool{}
	var sessions []string
	for _, comp := range sys.Components {
		kinds[comp.Name] = kernel.KindComponent
		if strings.HasPrefix(comp.Name, "ipcp.") {
			for obj, r := range rights[comp.Name] {
				if kinds[obj] == kernel.KindEndpoint && r&kernel.Read != 0 {
					ipcpEPs[obj] = true
				}
			}
		}
		if strings.HasPrefix(comp.Name, "gateway.s") {
			sessions = append(sessions, comp.Name)
			if comp.Budget.Bufs != defaultSessionBufs {
				t.Errorf("%s: budget %d buffers, want its own %d", comp.Name, comp.Budget.Bufs, defaultSessionBufs)
			}
			if comp.Supervisor != gatewayName {
				t.Errorf("%s: supervisor %q, want the gateway", comp.Name, comp.Supervisor)
			}
		}
	}
	if len(ipcpEPs) != 2 {
		t.Fatalf("IPCP endpoints %v, want 2", ipcpEPs)
	}
	// The program's session, and the one the gateway prepared for the
	// next program of the same user (once it is ready).
	if len(sessions) != 1 && len(sessions) != 2 {
		t.Fatalf("session components %v, want one for the program and at most one prepared", sessions)
	}
	// The roles of the caps to the IRM each may hold: its own, and those
	// of the sessions it opened.
	s, ms := irm.RoleSession, irm.RoleMgmtSession
	roles := map[string][]irm.Role{
		gatewayName: {irm.RoleGateway, s, ms}, "app.echo": {irm.RoleApp, s},
		"app.manager": {irm.RoleManager, ms},
	}
	for _, name := range sessions {
		roles[name] = []irm.Role{ms}
	}
	irmEP := endpointName(irmName)
	for _, comp := range sys.Components {
		name := comp.Name
		untrusted := strings.HasPrefix(name, "app.") || strings.HasPrefix(name, "gateway")
		for obj, r := range rights[name] {
			switch {
			case ipcpEPs[obj] && name != irmName && obj != endpointName(name):
				t.Errorf("%s can reach IPCP endpoint %s (%s)", name, obj, r)
			case obj == faultEndpoint(irmName) && (name != irmName || r != kernel.Read):
				t.Errorf("%s holds %s on the IRM's fault endpoint", name, r)
			case obj == faultEndpoint(rootName) && (name != rootName || r != kernel.Read):
				t.Errorf("%s holds %s on the root's fault endpoint", name, r)
			case kinds[obj] == kernel.KindComponent && untrusted && !(name == gatewayName && strings.HasPrefix(obj, "gateway.s")):
				t.Errorf("%s holds a cap to component %s", name, obj)
			}
		}
		if name == irmName || name == rootName {
			continue
		}
		// The signer holds no cap to the IRM; the root supervises it.
		if name == SignerName {
			if comp.Supervisor != rootName || comp.FaultEndpoint != faultEndpoint(rootName) {
				t.Errorf("signer: supervisor %q, fault endpoint %q; want the root's", comp.Supervisor, comp.FaultEndpoint)
			}
			if len(rights[name]) != 1 {
				t.Errorf("signer holds caps to %v, want its endpoint only", rights[name])
			}
			continue
		}
		// Only IPCPs and the IRM may ask the signer for signatures.
		if _, ok := rights[name][SignerEndpoint]; ok && !strings.HasPrefix(name, "ipcp.") {
			t.Errorf("%s holds a cap to the signer", name)
		}
		// Every cap to the IRM's endpoint carries its holder's role.
		want := roles[name]
		if strings.HasPrefix(name, "ipcp.") {
			want = []irm.Role{irm.RoleIPCP, s}
		}
		for _, b := range badges[name][irmEP] {
			if got := irm.RoleOf(b); !slices.Contains(want, got) {
				t.Errorf("%s's cap to the IRM has role %s, want one of %v", name, got, want)
			}
		}
		if len(badges[name][irmEP]) == 0 && !strings.HasPrefix(name, "gateway.s") {
			t.Errorf("%s has no cap to the IRM", name)
		}
		// Supervision: the IRM supervises everything but itself and the
		// gateway's sessions; its faults go to the root.
		switch {
		case strings.HasPrefix(name, "gateway.s"):
		case comp.Supervisor != irmName || comp.FaultEndpoint != faultEndpoint(irmName):
			t.Errorf("%s: supervisor %q, fault endpoint %q; want the IRM's", name, comp.Supervisor, comp.FaultEndpoint)
		}
	}
	// The kernel's view of who can reach whom: an application or session
	// component reaches the IRM (its endpoint) and IPCPs only through its
	// flows' rings (the data path), never an IPCP's endpoint, a fault
	// endpoint or a component.
	for _, comp := range sys.Components {
		name := comp.Name
		if !strings.HasPrefix(name, "app.") && !strings.HasPrefix(name, "gateway") {
			continue
		}
		for _, r := range sys.Reach(name) {
			switch {
			case r.Kind == kernel.KindRing:
			case r.Kind == kernel.KindEndpoint && r.To == irmName && r.Object == irmEP:
			case r.Kind == kernel.KindComponent && name == gatewayName && strings.HasPrefix(r.To, "gateway.s"):
			default:
				t.Errorf("%s reaches %s through %s (%s %s)", name, r.To, r.Object, r.Kind, r.Rights)
			}
		}
	}
	for _, comp := range sys.Components {
		if comp.Name == irmName && (comp.Supervisor != rootName || comp.FaultEndpoint != faultEndpoint(rootName)) {
			t.Errorf("irm: supervisor %q, fault endpoint %q; want the root's", comp.Supervisor, comp.FaultEndpoint)
		}
	}
}
