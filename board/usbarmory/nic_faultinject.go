//go:build tamago && arm && faultinject

package usbarmory

import "github.com/usbarmory/tamago/soc/nxp/enet"

// Wedge leaves the NIC as a fault in its driver might: the MAC disabled
// and its interrupts masked, so that nothing arrives and a blocked
// Receive is never woken by a frame. Only Reset (or Init) brings it back.
// Built only with the tag faultinject (the QEMU fault test).
func (n *NIC) Wedge() {
	n.txMu.Lock()
	defer n.txMu.Unlock()

	n.mask(eirRXF|eirTXF, false)
	n.write(enet.ENETx_ECR, n.read(enet.ENETx_ECR)&^(1<<enet.ECR_ETHEREN))
}
