package status

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// fakeMgmt answers the page's commands from tables; an IPCP named
// "down" does not answer.
type fakeMgmt struct{ ipcps ipcp.Table }

func (f fakeMgmt) Mgmt(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	switch req.Cmd {
	case ipcp.CmdIPCPs:
		return ipcp.MgmtResp{Table: f.ipcps}, nil
	case ipcp.CmdNames, ipcp.CmdFlows:
		return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"name"}, Rows: [][]string{{"<script>alert(1)</script>"}}}}, nil
	case "stats":
		if req.IPCP == "down" {
			return ipcp.MgmtResp{}, errors.New("restarting")
		}
		return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"key", "value"}, Rows: [][]string{{"pkts", "7"}}}}, nil
	case ipcp.CmdBridges:
		return ipcp.MgmtResp{Table: bridges}, nil
	case "ports":
		if req.IPCP == "b.uni" { // not a member yet
			return ipcp.MgmtResp{}, flow.ErrNotFound
		}
		return ipcp.MgmtResp{Table: ports}, nil
	}
	return ipcp.MgmtResp{}, flow.ErrNotFound
}

var bridges = ipcp.Table{Columns: []string{"bridge", "prefix", "peer", "packets"}, Rows: [][]string{{"ip.a", "10.7.0.0/24", "ip.b", "4217"}}}

var ports = ipcp.Table{Columns: []string{"kind", "name", "queued"}, Rows: [][]string{{"neighbour", "c.uni", "31"}}}

var mgmt = fakeMgmt{ipcps: ipcp.Table{Columns: []string{"name", "layer", "kind"}, Rows: [][]string{{"a.uni", "uni", "unicast"}, {"b.uni", "uni", "unicast"}, {"down", "x", "udp"}}}}

// TestPage: what a peer named is escaped; a command that does not
// answer is listed and the rest shown; a unicast IPCP's neighbours are
// there (none for one that is not a member yet, and no error); the IP
// bridges' table is there; JSON carries the same.
func TestPage(t *testing.T) {
	p := Read(context.Background(), mgmt)
	if len(p.Counters) != 2 || len(p.Errors) != 2 { // id (not served here) and stats down
		t.Fatalf("counters %v, errors %v", p.Counters, p.Errors)
	}
	if !reflect.DeepEqual(p.Counters[0].Ports, ports) || len(p.Counters[1].Ports.Rows) != 0 {
		t.Fatalf("ports: %+v, %+v", p.Counters[0].Ports, p.Counters[1].Ports)
	}
	var b strings.Builder
	if err := Render(&b, "", p); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script>") || !strings.Contains(b.String(), "&lt;script&gt;") || !strings.Contains(b.String(), "stats down: restarting") ||
		!strings.Contains(b.String(), "<h2>IP bridges</h2>") || !strings.Contains(b.String(), "<td>10.7.0.0/24</td><td>ip.b</td><td>4217</td>") ||
		!strings.Contains(b.String(), "<h2>a.uni: neighbours</h2>") || !strings.Contains(b.String(), "<td>neighbour</td><td>c.uni</td><td>31</td>") ||
		strings.Contains(b.String(), "b.uni: neighbours") {
		t.Fatalf("page:\n%s", b.String())
	}
	b.Reset()
	if err := Render(&b, "json", p); err != nil {
		t.Fatal(err)
	}
	var q Page
	if err := json.Unmarshal([]byte(b.String()), &q); err != nil || len(q.Counters) != 2 || !reflect.DeepEqual(q.Bridges, bridges) || !reflect.DeepEqual(q.Counters[0].Ports, ports) {
		t.Fatalf("json: %v %+v", err, q)
	}
	if err := Render(io.Discard, "xml", p); !IsFormatError(err) {
		t.Fatalf("format xml: %v", err)
	}
}

// TestServe: the responder answers GET / (HTML and JSON), refuses other
// methods, paths, formats and malformed requests, and stops with its
// context.
func TestServe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, mgmt, 5*time.Second) }()
	ask := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, req)
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for req, want := range map[string]string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n":                     "HTTP/1.0 200 OK\r\nContent-Type: text/html",
		"GET /?format=json HTTP/1.0\r\n\r\n":                    "HTTP/1.0 200 OK\r\nContent-Type: application/json",
		"GET /?format=xml HTTP/1.0\r\n\r\n":                     "HTTP/1.0 400 ",
		"POST / HTTP/1.1\r\n\r\n":                               "HTTP/1.0 405 ",
		"GET /x HTTP/1.1\r\n\r\n":                               "HTTP/1.0 404 ",
		"GARBAGE\r\n\r\n":                                       "HTTP/1.0 400 ",
		"GET\t/ HTTP/1.\n\n":                                    "HTTP/1.0 400 ",
		"GET /  HTTP/1.1\r\n\r\n":                               "HTTP/1.0 400 ",
		"GET / HTTP/2.0\r\n\r\n":                                "HTTP/1.0 400 ",
		"GET / HTTP/1.0\n\n":                                    "HTTP/1.0 200 OK",
		"GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", 2000): "HTTP/1.0 400 ",
	} {
		if got := ask(req); !strings.HasPrefix(got, want) {
			t.Errorf("%.30q: answered %.60q, want %q", req, got, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after its context ended: %v", err)
	}
}

// FuzzReadRequest: no request crashes the parser or is taken for
// anything but GET / with a format.
func FuzzReadRequest(f *testing.F) {
	f.Add("GET /?format=json HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("GET / HTTP/1.0\r\n\r\n")
	f.Add("POST /a?b HTTP/1.1\r\n\r\n")
	f.Fuzz(func(t *testing.T, req string) {
		code, format, err := readRequest(bufio.NewReaderSize(io.LimitReader(strings.NewReader(req), maxRequest), 1024))
		if err == nil && (code != 200 || !strings.HasPrefix(req, "GET /")) {
			t.Fatalf("%q taken: %d %q", req, code, format)
		}
	})
}
