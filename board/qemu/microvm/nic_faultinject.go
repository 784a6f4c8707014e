//go:build tamago && amd64 && faultinject

package microvm

import "github.com/usbarmory/tamago/kvm/virtio"

// Wedge leaves the NIC as a fault in its driver might: the device reset
// (its queues no longer ready) and left so, so that nothing arrives and a
// blocked Receive is never woken by a frame. Only Reset (or Init) brings
// it back. Built only with the tag faultinject (the QEMU fault test).
func (n *NIC) Wedge() {
	n.txMu.Lock()
	defer n.txMu.Unlock()

	n.write(virtio.Status, 0)
}
