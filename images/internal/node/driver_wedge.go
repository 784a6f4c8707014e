//go:build !(tamago && arm && !pi2 && !pizero && !pi1 && faultinject)

package node

// wedgeBoardLink returns what wedges board link p after a fault of its
// driver: nothing, but in the USB armory's faultinject build
// (board_usbarmory_faultinject.go).
func wedgeBoardLink(boardPort) func() { return nil }
