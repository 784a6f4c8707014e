//go:build tamago

package node

import (
	"fmt"

	"github.com/ouronet/ouro/flow"
)

// Boards have no medium for the diode and carrier shims (no file system,
// no host UDP socket: docs/intermittent.md): their tables are refused, and
// the shims' code (with its Reed-Solomon tables) stays out of the image.

const hostedOnly = "hosted only: a board has no medium for it (docs/intermittent.md)"

// signLabels returns the labels an IPCP of kind may have signed.
func signLabels(string) []string { return ipcpSignLabels }

// agrees reports whether an IPCP of kind may have X25519 agreements made
// with the node key: none on boards (the carrier is hosted only).
func agrees(string) bool { return false }

// grantKinds are the kinds whose signing grants differ: on boards, all
// kinds sign alike.
var grantKinds = []string{"ipcp"}

func grantKind(string) string { return "ipcp" }

func newDiode(p IPCPConfig, _ ipcpDeps, _ ipcpEnv) (ipcpImpl, error) {
	return nil, fmt.Errorf("[ipcp.diode] of %s: %s: %w", p.Name, hostedOnly, flow.ErrInvalid)
}

func newCarrier(p IPCPConfig, _ ipcpDeps, _ ipcpEnv) (ipcpImpl, error) {
	return nil, fmt.Errorf("[ipcp.carrier] of %s: %s: %w", p.Name, hostedOnly, flow.ErrInvalid)
}

func (k *checker) checkDiode(_ diodeConfig, _ IPCPConfig, path []any, where string) {
	k.add(path, where, "", "%s", hostedOnly)
}

func (k *checker) checkCarrier(_ carrierConfig, _ IPCPConfig, path []any, where string) {
	k.add(path, where, "", "%s", hostedOnly)
}
