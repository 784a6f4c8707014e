//go:build tamago && arm

package usbarmory

// The USB CDC-ECM gadget data path, written once here.
//
// The descriptors, framing rules, MACs and queues come from package ecm
// (host-tested); this file hands them to TamaGo's i.MX6 USB device driver
// (soc/nxp/usb) on USB1, the Mk II's USB port, which runs one goroutine
// per endpoint and calls an endpoint function between transfers:
//
//   - bulk OUT (host to device): the function gets the bytes of one
//     completed transfer, which ecm.Receiver classifies (a short packet
//     ends a frame, ECM 1.2, 3.3.1); frames go into rxq, a bounded queue
//     that drops and counts when full; the function returns the buffer
//     for the next transfer (ecm.RxBufferSize). Receive drains rxq.
//   - bulk IN (device to host): Transmit copies frames into txq (bounded,
//     drops counted); the function returns the oldest, and the driver
//     sends it, the controller adding the ZLP after a frame that fills its
//     last packet (endpoint ZLT enabled, IMX6ULLRM 56.4.5.1). With nothing
//     to send the function returns empty after ecmPoll, so that the
//     driver's endpoint loop can notice a new configuration.
//   - interrupt IN: NetworkConnection(up), then ConnectionSpeedChange
//     (ECM 1.2, 6.3), once per Init or Reset (ecm.Notifier).
//
// Interrupts: the shared interrupt goroutine (irq.go) only masks the
// controller (USBINTR = 0) and wakes the service goroutine, which runs the
// driver's ServiceInterrupts (bus reset, setup requests on EP0, waking the
// endpoint goroutines) and unmasks. EP0 setup handling can block there, and
// a TamaGo v1.26.0 re-configuration can hang it for good (below), so it
// must not run on the goroutine that also serves ENET and the timer. The
// service goroutine also runs every ecmServiceTick: the driver's endpoint
// goroutines test the completion bit and then wait on a condition variable
// without a lock between the two, so a completion signalled in between is
// lost until the next ServiceInterrupts.
//
// Known limitation (TamaGo v1.26.0): on a second SET_CONFIGURATION (host
// re-enumeration after a cable re-plug or host reboot) the driver waits for
// the old endpoint goroutines, and the bulk OUT one waits for a transfer
// that the bus reset flushed: the USB service hangs until the board
// restarts. ENET and everything else keep running. That is why Reset
// (for a restarted driver) does not reset the controller: it restarts
// the gadget's own state (queues, framing, notifications, interrupt mask)
// and lets the endpoints carry on, without a re-enumeration.

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/board/usbarmory/ecm"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
	"github.com/usbarmory/tamago/soc/nxp/usb"
)

// Errors returned by ECM methods.
var (
	ErrNoUSB        = errors.New("usbarmory: no USB device controller (QEMU does not emulate the i.MX6 USB OTG)")
	ErrECMClosed    = errors.New("usbarmory: USB Ethernet closed")
	ErrECMQueueFull = errors.New("usbarmory: USB Ethernet transmit queue full")
	ErrDescriptors  = errors.New("usbarmory: USB descriptors differ from package ecm's")
)

const (
	// ecmQueue is the default depth of each direction's queue.
	ecmQueue = 64
	// ecmPoll bounds how long an IN endpoint function waits for data.
	ecmPoll = 250 * time.Millisecond
	// ecmServiceTick is the service goroutine's safety net (see above).
	ecmServiceTick = 20 * time.Millisecond
	// ecmDiversifier derives the gadget's MACs from the unique key.
	ecmDiversifier = "ouro usb cdc-ecm mac v1"
	// usbIntrMask: bus reset, port change, transfer and setup completion
	// (IMX6ULLRM 56.6.20 USB_nUSBINTR).
	usbIntrMask = 1<<usb.IRQ_URI | 1<<usb.IRQ_PCI | 1<<usb.IRQ_UI
	// tamagoFirstOUT is the size of the first OUT transfer the driver
	// starts, before the endpoint function has returned a buffer.
	tamagoFirstOUT = usb.DTD_PAGES * usb.DTD_PAGE_SIZE
)

// ECM is the USB armory's USB port as a CDC-ECM Ethernet gadget: to the host
// it is a USB Ethernet adapter (Linux cdc_ether), to the node a
// batch-oriented frame device like NIC. Fill in the fields (or use
// Board.ECM), call Init, then Receive from one goroutine and Transmit from
// any.
type ECM struct {
	// USB is the controller: imx6ul.USB1.
	USB *usb.USB
	// MAC is the gadget's own station address, HostMAC the address the
	// host gives its interface (announced as iMACAddress). Board.ECM
	// derives both from the unique key.
	MAC, HostMAC net.HardwareAddr
	// Queue is the depth of the receive and transmit queues (default 64
	// frames each).
	Queue int

	cfg       ecm.Config
	dev       *usb.Device
	rxq, txq  *ecm.Queue
	closed    chan struct{}
	closeOnce sync.Once
	irq       chan struct{}
	// wake interrupts a blocked Receive (Wake); a time channel because
	// that is what ecm.Queue.Get waits on besides closed.
	wake chan time.Time

	// bulk OUT endpoint goroutine only
	rx       ecm.Receiver
	outBuf   []byte
	outAsked int
	// bulk IN endpoint goroutine only
	inFlight []byte
	inTimer  *time.Timer
	// interrupt IN endpoint's sequence (Reset starts it over)
	notifier ecm.Notifier
	// wedged: the service goroutine neither services nor unmasks the
	// controller (Wedge, a faultinject build's); Reset clears it.
	wedged atomic.Bool

	stats ecmCounters
}

// ECMStats are the gadget's always-on counters.
type ECMStats struct {
	RxFrames, RxBytes uint64
	// RxRunts: transfers shorter than an Ethernet header.
	RxRunts uint64
	// RxOversize: frames longer than ecm.MaxSegmentSize, tails included.
	RxOversize uint64
	// RxQueueFull: frames dropped because Receive fell behind.
	RxQueueFull uint64
	// TxFrames, TxBytes: frames the controller sent to the host.
	TxFrames, TxBytes uint64
	// TxQueueFull: frames refused because the host is not reading.
	TxQueueFull uint64
	// TxTooLong: frames refused for exceeding ecm.MaxSegmentSize.
	TxTooLong uint64
	// TxErrors: IN transfers the controller reported failed.
	TxErrors uint64
	// Resets: times Reset restarted the gadget; RxFlushed, TxFlushed:
	// frames its queues held then, dropped.
	Resets, RxFlushed, TxFlushed uint64
}

type ecmCounters struct {
	rxFrames, rxBytes, rxRunts, rxOversize atomic.Uint64
	txFrames, txBytes, txTooLong, txErrors atomic.Uint64
	resets, rxFlushed, txFlushed           atomic.Uint64
}

var boardECM struct {
	mu sync.Mutex // guards e
	e  *ECM
}

// ECM returns the USB CDC-ECM gadget on USB1, configured but not
// initialised, with MAC and HostMAC derived from UniqueKey (so a host sees
// the same adapter address after every boot). The same ECM is returned on
// every call. Under QEMU it is returned too, but its Init fails with
// ErrNoUSB after checking the descriptors.
func (b *Board) ECM() (*ECM, error) {
	boardECM.mu.Lock()
	defer boardECM.mu.Unlock()

	if boardECM.e != nil {
		return boardECM.e, nil
	}

	key, _, err := b.UniqueKey([]byte(ecmDiversifier))
	if err != nil {
		return nil, err
	}

	dev, host, err := ecm.MACs(key[:])
	if err != nil {
		return nil, err
	}

	boardECM.e = &ECM{USB: imx6ul.USB1, MAC: dev, HostMAC: host}

	return boardECM.e, nil
}

// Init builds the USB device (descriptors from package ecm, checked byte
// for byte against what TamaGo will send), then, on real hardware, puts
// USB1 in device mode and starts serving the host. Board.Init must have
// run. Under QEMU it returns ErrNoUSB once the descriptors check out.
func (e *ECM) Init() error {
	if e.USB == nil {
		return ErrNoUSB
	}

	if e.Queue <= 0 {
		e.Queue = ecmQueue
	}

	if len(e.MAC) != 6 {
		return errors.New("usbarmory: ECM: invalid MAC " + e.MAC.String())
	}

	e.cfg = ecm.Default(e.HostMAC)
	e.cfg.Serial = ecm.MACString(e.MAC)

	if err := e.cfg.Validate(); err != nil {
		return err
	}

	dev, err := e.device()
	if err != nil {
		return err
	}

	if err := checkDescriptors(dev, e.cfg); err != nil {
		return err
	}

	if !imx6ul.Native {
		return ErrNoUSB
	}

	e.dev = dev
	e.rxq = ecm.NewQueue(e.Queue, ecm.MaxSegmentSize)
	e.txq = ecm.NewQueue(e.Queue, ecm.MaxSegmentSize)
	e.closed = make(chan struct{})
	e.irq = make(chan struct{}, 1)
	e.wake = make(chan time.Time, 1)
	e.outBuf = make([]byte, ecm.RxBufferSize(e.cfg.MaxPacket))
	e.outAsked = tamagoFirstOUT
	e.inTimer = time.NewTimer(time.Hour)
	e.inTimer.Stop()

	e.USB.Device = dev
	e.USB.Init()
	e.USB.DeviceMode()

	registerInterrupt(e.USB.IRQ, e.serviceInterrupt)
	go e.service()

	e.setIntr(usbIntrMask)

	return nil
}

// device builds TamaGo's view of the gadget. The class-specific
// descriptors are package ecm's bytes; the standard ones are TamaGo
// structs, because the driver runs endpoints from them.
func (e *ECM) device() (*usb.Device, error) {
	c := e.cfg
	dev := &usb.Device{}

	dev.Descriptor = &usb.DeviceDescriptor{}
	dev.Descriptor.SetDefaults()
	dev.Descriptor.DeviceClass = ecm.ClassComm
	dev.Descriptor.VendorId = c.VendorID
	dev.Descriptor.ProductId = c.ProductID
	dev.Descriptor.Device = c.Release

	if err := dev.SetLanguageCodes([]uint16{0x0409}); err != nil {
		return nil, err
	}

	for _, s := range []struct {
		text  string
		index uint8
		field *uint8
	}{
		{c.Manufacturer, ecm.StringManufacturer, &dev.Descriptor.Manufacturer},
		{c.Product, ecm.StringProduct, &dev.Descriptor.Product},
		{c.Serial, ecm.StringSerial, &dev.Descriptor.SerialNumber},
		{ecm.MACString(c.HostMAC), ecm.StringMAC, nil},
	} {
		i, err := dev.AddString(s.text)
		if err != nil {
			return nil, err
		}
		if i != s.index {
			return nil, ErrDescriptors
		}
		if s.field != nil {
			*s.field = i
		}
	}

	dev.Qualifier = &usb.DeviceQualifierDescriptor{}
	dev.Qualifier.SetDefaults()
	dev.Qualifier.DeviceClass = ecm.ClassComm
	dev.Qualifier.NumConfigurations = 1

	conf := &usb.ConfigurationDescriptor{}
	conf.SetDefaults()
	conf.MaxPower = uint8(c.MaxPowerMA / 2)

	if err := dev.AddConfiguration(conf); err != nil {
		return nil, err
	}

	comm := &usb.InterfaceDescriptor{}
	comm.SetDefaults()
	comm.NumEndpoints = 1
	comm.InterfaceClass = ecm.ClassComm
	comm.InterfaceSubClass = ecm.SubclassECM
	comm.ClassDescriptors = ecm.FunctionalDescriptors(c)
	comm.Endpoints = []*usb.EndpointDescriptor{
		// notifications are fixed-size: no ZLP
		endpoint(ecm.EndpointNotify, usb.INTERRUPT, ecm.NotifyMaxPacket, ecm.NotifyInterval, false, e.notify),
	}
	conf.AddInterface(comm)

	data0 := &usb.InterfaceDescriptor{}
	data0.SetDefaults()
	data0.NumEndpoints = 0
	data0.InterfaceClass = ecm.ClassData
	conf.AddInterface(data0)

	data1 := &usb.InterfaceDescriptor{}
	data1.SetDefaults()
	data1.AlternateSetting = 1
	data1.NumEndpoints = 2
	data1.InterfaceClass = ecm.ClassData
	data1.Endpoints = []*usb.EndpointDescriptor{
		endpoint(ecm.EndpointBulkIn, usb.BULK, uint16(c.MaxPacket), 0, true, e.in),
		endpoint(ecm.EndpointBulkOut, usb.BULK, uint16(c.MaxPacket), 0, true, e.out),
	}
	conf.AddInterface(data1)

	return dev, nil
}

func endpoint(addr uint8, kind int, max uint16, interval uint8, zlp bool, fn usb.EndpointFunction) *usb.EndpointDescriptor {
	d := &usb.EndpointDescriptor{}
	d.SetDefaults()
	d.EndpointAddress = addr
	d.Attributes = uint8(kind)
	d.MaxPacketSize = max
	d.Interval = interval
	d.Zero = zlp
	d.Function = fn

	return d
}

// checkDescriptors compares what TamaGo will answer to GET_DESCRIPTOR with
// package ecm's bytes, which the host tests check against the
// specifications.
func checkDescriptors(dev *usb.Device, c ecm.Config) error {
	conf, err := dev.Configuration(0)
	if err != nil {
		return err
	}

	same := string(dev.Descriptor.Bytes()) == string(ecm.DeviceDescriptor(c)) &&
		string(dev.Qualifier.Bytes()) == string(ecm.QualifierDescriptor()) &&
		string(conf) == string(ecm.ConfigurationDescriptor(c))

	want := ecm.Strings(c)
	same = same && len(dev.Strings) == len(want)

	for i := 0; same && i < len(want); i++ {
		same = string(dev.Strings[i]) == string(want[i])
	}

	if !same {
		return ErrDescriptors
	}

	return nil
}

// serviceInterrupt runs on the shared interrupt goroutine: it masks the
// controller, which deasserts its interrupt line, and hands over.
func (e *ECM) serviceInterrupt() {
	e.setIntr(0)

	select {
	case e.irq <- struct{}{}:
	default:
	}
}

// service runs the driver's interrupt service on its own goroutine.
func (e *ECM) service() {
	tick := time.NewTicker(ecmServiceTick)
	defer tick.Stop()

	for {
		select {
		case <-e.irq:
		case <-tick.C:
		case <-e.closed:
			return
		}

		if e.wedged.Load() {
			continue
		}

		e.USB.ServiceInterrupts()
		e.setIntr(usbIntrMask)
	}
}

func (e *ECM) setIntr(mask uint32) {
	atomic.StoreUint32(mmio(e.USB.Base+usb.USB_UOGx_USBINTR), mask)
}

// out is the bulk OUT endpoint function.
func (e *ECM) out(buf []byte, _ error) ([]byte, error) {
	switch e.rx.Transfer(len(buf), e.outAsked) {
	case ecm.Frame:
		if e.rxq.Put(buf) {
			e.stats.rxFrames.Add(1)
			e.stats.rxBytes.Add(uint64(len(buf)))
		}
	case ecm.Runt:
		e.stats.rxRunts.Add(1)
	default:
		e.stats.rxOversize.Add(1)
	}

	e.outAsked = len(e.outBuf)

	return e.outBuf, nil
}

// in is the bulk IN endpoint function. lastErr is the outcome of sending
// the frame it returned last time (the driver copied it before sending).
func (e *ECM) in(_ []byte, lastErr error) ([]byte, error) {
	if e.inFlight != nil {
		if lastErr != nil {
			e.stats.txErrors.Add(1)
		} else {
			e.stats.txFrames.Add(1)
			e.stats.txBytes.Add(uint64(len(e.inFlight)))
		}

		e.txq.Release(e.inFlight)
		e.inFlight = nil
	}

	e.inTimer.Reset(ecmPoll)
	f, ok := e.txq.Get(nil, e.inTimer.C)
	e.inTimer.Stop()

	if !ok {
		return nil, nil
	}

	e.inFlight = f

	return f, nil
}

// notify is the interrupt IN endpoint function.
func (e *ECM) notify(_ []byte, _ error) ([]byte, error) {
	if n := e.notifier.Next(ecm.CommInterface, e.USB.Speed() == "high"); n != nil {
		return n, nil
	}

	time.Sleep(ecmPoll)

	return nil, nil
}

// HardwareAddr returns the gadget's own station address.
func (e *ECM) HardwareAddr() net.HardwareAddr {
	return e.MAC
}

// HostHardwareAddr returns the address the host's interface uses.
func (e *ECM) HostHardwareAddr() net.HardwareAddr {
	return e.HostMAC
}

// Receive waits until at least one frame has arrived from the host, then
// copies up to len(frames) frames into frames[i][:sizes[i]] and returns
// how many. Each frames[i] should hold ecm.MaxSegmentSize bytes (shorter
// buffers truncate; a frame may carry one byte of host padding, see
// ecm.Frame). frames and sizes are the caller's. Receive is for a single
// goroutine; it returns ErrECMClosed after Close, and 0 frames and no
// error when Wake interrupts it.
func (e *ECM) Receive(frames [][]byte, sizes []int) (int, error) {
	max := min(len(frames), len(sizes))

	if max == 0 {
		return 0, nil
	}

	select {
	case <-e.closed:
		return 0, ErrECMClosed
	default:
	}

	f, ok := e.rxq.Get(e.closed, e.wake)
	if !ok {
		select {
		case <-e.closed:
			return 0, ErrECMClosed
		default:
			return 0, nil // woken
		}
	}

	n := 0

	for {
		sizes[n] = copy(frames[n], f)
		e.rxq.Release(f)
		n++

		if n == max {
			break
		}

		if f, ok = e.rxq.TryGet(); !ok {
			break
		}
	}

	return n, nil
}

// Transmit queues frames (full Ethernet frames without FCS, at most
// ecm.MaxSegmentSize bytes) for the host and returns how many were queued;
// the bytes are copied. It never waits: it stops at the first frame that
// is too long (ErrFrameTooLong), too short (ErrFrameTooShort) or finds the
// queue full because the host is not reading (ErrECMQueueFull, counted).
// Safe for concurrent use.
func (e *ECM) Transmit(frames [][]byte) (int, error) {
	select {
	case <-e.closed:
		return 0, ErrECMClosed
	default:
	}

	for i, f := range frames {
		switch {
		case len(f) > ecm.MaxSegmentSize:
			e.stats.txTooLong.Add(1)
			return i, ErrFrameTooLong
		case len(f) < ecm.MinFrameLen:
			return i, ErrFrameTooShort
		case !e.txq.Put(f):
			return i, ErrECMQueueFull
		}
	}

	return len(frames), nil
}

// Stats returns a snapshot of the counters.
func (e *ECM) Stats() ECMStats {
	s := ECMStats{
		RxFrames:   e.stats.rxFrames.Load(),
		RxBytes:    e.stats.rxBytes.Load(),
		RxRunts:    e.stats.rxRunts.Load(),
		RxOversize: e.stats.rxOversize.Load(),
		TxFrames:   e.stats.txFrames.Load(),
		TxBytes:    e.stats.txBytes.Load(),
		TxTooLong:  e.stats.txTooLong.Load(),
		TxErrors:   e.stats.txErrors.Load(),
		Resets:     e.stats.resets.Load(),
		RxFlushed:  e.stats.rxFlushed.Load(),
		TxFlushed:  e.stats.txFlushed.Load(),
	}

	if e.rxq != nil {
		s.RxQueueFull = e.rxq.Drops()
		s.TxQueueFull = e.txq.Drops()
	}

	return s
}

// Wake makes a Receive blocked now, or the next one that finds no frame,
// return 0 frames and no error (a driver stopping its reader without
// detaching the gadget). Safe from any goroutine after Init.
func (e *ECM) Wake() {
	if e.wake == nil {
		return
	}

	select {
	case e.wake <- time.Time{}:
	default:
	}
}

// Reset restarts an initialised gadget for a restarted driver, without a
// re-enumeration (the host keeps its interface and addresses): the frames
// its receive and transmit queues hold are dropped (counted) and their
// buffers freed, the receive framing starts at a frame's beginning
// (ecm.Receiver.Reset), the link notifications are sent again
// (ecm.Notifier.Reset), a pending Wake is dropped, and the controller's
// interrupts are unmasked and serviced at once (a completion the fault
// left unserviced is picked up). The controller and its endpoint queues
// are not reset: the endpoint goroutines carry on with the transfers
// they have primed (resetting them needs a re-enumeration, which hangs
// TamaGo v1.26.0's driver, see above). A frame the host was sending or
// receiving at that moment may be lost. No Receive may run meanwhile.
// It fails before Init and after Close. Not tried on hardware yet: QEMU
// has no USB gadget the host can talk to.
func (e *ECM) Reset() error {
	if e.closed == nil {
		return errors.New("usbarmory: ECM: Reset before Init")
	}

	select {
	case <-e.closed:
		return ErrECMClosed
	default:
	}

	e.stats.rxFlushed.Add(uint64(e.rxq.Flush()))
	e.stats.txFlushed.Add(uint64(e.txq.Flush()))

	select {
	case <-e.wake:
	default:
	}

	e.rx.Reset()
	e.notifier.Reset()
	e.wedged.Store(false)
	e.setIntr(usbIntrMask)

	select {
	case e.irq <- struct{}{}:
	default:
	}

	e.stats.resets.Add(1)

	return nil
}

// Close detaches the gadget from the host (the controller stops, the host
// sees an unplug): a blocked Receive returns ErrECMClosed, later Transmit
// calls fail. It cannot be re-initialised.
func (e *ECM) Close() error {
	if e.closed == nil {
		return nil
	}

	e.closeOnce.Do(func() {
		close(e.closed)
		e.setIntr(0)
		e.USB.Stop()
	})

	return nil
}
