package irm

import (
	"fmt"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/rpc"
)

// Operations on the IRM's endpoint.
//
// Which role (the caller's badge, see Role) may call each is checked by
// the IRM: session operations only through a session cap, OpSession only
// through a component's own cap, OpFlowReq and OpHello only from IPCPs.
const (
	OpAlloc      rpc.Op = 1  // session: AllocArgs → caps [rx, tx] + flow.Info
	OpBind       rpc.Op = 2  // session: NameArgs
	OpUnbind     rpc.Op = 3  // session: NameArgs
	OpAccept     rpc.Op = 4  // session: → caps [rx, tx] + flow.Info
	OpJoin       rpc.Op = 5  // session: JoinArgs → caps [rx, tx] + flow.Info
	OpEndSession rpc.Op = 6  // session: its bindings are dropped, its cap revoked
	OpFlowReq    rpc.Op = 7  // IPCP: AllocReq → caps [rx, tx] (the IPCP's end)
	OpMgmt       rpc.Op = 8  // session: MgmtReq → MgmtResp
	OpHello      rpc.Op = 9  // IPCP, once it serves its endpoint: Info
	OpSession    rpc.Op = 10 // IPCP, app, manager, gateway: SessionReq → cap [session] + SessionInfo
	OpTarget     rpc.Op = 11 // session of an in-node component: TargetArgs + cap [endpoint] (target.go)
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
	_    struct{} `cbor:",toarray"`
	Name string
	QoS  flow.QoS
}

// NameArgs names a name. Bind: Peers, if not empty, are the only nodes
// (ids as identity.NameOf gives them) whose sealed flows to the name the
// program takes (flow.PeerBinder).
type NameArgs struct {
	_     struct{} `cbor:",toarray"`
	Name  string
	Peers []string `cbor:",omitempty"`
}

// MaxBindPeers bounds a bind's list of peers.
const MaxBindPeers = 64

// CheckPeers checks a bind's list of peers: at most MaxBindPeers ids,
// each 1 to 64 bytes.
func CheckPeers(peers []string) error {
	if len(peers) > MaxBindPeers {
		return fmt.Errorf("irm: bind: %d peers, at most %d: %w", len(peers), MaxBindPeers, flow.ErrInvalid)
	}
	for _, p := range peers {
		if p == "" || len(p) > 64 {
			return fmt.Errorf("irm: bind: peer id %q: %w", p, flow.ErrInvalid)
		}
	}
	return nil
}

// JoinArgs names a broadcast layer to join.
type JoinArgs struct {
	_     struct{} `cbor:",toarray"`
	Layer string
}

// SessionReq opens a session. Only the gateway's requests are taken at
// their word: for it, Principal names who the session acts for (a hosted
// program's "uid:N") and Mgmt asks for a management session. For an
// in-node component the principal is the component itself and Mgmt
// follows its role.
type SessionReq struct {
	_         struct{} `cbor:",toarray"`
	Principal string
	Mgmt      bool
}

// SessionInfo describes a session the IRM opened.
type SessionInfo struct {
	_         struct{} `cbor:",toarray"`
	ID        uint64
	Principal string
	Mgmt      bool
}
