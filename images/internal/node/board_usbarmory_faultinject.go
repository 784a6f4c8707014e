//go:build tamago && arm && !pi2 && !pizero && !pi1 && faultinject

package node

// wedgeBoardLink returns what wedges board link p after a fault of its
// driver, in a faultinject build: the ENET (usbarmory.NIC.Wedge), so that
// the QEMU fault test shows the restarted driver re-initialising it.
func wedgeBoardLink(p boardPort) func() {
	if p == "usb" {
		return nil
	}
	return func() {
		board.mu.Lock()
		nic := board.nic
		board.mu.Unlock()
		if nic != nil {
			nic.Wedge()
		}
	}
}
