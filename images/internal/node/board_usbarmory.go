//go:build tamago && arm && !pi2 && !pizero && !pi1

package node

import (
	"fmt"
	"net"
	"sync"

	"github.com/ouronet/ouro/board/usbarmory"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/serial"
)

// The board's Ethernet port is one piece of hardware for the whole image:
// the image hands its board over with UseBoard before New, and the first
// IPCP that asks for the NIC ("board = true") initialises it and splits it
// between the Ethernet shim and the netstack (netstack.Mux).
var board struct {
	mu  sync.Mutex // guards the fields
	b   *usbarmory.Board
	mux *netstack.Mux
	nic *usbarmory.NIC
}

// UseBoard gives the node package the image's initialised board: IPCPs
// configured with "board = true" use its NIC.
func UseBoard(b *usbarmory.Board) {
	board.mu.Lock()
	defer board.mu.Unlock()
	board.b = b
}

// BoardNIC returns the board's NIC once an IPCP initialised it, or nil.
func BoardNIC() *usbarmory.NIC {
	board.mu.Lock()
	defer board.mu.Unlock()
	return board.nic
}

// boardFrames is port i of the board NIC's mux.
func boardFrames(i int) (eth.Device, error) {
	board.mu.Lock()
	defer board.mu.Unlock()
	if board.b == nil {
		return nil, fmt.Errorf("board = true: the image did not call UseBoard: %w", flow.ErrInvalid)
	}
	if board.mux == nil {
		nic, err := board.b.NIC()
		if err != nil {
			return nil, err
		}
		if err := nic.Init(); err != nil {
			return nil, fmt.Errorf("board NIC: %w", err)
		}
		board.nic = nic
		board.mux = netstack.NewMux(newENETDevice(nic))
	}
	return board.mux.Port(i), nil
}

// enetDevice adapts the board's batch-shaped NIC to eth.Device: ReadFrame
// hands out the frames of one Receive batch one by one; WriteFrame
// transmits a batch of one.
type enetDevice struct {
	nic *usbarmory.NIC

	// Reader side: only ReadFrame touches these.
	frames     [][]byte
	sizes      []int
	next, have int
}

var _ eth.Device = (*enetDevice)(nil)

// rxBatch is how many frames one Receive may return.
const rxBatch = 16

func newENETDevice(nic *usbarmory.NIC) *enetDevice {
	d := &enetDevice{nic: nic, frames: make([][]byte, rxBatch), sizes: make([]int, rxBatch)}
	for i := range d.frames {
		d.frames[i] = make([]byte, usbarmory.MaxFrameLen)
	}
	return d
}

// ReadFrame implements eth.Device.
func (d *enetDevice) ReadFrame(b []byte) (int, error) {
	for d.next == d.have {
		n, err := d.nic.Receive(d.frames, d.sizes)
		if err != nil {
			return 0, err
		}
		d.next, d.have = 0, n
	}
	i := d.next
	d.next++
	if d.sizes[i] > len(b) {
		return 0, fmt.Errorf("usbarmory: %d-byte frame for a %d-byte buffer: %w", d.sizes[i], len(b), flow.ErrTruncated)
	}
	return copy(b, d.frames[i][:d.sizes[i]]), nil
}

// WriteFrame implements eth.Device.
func (d *enetDevice) WriteFrame(b []byte) error {
	one := [1][]byte{b}
	_, err := d.nic.Transmit(one[:])
	return err
}

// MAC implements eth.Device.
func (d *enetDevice) MAC() net.HardwareAddr { return d.nic.HardwareAddr() }

// MTU implements eth.Device: the payload of a MaxFrameLen frame with an
// 802.1Q tag.
func (d *enetDevice) MTU() int { return usbarmory.MaxFrameLen - eth.EthLen - 4 }

// Close implements eth.Device.
func (d *enetDevice) Close() error { return d.nic.Close() }

// boardUART is the board's link UART for the serial shim; this board has none.
func boardUART() (serial.Device, error) {
	return nil, fmt.Errorf("[ipcp.serial] board = true: the USB armory image has no link UART (its UART is the console): %w", flow.ErrInvalid)
}
