package node

import (
	"crypto/rand"
	"fmt"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/kernel"
)

// The node's identity: one ed25519 key per node, held by the signer
// component alone (signer.go). The other components get a signing
// capability with the labels they need:
//
//   - each configured IPCP: enrollment, adjacency, link-state,
//     directory and flow-allocation messages, key exchanges;
//   - the IRM: key exchanges of sealed flows, which programs ask it to
//     sign for their flows (programs hold no signing cap).
//
// IPCPs created at run time ("ouro create") get no signing capability:
// they make an ephemeral identity of their own (docs/security.md).

// ipcpSignLabels are the labels an IPCP component may have signed.
var ipcpSignLabels = []string{
	identity.LabelEnroll, identity.LabelAdj, identity.LabelLSU,
	identity.LabelDir, identity.LabelFA, identity.LabelKex,
}

// irmSignLabels are the labels the IRM may have signed.
var irmSignLabels = []string{identity.LabelKex}

// loadIdentity returns the node's identity: the image's (cfg.Identity),
// the key file's ([node] key, created if missing), or a fresh ephemeral
// one.
func loadIdentity(cfg *Config) (*identity.Identity, error) {
	switch {
	case cfg.Identity != nil:
		return cfg.Identity, nil
	case cfg.Node.Key != "":
		id, err := identity.LoadOrCreate(cfg.Node.Key, rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("node: [node] key: %w", err)
		}
		return id, nil
	}
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	return id, nil
}

// newSigner builds the signer component for the node's components.
func (n *Node) newSigner() (*SignerComponent, error) {
	sc := SignerConfig{Identity: n.id, Name: n.cfg.Node.Name, Board: n.cfg.Board, Measurement: n.cfg.Measurement}
	for _, p := range n.cfg.IPCPs {
		sc.Clients = append(sc.Clients, SignerClientSpec{Component: ipcpComponent(p.Name), Labels: signLabels(p.Kind), Agree: agrees(p.Kind)})
	}
	sc.Clients = append(sc.Clients, SignerClientSpec{Component: irmName, Labels: irmSignLabels})
	// The IRM also holds, but does not use, one signing cap per kind of
	// grant, to copy into the IPCPs it creates at run time (ouro create):
	// they sign with the node's key, under what their kind may sign.
	for _, kind := range grantKinds {
		sc.Clients = append(sc.Clients, SignerClientSpec{Component: irmName, Slot: createdSignerSlot(kind),
			Labels: signLabels(kind), Agree: agrees(kind)})
	}
	return NewSignerComponent(sc)
}

// createdSignerSlot is the IRM's slot of the signing cap an IPCP of kind
// created at run time gets (kinds that sign alike share one: grantKind).
func createdSignerSlot(kind string) string { return "signer.created." + grantKind(kind) }

// superviseSigner makes the root the signer's supervisor (root.go): the
// signer holds no cap to the IRM, so the IRM neither supervises nor
// reaches it, and a program reaches it only through the IRM.
func superviseSigner(sys *kernel.System) {
	for i := range sys.Components {
		switch sys.Components[i].Name {
		case SignerName:
			sys.Components[i].Supervisor = rootName
			sys.Components[i].FaultEndpoint = faultEndpoint(rootName)
		case rootName:
			sys.Components[i].Caps = append(sys.Components[i].Caps,
				kernel.CapSpec{Name: restartSlot(SignerName), Object: SignerName, Rights: kernel.Write})
		}
	}
}

// Identity returns the node's public identity (its key's name is
// identity.NameOf(Public)).
func (n *Node) Identity() *identity.Identity { return n.id }
