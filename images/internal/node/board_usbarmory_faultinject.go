//go:build tamago && arm && !pi2 && !pizero && !pi1 && faultinject

package node

// wedgeBoardLink returns what wedges board link p after a fault of its
// driver, in a faultinject build: the ENET (usbarmory.NIC.Wedge), so that
// the QEMU fault test shows the restarted driver re-initialising it, and
// the USB gadget (usbarmory.ECM.Wedge: its interrupts masked and no
// longer serviced), which the restarted driver's ECM.Reset undoes (not
// run under QEMU, which has no USB gadget, nor yet on hardware).
func wedgeBoardLink(p boardPort) func() {
	if p == "usb" {
		return func() {
			if e := BoardECM(); e != nil {
				e.Wedge()
			}
		}
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
