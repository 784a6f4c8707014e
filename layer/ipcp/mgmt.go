package ipcp

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/fxamacker/cbor/v2"
)

// The IRM's own management commands; anything else is passed to the IPCP
// named in the request.
const (
	CmdIPCPs  = "ipcps"  // the node's IPCPs
	CmdNames  = "names"  // names, their bindings and registrations
	CmdFlows  = "flows"  // flows brokered and still open
	CmdReg    = "reg"    // register Name in Layer (or every layer if empty)
	CmdUnreg  = "unreg"  // unregister Name from Layer (or every layer)
	CmdSystem = "system" // the kernel's system description; Args["format"]: table, dot, mermaid or json
	CmdID     = "id"     // the node's signed identity document, base64 (Config.Document)
	// CmdComponents lists every component of the node as the kernel
	// sees it (Config.ComponentStats): state, incarnations, faults,
	// budgets in use, and the IRM's supervision of it.
	CmdComponents = "components"
	// CmdKernel gives the kernel's node-wide packet-buffer figures
	// (Config.BufTotals) as rows of counter and value: granted, max,
	// made, in_use.
	CmdKernel = "kernel"
	// CmdAllocs gives the histogram of the flow allocations the IRM
	// made since it started, every program's, application's and IPCP's:
	// per layer that allocated the flow ("" when none did) and result
	// (ok, not_found, refused, timeout, busy, invalid, error), a row per
	// bucket with its upper bound in seconds ("+Inf" last), the
	// allocations up to it (cumulative) and the sum of their times
	// (columns layer, result, le, count, sum_seconds).
	CmdAllocs = "allocs"
	// CmdBridges lists the node's in-node IP bridges ([[ipnet]]) and
	// their counters: a row per route (its prefix and peer name) and
	// rows "in", "no_route" and "device" for what the bridge received,
	// could not route and failed to read (columns bridge, prefix, peer,
	// packets, bytes, drops, too_big, supers, flows, flow_errors, error;
	// docs/ipnet.md). A bridge that does not answer in time has one row
	// with its error.
	CmdBridges = "bridges"
)

// Management commands that change the node's set of IPCPs.
const (
	// CmdCreate creates an IPCP at run time: Name, Layer, Args["kind"],
	// and Args["config"], the kind's configuration table in TOML.
	CmdCreate = "create"
	// CmdDestroy stops the IPCP named in Name (or IPCP) and forgets it.
	CmdDestroy = "destroy"
)

// MgmtReq is a management command, as the ouro tool sends it.
type MgmtReq struct {
	_     struct{}          `cbor:",toarray"`
	Cmd   string            // see docs/tools.md: ipcps, names, flows, stats, reg, unreg, system, and IPCP commands
	IPCP  string            // the IPCP a command is for, if any
	Name  string            // a name argument
	Layer string            // a layer argument
	Args  map[string]string // further arguments
	Body  cbor.RawMessage   // a structured argument (e.g. an IPCP configuration)
}

// MgmtResp is a management result: a table, a text, or both. A long
// listing comes a page at a time (page.go): Next is where the next page
// starts (Args "offset"), 0 on the last; Total is the whole listing's
// rows (or bytes of a text-only answer).
type MgmtResp struct {
	_     struct{} `cbor:",toarray"`
	Table Table
	Text  string
	Next  int
	Total int
}

// Table is a management result shaped for both a terminal and --json.
type Table struct {
	_       struct{}   `cbor:",toarray"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
}

// RowMaps returns t's rows keyed by column (a row shorter than Columns
// lacks the columns it does not have).
func (t Table) RowMaps() []map[string]string {
	rows := make([]map[string]string, 0, len(t.Rows))
	for _, r := range t.Rows {
		m := make(map[string]string, len(t.Columns))
		for i, c := range t.Columns {
			if i < len(r) {
				m[c] = r[i]
			}
		}
		rows = append(rows, m)
	}
	return rows
}

// Paging. A management answer crosses kernel endpoints (IPCP → IRM →
// gateway), whose messages carry at most kernel.MaxPayload bytes, so a
// listing that does not fit (thousands of flows or names, a long system
// description) is answered a page at a time. A request asks for a page
// with Args[ArgOffset] (the first row, or byte of a text-only answer;
// default 0) and Args[ArgLimit] (at most that many rows; default: as
// many as fit). The answer's Next is the offset of the next page, 0 when
// none remains, and Total the size of the whole listing. A listing that
// changes between pages may repeat or miss rows, as any paged view. The
// ouro tool fetches every page (docs/wire/node-socket.md).
const (
	ArgOffset = "offset"
	ArgLimit  = "limit"
)

// MaxPages bounds the pages ReadAll fetches of one answer (a node paging
// in circles).
const MaxPages = 1 << 16

// MgmtFunc sends one management request and returns one page of its
// answer: a session's Mgmt, or a management flow's.
type MgmtFunc func(ctx context.Context, req MgmtReq) (MgmtResp, error)

// ReadAll sends req through m and fetches every page of its answer
// (docs/wire/node-socket.md): the rows of a table joined, the text of a
// text answer concatenated; at most MaxPages pages.
func ReadAll(ctx context.Context, m MgmtFunc, req MgmtReq) (MgmtResp, error) {
	return ReadPages(ctx, m, req, MaxPages)
}

// ReadPages is ReadAll with at most maxPages pages. On an error it also
// returns what the pages before it gave.
func ReadPages(ctx context.Context, m MgmtFunc, req MgmtReq, maxPages int) (MgmtResp, error) {
	what := req.Cmd
	if req.IPCP != "" {
		what += " " + req.IPCP
	}
	all, err := m(ctx, req)
	if err != nil {
		return MgmtResp{}, fmt.Errorf("%s: %w", what, err)
	}
	for next, pages := all.Next, 1; next > 0; pages++ {
		all.Next = 0
		if pages >= maxPages {
			return all, fmt.Errorf("%s: more than %d pages", what, maxPages)
		}
		r := req
		r.Args = maps.Clone(req.Args)
		if r.Args == nil {
			r.Args = map[string]string{}
		}
		r.Args[ArgOffset] = strconv.Itoa(next)
		page, err := m(ctx, r)
		if err != nil {
			return all, fmt.Errorf("%s (page %d, from %d): %w", what, pages+1, next, err)
		}
		if !slices.Equal(page.Table.Columns, all.Table.Columns) {
			return all, fmt.Errorf("%s: page %d has columns %v, the first %v", what, pages+1, page.Table.Columns, all.Table.Columns)
		}
		if page.Next != 0 && page.Next <= next {
			return all, fmt.Errorf("%s: page %d from %d says the next starts at %d", what, pages+1, next, page.Next)
		}
		all.Table.Rows = append(all.Table.Rows, page.Table.Rows...)
		if len(all.Table.Columns) == 0 {
			all.Text += page.Text
		}
		next = page.Next
	}
	all.Next = 0
	return all, nil
}
