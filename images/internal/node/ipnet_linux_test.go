package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/images/internal/ipstack/ipstacktest"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/kernel/logx"
)

// TestIPNetStatusPage: a node whose [[ipnet]] bridge has the node's own
// TCP/IP stack (netstack = 10.9.0.2/24) serves its status page there
// (status = 80). A program on the node's socket with a stack and a
// bridge of its own (10.9.0.1, routing 10.9.0.2 to the node's bridge)
// fetches it over HTTP: every packet crosses ouro flows, and the node
// has no other way to be reached at that address. Wrong paths and
// methods are refused.
func TestIPNetStatusPage(t *testing.T) {
	_, c := bridgeNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
[[ipnet]]
name = "ip.n"
netstack = "10.9.0.2/24"
status = 80
routes = ["10.9.0.1=ip.t"]
`)
	client := ipstacktest.Client(t, c, "10.9.0.1/24", "ip.t", ipnet.Route{Prefix: netip.MustParsePrefix("10.9.0.2/32"), Name: "ip.n"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	get := func(method, path string) (int, string, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://10.9.0.2:80"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b), err
	}
	var code int
	var ct, body string
	var err error
	for { // the node's bridge binds its name as the node starts
		if code, ct, body, err = get("GET", "/"); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("GET /: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 200 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "<h1>ouro node n</h1>") || !strings.Contains(body, "<td>ip.t</td>") {
		t.Fatalf("GET /: %d %s\n%s", code, ct, body)
	}
	code, ct, body, err = get("GET", "/?format=json")
	var p status.Page
	if err != nil || code != 200 || ct != "application/json" || json.Unmarshal([]byte(body), &p) != nil || p.Node.Name != "n" || len(p.IPCPs.Rows) != 1 {
		t.Fatalf("GET /?format=json: %d %s %v: %s", code, ct, err, body)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{{"GET", "/nothing", 404}, {"POST", "/", 405}, {"GET", "/?format=xml", 400}} {
		if code, _, _, err := get(tc.method, tc.path); err != nil || code != tc.want {
			t.Errorf("%s %s: %d, %v; want %d", tc.method, tc.path, code, err, tc.want)
		}
	}
	if _, err := IPNets(&Config{IPNets: []IPNetConfig{{Name: "x", TUN: "tun0"}}}, nil, nil); !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("a tun bridge without TUN interfaces: %v", err)
	}
}

// TestIPNetConfigChecks: the IP side is one of tun and netstack; status
// needs netstack; netstack is ADDR/BITS.
func TestIPNetConfigChecks(t *testing.T) {
	for _, tc := range []struct {
		c    IPNetConfig
		want string
	}{
		{IPNetConfig{Name: "x"}, "set one of tun"},
		{IPNetConfig{Name: "x", TUN: "t", Netstack: "10.0.0.1/24"}, "set one of tun"},
		{IPNetConfig{Name: "x", Netstack: "10.0.0.1"}, "want ADDR/BITS"},
		{IPNetConfig{Name: "x", TUN: "t", Status: 80}, "set netstack"},
		{IPNetConfig{Name: "x", Netstack: "fd00::1/64", Status: 80}, ""},
	} {
		_, _, err := tc.c.bridgeConfig()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, flow.ErrInvalid)) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

// bridgeNode starts a node of configuration conf with its [[ipnet]]
// bridges, the socket gateway and extras, and returns it with a session
// on its socket; both end with the test.
func bridgeNode(t *testing.T, conf string, extras ...Extra) (*Node, *flow.SocketBroker) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "n.sock")
	cfg, err := ParseConfig([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	bridges, err := IPNets(cfg, nil, logx.Test(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, append(append([]Extra{GatewayWith(sock, cfg.GatewayOptions(), logx.Test(t))}, extras...), bridges...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	c, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n, c
}
