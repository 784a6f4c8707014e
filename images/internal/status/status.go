// Package status is a node's status page: who the node is, its IPCPs and
// layers, each IPCP's counters and a unicast IPCP's neighbours (what
// waits in the queues to them), the names and the flows,
// and its IP bridges' counters, as an HTML page (and as JSON with
// ?format=json). It reads everything through the read-only management
// commands a session with the IRM may run (the ones `ouro` shows), at
// request time, so it shows no more than `ouro ipcps`, `ouro stats`,
// `ouro ipcp ports`, `ouro names`, `ouro flows` and `ouro bridges` would.
//
// A hosted node serves it beside /metrics on its metrics listener
// ([node] metrics, with net/http); a node with its own TCP/IP stack
// ([[ipnet]] netstack, boards too) serves it there with Serve, a small
// HTTP/1.0 responder (server.go).
package status

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// Mgmt is what the page reads: management commands, answered one page at
// a time (irm.Broker).
type Mgmt interface {
	Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error)
}

// Page is a node's status at one moment.
type Page struct {
	Node     Node       `json:"node"`
	Time     time.Time  `json:"time"`
	IPCPs    ipcp.Table `json:"ipcps"`
	Names    ipcp.Table `json:"names"`
	Flows    ipcp.Table `json:"flows"`
	Counters []Counters `json:"counters"`
	// Bridges are the node's IP bridges' counters per route (`ouro
	// bridges`); no rows when it has none.
	Bridges ipcp.Table `json:"bridges"`
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

// Counters are one IPCP's `ouro stats` table, and a unicast IPCP's
// N-1 flows (`ouro ipcp ports`): its neighbours, what waits in their
// queues and rings, their packets.
type Counters struct {
	IPCP  string     `json:"ipcp"`
	Layer string     `json:"layer"`
	Stats ipcp.Table `json:"stats"`
	Ports ipcp.Table `json:"ports,omitzero"`
}

// maxPages bounds the pages read of one table (each a control message).
const maxPages = 64

// Read gathers the page through m, each command bounded by ctx.
func Read(ctx context.Context, m Mgmt) Page {
	p := Page{Time: time.Now().UTC()}
	fail := func(what string, err error) {
		p.Errors = append(p.Errors, fmt.Sprintf("%s: %v", what, err))
	}
	failed := func(err error) { p.Errors = append(p.Errors, err.Error()) } // a table's error names its command
	if r, err := m.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdID}); err != nil {
		fail("id", err)
	} else if n, err := nodeOf(r.Text); err != nil {
		fail("id", err)
	} else {
		p.Node = n
	}
	var err error
	if p.IPCPs, err = table(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs}); err != nil {
		failed(err)
	}
	if p.Names, err = table(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdNames}); err != nil {
		failed(err)
	}
	if p.Flows, err = table(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdFlows}); err != nil {
		failed(err)
	}
	name, layer, kind := column(p.IPCPs, "name"), column(p.IPCPs, "layer"), column(p.IPCPs, "kind")
	for _, row := range p.IPCPs.Rows {
		if name < 0 {
			break
		}
		c := Counters{IPCP: row[name]}
		if layer >= 0 {
			c.Layer = row[layer]
		}
		if c.Stats, err = table(ctx, m, ipcp.MgmtReq{Cmd: "stats", IPCP: c.IPCP}); err != nil {
			failed(err)
			continue
		}
		if kind >= 0 && row[kind] == "unicast" {
			// Not a member yet: no ports (ErrNotFound), nothing wrong.
			if c.Ports, err = table(ctx, m, ipcp.MgmtReq{Cmd: "ports", IPCP: c.IPCP}); err != nil && !errors.Is(err, flow.ErrNotFound) {
				failed(err)
			}
		}
		p.Counters = append(p.Counters, c)
	}
	if p.Bridges, err = table(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdBridges}); err != nil && !errors.Is(err, flow.ErrInvalid) && !errors.Is(err, flow.ErrRefused) {
		failed(err) // else a node from before "bridges" (unknown to its IRM, or to its management flow)
	}
	return p
}

// table reads every page of a management table, at most maxPages (on an
// error, with the rows read before it).
func table(ctx context.Context, m Mgmt, req ipcp.MgmtReq) (ipcp.Table, error) {
	r, err := ipcp.ReadPages(ctx, m.Mgmt, req, maxPages)
	return r.Table, err
}

func column(t ipcp.Table, name string) int {
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

// Render writes p in format: "html" (or "") or "json".
func Render(w io.Writer, format string, p Page) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	case "", "html":
		return writeHTML(w, p)
	}
	return fmt.Errorf("status: format %q: want html or json: %w", format, errFormat)
}

// ContentType is the Content-Type of format.
func ContentType(format string) string {
	if format == "json" {
		return "application/json"
	}
	return "text/html; charset=utf-8"
}

var errFormat = errors.New("unknown format")

// IsFormatError reports whether Render refused the format.
func IsFormatError(err error) bool { return errors.Is(err, errFormat) }

// writeHTML writes the page as HTML, every value escaped (names and
// counters come from peers too). Written with fmt and html.EscapeString
// rather than html/template: a board carries this code, and the template
// packages would add about a megabyte to its image.
func writeHTML(w io.Writer, p Page) error {
	e := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ouro node %s</title>\n", e(p.Node.Name))
	b.WriteString("<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#eee}</style>\n</head><body>\n")
	fmt.Fprintf(&b, "<h1>ouro node %s</h1>\n<p>id <code>%s</code>, board %s", e(p.Node.Name), e(p.Node.ID), e(p.Node.Board))
	if p.Node.Measurement != "" {
		fmt.Fprintf(&b, ", image <code>%s</code>", e(p.Node.Measurement))
	}
	fmt.Fprintf(&b, "; at %s (<a href=\"?format=json\">json</a>)</p>\n", p.Time.Format("2006-01-02 15:04:05 UTC"))
	for _, err := range p.Errors {
		fmt.Fprintf(&b, "<p><b>not answered:</b> %s</p>\n", e(err))
	}
	table := func(title string, t ipcp.Table) {
		fmt.Fprintf(&b, "<h2>%s</h2><table><tr>", e(title))
		for _, c := range t.Columns {
			fmt.Fprintf(&b, "<th>%s</th>", e(c))
		}
		b.WriteString("</tr>\n")
		for _, r := range t.Rows {
			b.WriteString("<tr>")
			for _, v := range r {
				fmt.Fprintf(&b, "<td>%s</td>", e(v))
			}
			b.WriteString("</tr>\n")
		}
		b.WriteString("</table>\n")
	}
	table("IPCPs", p.IPCPs)
	table("Names", p.Names)
	table("Flows", p.Flows)
	for _, c := range p.Counters {
		table(fmt.Sprintf("%s (layer %s)", c.IPCP, c.Layer), c.Stats)
		if len(c.Ports.Rows) > 0 {
			table(fmt.Sprintf("%s: neighbours", c.IPCP), c.Ports)
		}
	}
	if len(p.Bridges.Rows) > 0 {
		table("IP bridges", p.Bridges)
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
