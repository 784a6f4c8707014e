//go:build tamago && arm && faultinject

package usbarmory

// Wedge leaves the USB gadget as a fault in its driver might: the
// controller's interrupts masked and no longer serviced, so that no
// transfer completes and a blocked Receive is never woken by a frame.
// Only Reset (or a reboot) brings it back. Built only with the tag
// faultinject.
func (e *ECM) Wedge() {
	if e.closed == nil {
		return
	}

	e.wedged.Store(true)
	e.setIntr(0)
}
