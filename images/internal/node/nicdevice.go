package node

import (
	"fmt"
	"net"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// batchNIC is a board's batch-shaped frame device, as the board packages
// make them: the USB armory's ENET and USB gadget, the microvm's
// virtio-net.
type batchNIC interface {
	// Receive blocks until frames arrive and fills frames[i][:sizes[i]];
	// 0 frames and no error: it was woken (waker).
	Receive(frames [][]byte, sizes []int) (int, error)
	// Transmit copies and sends frames.
	Transmit(frames [][]byte) (int, error)
	HardwareAddr() net.HardwareAddr
	Close() error
}

// waker is a batchNIC whose blocked Receive can be interrupted (every
// board's: the ENET, the USB gadget, virtio-net): Wake makes it return 0
// frames.
type waker interface{ Wake() }

// rxBatch is how many frames one Receive may return.
const rxBatch = 16

// nicDevice adapts a batchNIC to eth.Device: ReadFrame hands out the
// frames of one Receive batch one by one; WriteFrame transmits a batch of
// one. One reader at a time.
type nicDevice struct {
	nic  batchNIC
	name string // for errors
	mtu  int

	// Reader side: only ReadFrame touches these.
	frames     [][]byte
	sizes      []int
	next, have int
}

var (
	_ eth.Device     = (*nicDevice)(nil)
	_ netstack.Waker = (*nicDevice)(nil)
)

// newNICDevice adapts nic, whose frames are at most maxFrame bytes and
// whose MTU (the payload after the Ethernet header) is mtu.
func newNICDevice(name string, nic batchNIC, maxFrame, mtu int) *nicDevice {
	d := &nicDevice{nic: nic, name: name, mtu: mtu, frames: make([][]byte, rxBatch), sizes: make([]int, rxBatch)}
	for i := range d.frames {
		d.frames[i] = make([]byte, maxFrame)
	}
	return d
}

// ReadFrame implements eth.Device.
func (d *nicDevice) ReadFrame(b []byte) (int, error) {
	for d.next == d.have {
		n, err := d.nic.Receive(d.frames, d.sizes)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, fmt.Errorf("%s: %w", d.name, netstack.ErrWoken)
		}
		d.next, d.have = 0, n
	}
	i := d.next
	d.next++
	if d.sizes[i] > len(b) {
		return 0, fmt.Errorf("%s: %d-byte frame for a %d-byte buffer: %w", d.name, d.sizes[i], len(b), flow.ErrTruncated)
	}
	return copy(b, d.frames[i][:d.sizes[i]]), nil
}

// WriteFrame implements eth.Device.
func (d *nicDevice) WriteFrame(b []byte) error {
	one := [1][]byte{b}
	_, err := d.nic.Transmit(one[:])
	return err
}

// WriteFrames implements netstack.BatchWriter: one Transmit for the
// batch.
func (d *nicDevice) WriteFrames(frames [][]byte) (int, error) { return d.nic.Transmit(frames) }

// MAC implements eth.Device.
func (d *nicDevice) MAC() net.HardwareAddr { return d.nic.HardwareAddr() }

// MTU implements eth.Device.
func (d *nicDevice) MTU() int { return d.mtu }

// Wake implements netstack.Waker: a blocked ReadFrame returns ErrWoken,
// if the NIC can be woken (else nothing happens).
func (d *nicDevice) Wake() {
	if w, ok := d.nic.(waker); ok {
		w.Wake()
	}
}

// Close implements eth.Device.
func (d *nicDevice) Close() error { return d.nic.Close() }
