//go:build tamago && arm && !pi2 && !pizero && !pi1

package node

import (
	"fmt"
	"net"
	"sync"

	"github.com/ouronet/ouro/board/usbarmory"
	"github.com/ouronet/ouro/board/usbarmory/ecm"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// The board's USB CDC-ECM gadget (board = "usb") is a second link device,
// independent of the ENET: the first IPCP that asks for it initialises it
// and splits it with its own netstack.Mux between the Ethernet shim and
// the netstack, like the ENET (board_usbarmory.go).
var boardUSB struct {
	mu  sync.Mutex // guards the fields
	mux *netstack.Mux
	ecm *usbarmory.ECM
}

// BoardECM returns the board's USB Ethernet gadget once an IPCP
// initialised it, or nil.
func BoardECM() *usbarmory.ECM {
	boardUSB.mu.Lock()
	defer boardUSB.mu.Unlock()
	return boardUSB.ecm
}

// boardUSBFrames is port i of the USB gadget's mux.
func boardUSBFrames(i int) (eth.Device, error) {
	board.mu.Lock()
	b := board.b
	board.mu.Unlock()
	if b == nil {
		return nil, fmt.Errorf(`board = "usb": the image did not call UseBoard: %w`, flow.ErrInvalid)
	}
	boardUSB.mu.Lock()
	defer boardUSB.mu.Unlock()
	if boardUSB.mux == nil {
		e, err := b.ECM()
		if err != nil {
			return nil, fmt.Errorf("board USB Ethernet: %w", err)
		}
		if err := e.Init(); err != nil {
			return nil, fmt.Errorf("board USB Ethernet: %w", err)
		}
		boardUSB.ecm = e
		boardUSB.mux = netstack.NewMux(newECMDevice(e))
	}
	return boardUSB.mux.Port(i), nil
}

// ecmDevice adapts the batch-shaped USB gadget to eth.Device: ReadFrame
// hands out the frames of one Receive batch one by one; WriteFrame
// transmits a batch of one.
type ecmDevice struct {
	ecm *usbarmory.ECM

	// Reader side: only ReadFrame touches these.
	frames     [][]byte
	sizes      []int
	next, have int
}

var _ eth.Device = (*ecmDevice)(nil)

func newECMDevice(e *usbarmory.ECM) *ecmDevice {
	d := &ecmDevice{ecm: e, frames: make([][]byte, rxBatch), sizes: make([]int, rxBatch)}
	for i := range d.frames {
		d.frames[i] = make([]byte, ecm.MaxSegmentSize)
	}
	return d
}

// ReadFrame implements eth.Device.
func (d *ecmDevice) ReadFrame(b []byte) (int, error) {
	for d.next == d.have {
		n, err := d.ecm.Receive(d.frames, d.sizes)
		if err != nil {
			return 0, err
		}
		d.next, d.have = 0, n
	}
	i := d.next
	d.next++
	if d.sizes[i] > len(b) {
		return 0, fmt.Errorf("usb ethernet: %d-byte frame for a %d-byte buffer: %w", d.sizes[i], len(b), flow.ErrTruncated)
	}
	return copy(b, d.frames[i][:d.sizes[i]]), nil
}

// WriteFrame implements eth.Device. A full queue (the host is not
// reading) is an error the caller counts; it never blocks.
func (d *ecmDevice) WriteFrame(b []byte) error {
	one := [1][]byte{b}
	_, err := d.ecm.Transmit(one[:])
	return err
}

// MAC implements eth.Device: the gadget's own address (the host's end has
// HostHardwareAddr).
func (d *ecmDevice) MAC() net.HardwareAddr { return d.ecm.HardwareAddr() }

// MTU implements eth.Device: wMaxSegmentSize less the header, 1500.
func (d *ecmDevice) MTU() int { return ecm.MaxSegmentSize - eth.EthLen }

// Close implements eth.Device.
func (d *ecmDevice) Close() error { return d.ecm.Close() }
