// Package status is a node's status page: who the node is, its IPCPs and
// layers, each IPCP's neighbours and counters, the names and the flows,
// as an HTML page (and as JSON with ?format=json). It reads everything
// through the read-only management commands a session with the IRM may
// run (the ones `ouro` shows), at request time, so it shows no more than
// `ouro ipcps`, `ouro stats`, `ouro names` and `ouro flows` would.
//
// A hosted node serves it beside /metrics on its metrics listener
// ([node] metrics); it is a plain http.Handler, so a board can serve it
// with net/http on its own TCP/IP stack.
package status

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow/irm"
)

// Mgmt is what the page reads: management commands, answered one page at
// a time (irm.Broker).
type Mgmt interface {
	Mgmt(ctx context.Context, req irm.MgmtReq) (irm.MgmtResp, error)
}

// Page is a node's status at one moment.
type Page struct {
	Node     Node       `json:"node"`
	Time     time.Time  `json:"time"`
	IPCPs    irm.Table  `json:"ipcps"`
	Names    irm.Table  `json:"names"`
	Flows    irm.Table  `json:"flows"`
	Counters []Counters `json:"counters"`
	// Errors are the commands that did not answer (a restarting IPCP):
	// the rest of the page is still shown.
	Errors []string `json:"errors,omitempty"`
}

// Node is the node's identity, from its signed identity document.
type Node struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	Board       string `json:"board"`
	Measurement string `json:"measurement,omitempty"`
}

// Counters are one IPCP's `ouro stats` table.
type Counters struct {
	IPCP  string    `json:"ipcp"`
	Layer string    `json:"layer"`
	Stats irm.Table `json:"stats"`
}

// maxPages bounds the pages read of one table (each a control message).
const maxPages = 64

// Read gathers the page through m, each command bounded by ctx.
func Read(ctx context.Context, m Mgmt) Page {
	p := Page{Time: time.Now().UTC()}
	fail := func(what string, err error) {
		p.Errors = append(p.Errors, fmt.Sprintf("%s: %v", what, err))
	}
	if r, err := m.Mgmt(ctx, irm.MgmtReq{Cmd: irm.CmdID}); err != nil {
		fail("id", err)
	} else if n, err := nodeOf(r.Text); err != nil {
		fail("id", err)
	} else {
		p.Node = n
	}
	var err error
	if p.IPCPs, err = table(ctx, m, irm.MgmtReq{Cmd: irm.CmdIPCPs}); err != nil {
		fail("ipcps", err)
	}
	if p.Names, err = table(ctx, m, irm.MgmtReq{Cmd: irm.CmdNames}); err != nil {
		fail("names", err)
	}
	if p.Flows, err = table(ctx, m, irm.MgmtReq{Cmd: irm.CmdFlows}); err != nil {
		fail("flows", err)
	}
	name, layer := column(p.IPCPs, "name"), column(p.IPCPs, "layer")
	for _, row := range p.IPCPs.Rows {
		if name < 0 {
			break
		}
		c := Counters{IPCP: row[name]}
		if layer >= 0 {
			c.Layer = row[layer]
		}
		if c.Stats, err = table(ctx, m, irm.MgmtReq{Cmd: "stats", IPCP: c.IPCP}); err != nil {
			fail("stats "+c.IPCP, err)
			continue
		}
		p.Counters = append(p.Counters, c)
	}
	return p
}

// table reads every page of a management table.
func table(ctx context.Context, m Mgmt, req irm.MgmtReq) (irm.Table, error) {
	var all irm.Table
	next := 0
	for range maxPages {
		r := req
		r.Args = map[string]string{irm.ArgOffset: strconv.Itoa(next)}
		resp, err := m.Mgmt(ctx, r)
		if err != nil {
			return all, err
		}
		all.Columns = resp.Table.Columns
		all.Rows = append(all.Rows, resp.Table.Rows...)
		if resp.Next == 0 {
			return all, nil
		}
		next = resp.Next
	}
	return all, fmt.Errorf("more than %d pages", maxPages)
}

func column(t irm.Table, name string) int {
	for i, c := range t.Columns {
		if c == name {
			return i
		}
	}
	return -1
}

// nodeOf decodes the node's identity document (base64, as `ouro id`
// gets it) and checks its signature.
func nodeOf(text string) (Node, error) {
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return Node{}, fmt.Errorf("identity document: %w", err)
	}
	d, err := identity.VerifyDocument(b)
	if err != nil {
		return Node{}, err
	}
	n := Node{Name: d.Name, ID: d.ID, Board: d.Board}
	if d.Measurement != (identity.Measurement{}) {
		n.Measurement = fmt.Sprintf("%x", d.Measurement[:])
	}
	return n, nil
}

// Handler serves the page at "/": HTML, or JSON with ?format=json. mgmt
// returns the session to read through (nil: the node is restarting its
// component: 503); each request is bounded by timeout.
func Handler(mgmt func() Mgmt, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		m := mgmt()
		if m == nil {
			http.Error(w, "status: no session with the node yet", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		p := Read(ctx, m)
		switch f := r.URL.Query().Get("format"); f {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(p)
		case "", "html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			if err := page.Execute(w, p); err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(w, "<p>status: %s</p>", template.HTMLEscapeString(err.Error()))
			}
		default:
			http.Error(w, fmt.Sprintf("status: format %q: want html or json", f), http.StatusBadRequest)
		}
	})
}

// page is the HTML page; html/template escapes every value (names and
// counters come from peers too).
var page = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ouro node {{.Node.Name}}</title>
<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#eee}</style>
</head><body>
<h1>ouro node {{.Node.Name}}</h1>
<p>id <code>{{.Node.ID}}</code>, board {{.Node.Board}}{{if .Node.Measurement}}, image <code>{{.Node.Measurement}}</code>{{end}}; at {{.Time.Format "2006-01-02 15:04:05 UTC"}} (<a href="?format=json">json</a>, <a href="/metrics">metrics</a>)</p>
{{range .Errors}}<p><b>not answered:</b> {{.}}</p>{{end}}
<h2>IPCPs</h2>{{template "table" .IPCPs}}
<h2>Names</h2>{{template "table" .Names}}
<h2>Flows</h2>{{template "table" .Flows}}
{{range .Counters}}<h2>{{.IPCP}} (layer {{.Layer}})</h2>{{template "table" .Stats}}{{end}}
</body></html>
{{define "table"}}<table><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}`))
