package irm

import (
	"fmt"

	"github.com/ouronet/ouro/kernel"
)

// Role is what a cap to the IRM's endpoint is for. It is the top byte of
// the cap's badge, so the IRM checks it on every call without trusting
// anything the caller says; the rest of the badge is an id whose meaning
// depends on the role (an IPCP's index, a session's id, ...).
//
// Who holds which role (docs/node.md):
//   - RoleIPCP: each IPCP component's cap, badged with its index. It may
//     call the IPCP upcalls (FlowReq, Hello) and open sessions for the
//     IPCP's own N-1 flows; the IRM identifies the IPCP by this badge only.
//   - RoleApp: an in-node application component. It may open application
//     sessions for itself (its principal is its component name).
//   - RoleManager: an in-node component with management authority: like
//     RoleApp, but its sessions are management sessions.
//   - RoleGateway: the hosted socket gateway. It may open sessions for the
//     programs it serves, naming the principal (the peer's uid) and
//     whether the session manages the node; it decides that from the
//     peer's credentials.
//   - RoleSession and RoleMgmtSession: minted by the IRM for one session.
//     Every flow operation (Alloc, Bind, Unbind, Accept, Join, EndSession)
//     and management command is made through a session cap; state-changing
//     management needs RoleMgmtSession.
type Role uint8

// Roles.
const (
	RoleNone        Role = iota // unbadged: the IRM's own cap; no operation
	RoleIPCP                    // an IPCP component
	RoleApp                     // an in-node application component
	RoleManager                 // an in-node component with management authority
	RoleGateway                 // the hosted socket gateway
	RoleSession                 // an application session (minted by the IRM)
	RoleMgmtSession             // a management session (minted by the IRM)
)

func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RoleIPCP:
		return "ipcp"
	case RoleApp:
		return "app"
	case RoleManager:
		return "manager"
	case RoleGateway:
		return "gateway"
	case RoleSession:
		return "session"
	case RoleMgmtSession:
		return "management session"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

const (
	roleShift = 56
	idMask    = 1<<roleShift - 1
)

// MakeBadge returns the badge of a cap to the IRM's endpoint for role r
// and id (the low 56 bits are kept).
func MakeBadge(r Role, id uint64) kernel.Badge {
	return kernel.Badge(uint64(r)<<roleShift | id&idMask)
}

// RoleOf returns the role a badge encodes.
func RoleOf(b kernel.Badge) Role { return Role(uint64(b) >> roleShift) }

// idOf returns the id part of a badge.
func idOf(b kernel.Badge) uint64 { return uint64(b) & idMask }

// describeBadge names a caller for error messages.
func describeBadge(b kernel.Badge) string {
	return fmt.Sprintf("%s %#x", RoleOf(b), idOf(b))
}
