package irm

import (
	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/rpc"
)

// Operations on the IRM's endpoint.
const (
	OpAlloc      rpc.Op = 1  // AllocArgs → caps [rx, tx] + flow.Info
	OpBind       rpc.Op = 2  // NameArgs
	OpUnbind     rpc.Op = 3  // NameArgs
	OpAccept     rpc.Op = 4  // SessionArgs → caps [rx, tx] + flow.Info
	OpJoin       rpc.Op = 5  // JoinArgs → caps [rx, tx] + flow.Info
	OpEndSession rpc.Op = 6  // SessionArgs: the session's bindings are dropped
	OpFlowReq    rpc.Op = 7  // from an IPCP: AllocReq → caps [rx, tx] (the IPCP's end)
	OpMgmt       rpc.Op = 8  // MgmtReq → MgmtResp
	OpHello      rpc.Op = 9  // from an IPCP at start: Info
	opIPCPBase   rpc.Op = 64 // operations on an IPCP's endpoint start here
)

// Operations on an IPCP's endpoint (served by ServeIPCP).
const (
	OpIPCPInfo       = opIPCPBase + 1 // → Info
	OpIPCPRegister   = opIPCPBase + 2 // NameArgs
	OpIPCPUnregister = opIPCPBase + 3 // NameArgs
	OpIPCPQuery      = opIPCPBase + 4 // NameArgs
	OpIPCPAlloc      = opIPCPBase + 5 // AllocReq + caps [rx, tx] (the IPCP's end)
	OpIPCPMgmt       = opIPCPBase + 6 // MgmtReq → MgmtResp
	OpIPCPJoin       = opIPCPBase + 7 // JoinArgs + caps [rx, tx]
)

// AllocArgs asks for a flow.
type AllocArgs struct {
	_       struct{} `cbor:",toarray"`
	Session uint64
	Name    string
	QoS     flow.QoS
}

// NameArgs names a name (for a session, when it comes from a client).
type NameArgs struct {
	_       struct{} `cbor:",toarray"`
	Session uint64
	Name    string
}

// SessionArgs identifies a client session.
type SessionArgs struct {
	_       struct{} `cbor:",toarray"`
	Session uint64
}

// JoinArgs names a broadcast layer to join.
type JoinArgs struct {
	_       struct{} `cbor:",toarray"`
	Session uint64
	Layer   string
}

// AllocResult is an IPCP's answer to OpIPCPAlloc and OpIPCPJoin.
type AllocResult struct {
	_      struct{} `cbor:",toarray"`
	MaxSDU int      // the largest SDU the layer carries; 0: flow.MaxSDU
}

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
