//go:build !tamago || netstack

package netstack

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ouronet/ouro/layer/shim/eth"
)

// link is the stack.LinkEndpoint under gVisor's ethernet.Endpoint: it moves
// whole frames (Ethernet header included) between the device and the
// stack. See the package doc for the pipeline.
type link struct {
	dev eth.Device
	mac tcpip.LinkAddress
	mtu uint32 // payload after the Ethernet header

	dmu  sync.RWMutex // guards disp
	disp stack.NetworkDispatcher

	txMu    sync.Mutex // guards scratch
	scratch []byte

	closed atomic.Bool

	rxFrames, rxBytes, rxErrors        atomic.Uint64
	txFrames, txBytes, txDrops, txLong atomic.Uint64
}

var _ stack.LinkEndpoint = (*link)(nil)

func newLink(dev eth.Device) *link {
	mtu := dev.MTU()
	return &link{
		dev:     dev,
		mac:     tcpip.LinkAddress(dev.MAC()),
		mtu:     uint32(mtu),
		scratch: make([]byte, header.EthernetMinimumSize+mtu),
	}
}

func (l *link) stats() Stats {
	return Stats{
		RxFrames: l.rxFrames.Load(), RxBytes: l.rxBytes.Load(), RxErrors: l.rxErrors.Load(),
		TxFrames: l.txFrames.Load(), TxBytes: l.txBytes.Load(), TxDrops: l.txDrops.Load(), TxTooLong: l.txLong.Load(),
	}
}

// receive reads frames until the device is closed or ends, handing each to
// the dispatcher.
func (l *link) receive() {
	buf := make([]byte, header.EthernetMinimumSize+int(l.mtu)+4+64) // room for a VLAN tag and slack
	for {
		n, err := l.dev.ReadFrame(buf)
		if err != nil {
			if l.closed.Load() || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return
			}
			l.rxErrors.Add(1)
			continue
		}
		if n < header.EthernetMinimumSize {
			l.rxErrors.Add(1)
			continue
		}
		l.dmu.RLock()
		d := l.disp
		l.dmu.RUnlock()
		if d == nil {
			continue
		}
		l.rxFrames.Add(1)
		l.rxBytes.Add(uint64(n))
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(buf[:n])})
		// ethernet.Endpoint parses the header and ignores the protocol.
		d.DeliverNetworkPacket(0, pkt)
		pkt.DecRef()
	}
}

// WritePackets implements stack.LinkWriter: it writes every packet as one
// frame, in the caller's goroutine. Failures are counted, not returned.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	l.txMu.Lock()
	defer l.txMu.Unlock()
	for _, pkt := range pkts.AsSlice() {
		if pkt.Size() > len(l.scratch) {
			l.txLong.Add(1)
			continue
		}
		n := 0
		for _, s := range pkt.AsSlices() {
			n += copy(l.scratch[n:], s)
		}
		if err := l.dev.WriteFrame(l.scratch[:n]); err != nil {
			l.txDrops.Add(1)
			continue
		}
		l.txFrames.Add(1)
		l.txBytes.Add(uint64(n))
	}
	return pkts.Len(), nil
}

// MTU implements stack.NetworkLinkEndpoint.
func (l *link) MTU() uint32 { return l.mtu }

// SetMTU implements stack.NetworkLinkEndpoint; the device's MTU is fixed.
func (l *link) SetMTU(uint32) {}

// MaxHeaderLength implements stack.NetworkLinkEndpoint: ethernet.Endpoint
// adds the header.
func (l *link) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.NetworkLinkEndpoint.
func (l *link) LinkAddress() tcpip.LinkAddress { return l.mac }

// SetLinkAddress implements stack.NetworkLinkEndpoint; the device's address
// is fixed.
func (l *link) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.NetworkLinkEndpoint (ethernet.Endpoint adds
// resolution).
func (l *link) Capabilities() stack.LinkEndpointCapabilities { return 0 }

// Attach implements stack.NetworkLinkEndpoint.
func (l *link) Attach(d stack.NetworkDispatcher) {
	l.dmu.Lock()
	l.disp = d
	l.dmu.Unlock()
}

// IsAttached implements stack.NetworkLinkEndpoint.
func (l *link) IsAttached() bool {
	l.dmu.RLock()
	defer l.dmu.RUnlock()
	return l.disp != nil
}

// Wait implements stack.NetworkLinkEndpoint; Stack.Stop waits for the
// receive goroutine itself.
func (l *link) Wait() {}

// ARPHardwareType implements stack.NetworkLinkEndpoint.
func (l *link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.NetworkLinkEndpoint (ethernet.Endpoint adds it).
func (l *link) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.NetworkLinkEndpoint.
func (l *link) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.NetworkLinkEndpoint; Stack.Stop closes the device.
func (l *link) Close() {}

// SetOnCloseAction implements stack.NetworkLinkEndpoint.
func (l *link) SetOnCloseAction(func()) {}
