//go:build tamago && amd64

package microvm

// The virtio-net data path, written once here.
//
// tamago v1.26.0's kvm/virtio VirtualQueue cannot carry a router's
// traffic: Pop hands a buffer back through the avail slot after the one it
// should reuse and Push recycles used entries counted from the wrong end,
// so with more than one frame in flight frames are lost or corrupted; its
// feature negotiation also clears every device-type feature (MAC
// included). This file drives the virtio-mmio transport registers (offsets
// from tamago's exported kvm/virtio constants) and its own split
// virtqueues (Virtual I/O Device (VIRTIO) Version 1.2, 2.7 Split
// Virtqueues; 4.2 Virtio Over MMIO; 5.1 Network Device).
//
// Negotiated features: VIRTIO_F_VERSION_1 (required by the modern MMIO
// transport, -global virtio-mmio.force-legacy=false) and VIRTIO_NET_F_MAC.
// No offloads, no mergeable buffers: every frame is one descriptor holding
// the 12-byte virtio_net_hdr_v1 (all zero on transmit) and the frame.
//
// Memory: each queue's descriptor table, avail ring and used ring, and a
// 2 KiB buffer per descriptor, live in the DMA region (ordinary cacheable
// RAM; x86 DMA is coherent). The avail and used ring headers (flags, idx)
// are accessed as one 32-bit word with sync/atomic, which on amd64 orders
// every earlier store (descriptor, ring entry) before the index the device
// polls, and every later load after it.
//
// Receive: every rx descriptor is posted at Init. The single reader
// (Receive) drains used entries, copies each frame out, re-posts the
// descriptor and notifies the device once per batch. When the used ring is
// empty it asks for the interrupt (clears VIRTQ_AVAIL_F_NO_INTERRUPT),
// looks once more and waits for it; the handler acknowledges it at the
// device and forwards it through a one-slot channel, and the reader sets
// the flag again until it is idle, so a burst of frames costs one
// interrupt, not one each (NICStats.Interrupts); each is served by the
// board's interrupt goroutine (irq.go), woken from the idle hook.
//
// Transmit: callers serialise on txMu, reclaim descriptors the device has
// used, copy each frame into a free descriptor's buffer, publish the batch
// with one avail index store and one notification. Transmit interrupts are
// suppressed (VIRTQ_AVAIL_F_NO_INTERRUPT) except while a sender waits for a
// full ring, for up to txWait.

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/usbarmory/tamago/dma"
	"github.com/usbarmory/tamago/kvm/virtio"

	"github.com/ouronet/ouro/board/internal/rxwait"
)

// Frame sizes (no FCS on virtio).
const (
	// MaxFrameLen is the longest frame Transmit accepts and Receive
	// delivers: 14-byte header, 4-byte 802.1Q tag, 1500-byte payload.
	MaxFrameLen = 1518
	// MinFrameLen is the shortest frame on an Ethernet wire; Transmit
	// zero-pads shorter frames to it, as a hardware MAC does (virtio
	// itself would carry them as they are). Receivers must use their own
	// length field.
	MinFrameLen = 60

	hdrLen = 14 // Ethernet header: the shortest frame accepted

	netHdrLen = 12   // struct virtio_net_hdr_v1 (5.1.6)
	bufSize   = 2048 // >= netHdrLen + MaxFrameLen
	defaultRx = 128
	defaultTx = 128
)

// virtio-mmio registers not exported by tamago (4.2.2, Table 4.1).
const (
	regQueueDescHigh   = virtio.QueueDesc + 4
	regQueueDriverHigh = virtio.QueueDriver + 4
	regQueueDeviceHigh = virtio.QueueDevice + 4
)

// Feature bits (6 Reserved Feature Bits; 5.1.3).
const (
	featureVersion1 = 1 << 32
	featureNetMAC   = 1 << 5

	deviceIDNet = 1

	rxQueue = 0
	txQueue = 1

	descFlagWrite     = 2 // VIRTQ_DESC_F_WRITE
	availNoInterrupt  = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	usedNoNotify      = 1 // VIRTQ_USED_F_NO_NOTIFY
	interruptUsedRing = 1 // InterruptStatus bit 0
)

// Errors returned by NIC methods.
var (
	ErrNoNIC         = errors.New("microvm: no virtio-net device")
	ErrFrameTooLong  = errors.New("microvm: frame longer than MaxFrameLen")
	ErrFrameTooShort = errors.New("microvm: frame shorter than an Ethernet header")
	ErrTxTimeout     = errors.New("microvm: transmit ring full")
	ErrNICClosed     = errors.New("microvm: NIC closed")
)

// txWait bounds how long Transmit waits for a free descriptor.
const txWait = 100 * time.Millisecond

// NIC is a virtio-net device as a batch-oriented Ethernet frame device.
// Fill in the fields (or take Board.NIC's), call Init, then Receive from
// one goroutine and Transmit from any.
type NIC struct {
	// Base is the device's virtio-mmio register block.
	Base uint32
	// IRQ is its GSI.
	IRQ int
	// MAC is the station address. Nil: the device's (QEMU's mac= option;
	// 52:54:00:12:34:56 by default, the same in every QEMU instance).
	MAC net.HardwareAddr
	// RxRing and TxRing are queue sizes (default 128 each, capped by the
	// device's maximum; powers of two).
	RxRing, TxRing int
	// Promiscuous disables the software destination filter. QEMU's
	// virtio-net without a control queue delivers every frame on the
	// segment, so by default Receive drops frames that are neither to MAC
	// nor group-addressed.
	Promiscuous bool

	rx      vq // owned by the single reader
	rxReady chan struct{}
	rxWait  rxwait.Waiter // the single reader's idle wait
	closed  atomic.Bool
	woken   atomic.Bool // Wake was called: the next Receive returns at once

	txMu    sync.Mutex // guards tx and txFree
	tx      vq
	txFree  []uint16
	txReady chan struct{}

	stats nicCounters
}

// vq is one split virtqueue in DMA memory.
type vq struct {
	size      uint16
	desc      []byte   // 16 bytes per descriptor
	availHdr  *uint32  // flags | idx<<16
	availRing []uint16 // size entries
	usedHdr   *uint32  // flags | idx<<16
	usedRing  []uint32 // id, len per entry
	bufs      [][]byte // bufSize per descriptor
	availIdx  uint16   // next avail index (driver's shadow)
	lastUsed  uint16   // next used index to consume
	availFlag uint32

	descAddr, driverAddr, deviceAddr uint64 // for the device's registers
	rings                            []byte // avail and used rings (for clear)
}

// NICStats are the NIC's always-on counters.
type NICStats struct {
	RxFrames, RxBytes uint64
	// RxFiltered: frames for another station (software MAC filter).
	RxFiltered uint64
	// RxErrors: used entries with an impossible id or length.
	RxErrors          uint64
	TxFrames, TxBytes uint64
	// TxTooLong: frames refused by Transmit for exceeding MaxFrameLen.
	TxTooLong uint64
	// TxRingFull: times Transmit found no free descriptor and gave up.
	TxRingFull uint64
	// Interrupts: device interrupts serviced.
	Interrupts uint64
	// RxLate: times an idle Receive found frames after rxwait.Poll without
	// having been woken for them (a lost or very late interrupt).
	RxLate uint64
	// Resets: times Reset re-initialised the NIC.
	Resets uint64
}

type nicCounters struct {
	rxFrames, rxBytes, rxFiltered, rxErrors  atomic.Uint64
	txFrames, txBytes, txTooLong, txRingFull atomic.Uint64
	interrupts, resets                       atomic.Uint64
}

// NIC returns the machine's first virtio-net device (the first -device
// virtio-net-device, at VirtioNet0Base), configured but not initialised.
// The same NIC is returned on every call.
func (b *Board) NIC() (*NIC, error) {
	if b.nic != nil {
		return b.nic, nil
	}

	if mmioRead32(VirtioNet0Base+virtio.Magic) != virtio.MAGIC ||
		mmioRead32(VirtioNet0Base+virtio.DeviceID) != deviceIDNet {
		return nil, ErrNoNIC
	}

	b.nic = &NIC{Base: VirtioNet0Base, IRQ: VirtioNet0IRQ}

	return b.nic, nil
}

func (n *NIC) read(off uint32) uint32 {
	return mmioRead32(n.Base + off)
}

func (n *NIC) write(off, v uint32) {
	mmioWrite32(n.Base+off, v)
}

func (n *NIC) setStatus(bit int) {
	n.write(virtio.Status, n.read(virtio.Status)|1<<bit)
}

// Init resets and initialises the device (3.1.1 Driver Requirements:
// Device Initialization), sets up both queues, posts every receive buffer
// and enables the interrupt. Board.Init must have run.
func (n *NIC) Init() error {
	if n.Base == 0 || n.read(virtio.Magic) != virtio.MAGIC || n.read(virtio.DeviceID) != deviceIDNet {
		return ErrNoNIC
	}
	if v := n.read(virtio.Version); v != virtio.VERSION {
		return fmt.Errorf("microvm: virtio-mmio version %d, want 2 (run QEMU with -global virtio-mmio.force-legacy=false)", v)
	}

	want, err := n.negotiate()
	if err != nil {
		return err
	}

	if n.MAC == nil {
		if want&featureNetMAC == 0 {
			return errors.New("microvm: virtio-net has no MAC address and none was configured")
		}
		lo, hi := n.read(virtio.Config), n.read(virtio.Config+4)
		n.MAC = net.HardwareAddr{byte(lo), byte(lo >> 8), byte(lo >> 16), byte(lo >> 24), byte(hi), byte(hi >> 8)}
	} else if len(n.MAC) != 6 {
		return fmt.Errorf("microvm: invalid MAC %v", n.MAC)
	}

	if n.rx, err = n.setupQueue(rxQueue, n.RxRing, defaultRx, descFlagWrite); err != nil {
		return err
	}
	if n.tx, err = n.setupQueue(txQueue, n.TxRing, defaultTx, 0); err != nil {
		return err
	}

	n.rxReady = make(chan struct{}, 1)
	n.txReady = make(chan struct{}, 1)

	n.fill()
	registerInterrupt(n.IRQ, n.serviceInterrupt)

	n.setStatus(virtio.DriverOk)
	n.write(virtio.QueueNotify, rxQueue)

	return nil
}

// negotiate resets the device and agrees on features (3.1.1 steps 1-6),
// returning those accepted.
func (n *NIC) negotiate() (uint64, error) {
	n.write(virtio.Status, 0)
	n.setStatus(virtio.Acknowledge)
	n.setStatus(virtio.Driver)

	n.write(virtio.DeviceFeaturesSel, 0)
	offered := uint64(n.read(virtio.DeviceFeatures))
	n.write(virtio.DeviceFeaturesSel, 1)
	offered |= uint64(n.read(virtio.DeviceFeatures)) << 32

	if offered&featureVersion1 == 0 {
		n.setStatus(virtio.Failed)
		return 0, errors.New("microvm: virtio-net does not offer VIRTIO_F_VERSION_1")
	}
	want := offered & (featureVersion1 | featureNetMAC)

	n.write(virtio.DriverFeaturesSel, 0)
	n.write(virtio.DriverFeatures, uint32(want))
	n.write(virtio.DriverFeaturesSel, 1)
	n.write(virtio.DriverFeatures, uint32(want>>32))
	n.setStatus(virtio.FeaturesOk)

	if n.read(virtio.Status)&(1<<virtio.FeaturesOk) == 0 {
		n.setStatus(virtio.Failed)
		return 0, errors.New("microvm: virtio-net refused the features")
	}

	return want, nil
}

// fill posts every receive buffer to the device and frees every transmit
// descriptor (no transmit interrupts), on queues set up empty.
func (n *NIC) fill() {
	for i := uint16(0); i < n.rx.size; i++ {
		n.rx.availRing[i] = i
	}
	n.rx.availIdx = n.rx.size
	n.rx.publish()

	n.tx.availFlag = availNoInterrupt
	n.tx.publish()
	n.txFree = make([]uint16, 0, n.tx.size)
	for i := n.tx.size; i > 0; i-- {
		n.txFree = append(n.txFree, i-1)
	}
}

// Reset re-initialises an initialised NIC in place, as Init left it: the
// device reset and its features agreed again, both queues emptied and
// handed to it again in the same DMA memory, every receive buffer posted.
// Frames in the queues are lost; the counters are kept (Resets counts the
// calls). No Receive may be running (a driver calls it between its
// incarnations, when its reader has returned); Transmit callers wait for
// it.
func (n *NIC) Reset() error {
	if n.rx.size == 0 {
		return fmt.Errorf("microvm: NIC reset before Init: %w", ErrNoNIC)
	}
	if n.closed.Load() {
		return ErrNICClosed
	}

	n.txMu.Lock()
	defer n.txMu.Unlock()

	if _, err := n.negotiate(); err != nil {
		return err
	}
	for _, q := range []struct {
		index int
		q     *vq
	}{{rxQueue, &n.rx}, {txQueue, &n.tx}} {
		q.q.clear()
		if err := n.program(q.index, q.q); err != nil {
			return err
		}
	}
	n.fill()

	// a stale wake-up would only make a Receive poll an empty queue
	select {
	case <-n.rxReady:
	default:
	}
	n.woken.Store(false)

	n.setStatus(virtio.DriverOk)
	n.write(virtio.QueueNotify, rxQueue)
	n.stats.resets.Add(1)

	return nil
}

// setupQueue allocates queue index with want (or def) entries, capped by
// the device's maximum and rounded down to a power of two, and hands its
// addresses to the device (4.2.3.2 Virtqueue Configuration).
func (n *NIC) setupQueue(index, want, def int, flags uint16) (q vq, err error) {
	n.write(virtio.QueueSel, uint32(index))

	if n.read(virtio.QueueReady) != 0 {
		return q, fmt.Errorf("microvm: virtio-net queue %d already in use", index)
	}

	max := int(n.read(virtio.QueueNumMax))
	if max == 0 {
		return q, fmt.Errorf("microvm: virtio-net queue %d not available", index)
	}
	if want <= 0 {
		want = def
	}
	size := 1
	for size*2 <= min(want, max, 1<<15) {
		size *= 2
	}

	// descriptor table (16-byte aligned), avail ring (2), used ring (4)
	descLen := 16 * size
	availOff := descLen
	availLen := 6 + 2*size
	usedOff := (availOff + availLen + 3) &^ 3
	total := usedOff + 6 + 8*size

	addr, mem := dma.Reserve(total, 4096)
	clear(mem)
	bufAddr, bufMem := dma.Reserve(size*bufSize, 64)

	q = vq{
		size:      uint16(size),
		desc:      mem[:descLen],
		availHdr:  (*uint32)(unsafe.Pointer(&mem[availOff])),
		availRing: unsafe.Slice((*uint16)(unsafe.Pointer(&mem[availOff+4])), size),
		usedHdr:   (*uint32)(unsafe.Pointer(&mem[usedOff])),
		usedRing:  unsafe.Slice((*uint32)(unsafe.Pointer(&mem[usedOff+4])), 2*size),
		bufs:      make([][]byte, size),
	}

	for i := 0; i < size; i++ {
		q.bufs[i] = bufMem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		d := q.descriptor(uint16(i))
		*(*uint64)(unsafe.Pointer(&d[0])) = uint64(bufAddr) + uint64(i*bufSize)
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&d[8])), bufSize)
		*(*uint16)(unsafe.Pointer(&d[12])) = flags
	}

	q.descAddr, q.driverAddr, q.deviceAddr = uint64(addr), uint64(addr)+uint64(availOff), uint64(addr)+uint64(usedOff)
	q.rings = mem[availOff:]

	return q, n.program(index, &q)
}

// program hands queue index, q, to the device (4.2.3.2).
func (n *NIC) program(index int, q *vq) error {
	n.write(virtio.QueueSel, uint32(index))

	if n.read(virtio.QueueReady) != 0 {
		return fmt.Errorf("microvm: virtio-net queue %d already in use", index)
	}

	n.write(virtio.QueueNum, uint32(q.size))
	n.write(virtio.QueueDesc, uint32(q.descAddr))
	n.write(regQueueDescHigh, uint32(q.descAddr>>32))
	n.write(virtio.QueueDriver, uint32(q.driverAddr))
	n.write(regQueueDriverHigh, uint32(q.driverAddr>>32))
	n.write(virtio.QueueDevice, uint32(q.deviceAddr))
	n.write(regQueueDeviceHigh, uint32(q.deviceAddr>>32))
	n.write(virtio.QueueReady, 1)

	return nil
}

// clear empties q's avail and used rings and its indexes, as setupQueue
// made them (the descriptors and buffers stay).
func (q *vq) clear() {
	clear(q.rings)
	q.availIdx, q.lastUsed, q.availFlag = 0, 0, 0
}

func (q *vq) descriptor(i uint16) []byte {
	return q.desc[16*int(i) : 16*int(i)+16]
}

// publish makes every ring entry written so far visible to the device.
func (q *vq) publish() {
	atomic.StoreUint32(q.availHdr, q.availFlag|uint32(q.availIdx)<<16)
}

// usedIdx is the device's used index.
func (q *vq) usedIdx() uint16 {
	return uint16(atomic.LoadUint32(q.usedHdr) >> 16)
}

// wantsNotify reports whether the device asked to be notified.
func (q *vq) wantsNotify() bool {
	return atomic.LoadUint32(q.usedHdr)&usedNoNotify == 0
}

// used returns the used entry at ring position pos.
func (q *vq) used(pos uint16) (id, length uint32) {
	i := 2 * int(pos%q.size)
	return atomic.LoadUint32(&q.usedRing[i]), atomic.LoadUint32(&q.usedRing[i+1])
}

// post puts descriptor id in the next avail slot (visible after publish).
func (q *vq) post(id uint16) {
	q.availRing[q.availIdx%q.size] = id
	q.availIdx++
}

// serviceInterrupt runs in the interrupt service goroutine: it
// acknowledges exactly what it read (4.2.2: InterruptACK) and wakes the
// waiters.
func (n *NIC) serviceInterrupt() {
	s := n.read(virtio.InterruptStatus)
	n.write(virtio.InterruptACK, s)
	n.stats.interrupts.Add(1)

	if s&interruptUsedRing != 0 {
		select {
		case n.rxReady <- struct{}{}:
		default:
		}
		select {
		case n.txReady <- struct{}{}:
		default:
		}
	}
}

// HardwareAddr returns the NIC's station address.
func (n *NIC) HardwareAddr() net.HardwareAddr {
	return n.MAC
}

// Receive waits until at least one frame has arrived (or Wake is called:
// then it returns 0, nil), then copies up to
// len(frames) frames into frames[i][:sizes[i]] and returns how many. Each
// frames[i] must hold MaxFrameLen bytes; frames and sizes are owned by the
// caller. Receive is for a single goroutine; it returns ErrNICClosed after
// Close. Frames with an impossible length and, unless Promiscuous, frames
// for other stations are dropped and counted.
func (n *NIC) Receive(frames [][]byte, sizes []int) (int, error) {
	for {
		if n.closed.Load() {
			return 0, ErrNICClosed
		}

		if c := n.poll(frames, sizes); c > 0 {
			return c, nil
		}

		if n.woken.Swap(false) {
			return 0, nil
		}

		// Idle: ask for the used-ring interrupt again, then look once
		// more (a frame used meanwhile raised none).
		if n.rx.availFlag != 0 {
			n.rx.availFlag = 0
			n.rx.publish()
			continue
		}

		if n.rxWait.Wait(n.rxReady, n.rxPending) {
			// Until idle again no interrupt: the next re-post (poll's
			// publish) carries the flag, so a burst costs one interrupt.
			n.rx.availFlag = availNoInterrupt
		}
	}
}

// Wake makes a Receive blocked now, or the next one if it finds no frame,
// return 0 frames and no error (a driver stopping its reader without
// closing the NIC). Safe from any goroutine.
func (n *NIC) Wake() {
	n.woken.Store(true)

	select {
	case n.rxReady <- struct{}{}:
	default:
	}
}

// poll drains up to len(frames) used receive descriptors without blocking.
func (n *NIC) poll(frames [][]byte, sizes []int) (count int) {
	q := &n.rx
	max := min(len(frames), len(sizes))
	reposted := false
	end := q.usedIdx()

	for count < max && q.lastUsed != end {
		id, length := q.used(q.lastUsed)
		q.lastUsed++

		if id >= uint32(q.size) {
			n.stats.rxErrors.Add(1)
			continue // not ours to re-post
		}

		buf := q.bufs[id]
		l := int(length) - netHdrLen

		switch {
		case l < hdrLen || l > MaxFrameLen || l > len(frames[count]):
			n.stats.rxErrors.Add(1)
		case !n.Promiscuous && !n.accept(buf[netHdrLen:]):
			n.stats.rxFiltered.Add(1)
		default:
			sizes[count] = copy(frames[count], buf[netHdrLen:netHdrLen+l])
			n.stats.rxFrames.Add(1)
			n.stats.rxBytes.Add(uint64(l))
			count++
		}

		q.post(uint16(id))
		reposted = true
	}

	if reposted {
		q.publish()
		if q.wantsNotify() {
			n.write(virtio.QueueNotify, rxQueue)
		}
	}

	return count
}

// accept is the software destination filter: unicast to us, or group
// (multicast and broadcast) addressed.
func (n *NIC) accept(frame []byte) bool {
	if frame[0]&1 != 0 {
		return true
	}

	return frame[0] == n.MAC[0] && frame[1] == n.MAC[1] && frame[2] == n.MAC[2] &&
		frame[3] == n.MAC[3] && frame[4] == n.MAC[4] && frame[5] == n.MAC[5]
}

// reclaim returns the transmit descriptors the device has used to txFree.
// txMu must be held.
func (n *NIC) reclaim() {
	q := &n.tx
	for end := q.usedIdx(); q.lastUsed != end; q.lastUsed++ {
		if id, _ := q.used(q.lastUsed); id < uint32(q.size) {
			n.txFree = append(n.txFree, uint16(id))
		}
	}
}

// Transmit queues frames (each a full Ethernet frame without FCS) and
// returns how many were queued. The bytes are copied: frames may be reused
// as soon as Transmit returns. It stops at the first frame that is too long
// (ErrFrameTooLong) or too short (ErrFrameTooShort), or when the ring stays
// full for txWait (ErrTxTimeout). Safe for concurrent use.
func (n *NIC) Transmit(frames [][]byte) (int, error) {
	n.txMu.Lock()
	defer n.txMu.Unlock()

	if n.closed.Load() {
		return 0, ErrNICClosed
	}

	q := &n.tx
	queued := 0
	var err error

	n.reclaim()

	for _, f := range frames {
		if len(f) > MaxFrameLen {
			n.stats.txTooLong.Add(1)
			err = ErrFrameTooLong
			break
		}
		if len(f) < hdrLen {
			err = ErrFrameTooShort
			break
		}

		if len(n.txFree) == 0 {
			if queued > 0 {
				// let the device start on what is queued while we wait
				n.kickTx()
			}
			if !n.waitTx() {
				n.stats.txRingFull.Add(1)
				err = ErrTxTimeout
				break
			}
		}

		id := n.txFree[len(n.txFree)-1]
		n.txFree = n.txFree[:len(n.txFree)-1]

		buf := q.bufs[id]
		clear(buf[:netHdrLen])
		l := copy(buf[netHdrLen:], f)
		if l < MinFrameLen {
			clear(buf[netHdrLen+l : netHdrLen+MinFrameLen])
			l = MinFrameLen
		}
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&q.descriptor(id)[8])), uint32(netHdrLen+l))
		q.post(id)

		queued++
		n.stats.txFrames.Add(1)
		n.stats.txBytes.Add(uint64(len(f)))
	}

	if queued > 0 {
		n.kickTx()
	}

	return queued, err
}

// kickTx publishes the transmit ring and notifies the device.
func (n *NIC) kickTx() {
	n.tx.publish()
	if n.tx.wantsNotify() {
		n.write(virtio.QueueNotify, txQueue)
	}
}

// waitTx waits, with txMu held, until a transmit descriptor comes back.
func (n *NIC) waitTx() bool {
	q := &n.tx
	deadline := time.Now().Add(txWait)

	q.availFlag = 0
	q.publish()
	defer func() {
		q.availFlag = availNoInterrupt
		q.publish()
	}()

	for n.reclaim(); len(n.txFree) == 0; n.reclaim() {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}

		t := time.NewTimer(left)
		select {
		case <-n.txReady:
		case <-t.C:
		}
		t.Stop()
	}

	return true
}

// Stats returns a snapshot of the counters.
func (n *NIC) Stats() NICStats {
	return NICStats{
		RxFrames:   n.stats.rxFrames.Load(),
		RxBytes:    n.stats.rxBytes.Load(),
		RxFiltered: n.stats.rxFiltered.Load(),
		RxErrors:   n.stats.rxErrors.Load(),
		TxFrames:   n.stats.txFrames.Load(),
		TxBytes:    n.stats.txBytes.Load(),
		TxTooLong:  n.stats.txTooLong.Load(),
		TxRingFull: n.stats.txRingFull.Load(),
		Interrupts: n.stats.interrupts.Load(),
		RxLate:     n.rxWait.Late(),
		Resets:     n.stats.resets.Load(),
	}
}

// Close stops reception: a blocked Receive returns ErrNICClosed, later
// Transmit calls fail. The device keeps its queues (DMA memory is not
// freed); frames still arriving are dropped by the device once the receive
// ring is full.
func (n *NIC) Close() error {
	if n.closed.Swap(true) {
		return nil
	}

	select {
	case n.rxReady <- struct{}{}:
	default:
	}

	return nil
}

// rxPending reports whether the device has used a receive descriptor the
// reader has not taken.
func (n *NIC) rxPending() bool { return n.rx.lastUsed != n.rx.usedIdx() }
