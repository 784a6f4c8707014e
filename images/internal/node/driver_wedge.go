//go:build !(tamago && faultinject && ((arm && !pi2 && !pizero && !pi1) || amd64))

package node

// wedgeBoardLink returns what wedges board link p after a fault of its
// driver: nothing, but in the USB armory's and the microvm's faultinject
// builds (board_usbarmory_faultinject.go, board_microvm_faultinject.go).
func wedgeBoardLink(boardPort) func() { return nil }
