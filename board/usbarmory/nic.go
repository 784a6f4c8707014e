//go:build tamago && arm

package usbarmory

// The ENET data path, written once here.
//
// TamaGo's enet package brings the MAC up (clocks, reset, RMII, MAC address,
// PHY) and this file drives the buffer descriptor rings itself, because the
// ring code in tamago v1.26.0 has four defects that matter to a router:
//
//  1. receive reads a descriptor's length before its status, so a frame
//     completing between the two reads is delivered with a stale length
//     (about 0.3% of frames under load on QEMU);
//  2. received frames are rounded up to a multiple of 8 bytes;
//  3. Tx silently drops frames longer than 1518 bytes, and never notices a
//     full ring (its ready-bit test shifts a byte and is always false);
//  4. ClearInterrupt writes back every pending event bit, not just one.
//
// Rings live in the default DMA region (OCRAM, 128 KiB, mapped strongly
// ordered and uncached by TamaGo), so no cache maintenance is needed; every
// descriptor word is accessed with sync/atomic loads and stores, which the
// compiler never elides or reorders and which emit DMB on ARMv7.
//
// Receive: the ENET interrupt handler clears RXF, masks it and signals
// rxReady; the single reader (Receive) drains descriptors whose empty bit
// is clear with the receive interrupt masked, and unmasks it only when it
// finds the ring empty (then looks once more before it waits): under load
// a burst of frames costs one interrupt, not one each (NICStats.Interrupts).
// Every IRQ exception wakes TamaGo's interrupt goroutine from the exception
// handler (runtime.WakeG), which edits the runtime's timer heap behind the
// interrupted code's back; fewer of them are fewer chances of that race.
// The reader
// reading the status word first and the length only after, copies each
// frame out, gives the descriptor back (empty) and pokes RDAR.
//
// Transmit: callers serialise on txMu, copy each frame into the next
// descriptor whose ready bit is clear, set ready, and poke TDAR once per
// batch. A full ring waits for the TXF interrupt (enabled only while a
// sender waits) up to txWait.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/usbarmory/tamago/board/usbarmory/mk2"
	"github.com/usbarmory/tamago/dma"
	"github.com/usbarmory/tamago/soc/nxp/enet"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/ouronet/ouro/board/internal/rxwait"
)

// Frame sizes, without the 4-byte FCS, which the MAC adds and strips.
const (
	// MaxFrameLen is the longest frame Transmit accepts and Receive
	// delivers: 14-byte header, 4-byte 802.1Q tag, 1500-byte payload.
	MaxFrameLen = 1518
	// MinFrameLen is the shortest frame on the wire; Transmit zero-pads
	// shorter frames to it. Receivers must use their own length field.
	MinFrameLen = 60

	fcsLen     = 4
	bufSize    = 1536 // MRBR: >= MaxFrameLen+fcsLen, multiple of 64
	descSize   = 8    // legacy buffer descriptor
	ringAlign  = 64
	defaultRx  = 32
	defaultTx  = 16
	rxMinFrame = 14 + fcsLen
)

// ENET register offsets and bits (i.MX6ULL RM, 22.5 Memory map/register
// definition, and 22.6.13 Legacy buffer descriptors).
const (
	regEIR  = enet.ENETx_EIR
	regEIMR = enet.ENETx_EIMR
	regRDAR = enet.ENETx_RDAR
	regTDAR = enet.ENETx_TDAR
	regRCR  = enet.ENETx_RCR
	regPALR = enet.ENETx_PALR
	regPAUR = enet.ENETx_PAUR
	regRDSR = enet.ENETx_RDSR
	regTDSR = enet.ENETx_TDSR
	regMRBR = enet.ENETx_MRBR
	regFTRL = enet.ENETx_FTRL

	eirRXF = 1 << enet.IRQ_RXF
	eirTXF = 1 << enet.IRQ_TXF

	rcrMaxFLShift = enet.RCR_MAX_FL
	rcrMaxFLMask  = 0x3fff << rcrMaxFLShift

	// descriptor status, the upper half of word 0 (DBSWP set: little endian)
	bdE  = 1 << enet.BD_RX_ST_E // rx: empty (owned by the MAC)
	bdR  = 1 << enet.BD_TX_ST_R // tx: ready (owned by the MAC)
	bdW  = 1 << enet.BD_ST_W    // wrap: last descriptor of the ring
	bdL  = 1 << enet.BD_ST_L    // last buffer of the frame
	bdTC = 1 << enet.BD_TX_ST_TC

	bdRxErrors = 1<<enet.BD_RX_ST_LG | 1<<enet.BD_RX_ST_NO | 1<<enet.BD_RX_ST_CR |
		1<<enet.BD_RX_ST_OV | 1<<enet.BD_RX_ST_TR
)

// Errors returned by NIC methods.
var (
	ErrNoNIC         = errors.New("usbarmory: board has no Ethernet port")
	ErrFrameTooLong  = errors.New("usbarmory: frame longer than MaxFrameLen")
	ErrFrameTooShort = errors.New("usbarmory: frame shorter than an Ethernet header")
	ErrTxTimeout     = errors.New("usbarmory: transmit ring full")
	ErrNICClosed     = errors.New("usbarmory: NIC closed")
	ErrNoDMA         = errors.New("usbarmory: not enough DMA memory for the rings")
)

// txWait bounds how long Transmit waits for a free descriptor.
const txWait = 100 * time.Millisecond

// NIC is one ENET MAC as a batch-oriented Ethernet frame device. Fill in the
// fields, call Init, then Receive from one goroutine and Transmit from any.
type NIC struct {
	// ENET is the controller (imx6ul.ENET1 or imx6ul.ENET2).
	ENET *enet.ENET
	// MAC is the station address. Nil means: under QEMU the address QEMU
	// gave the NIC (its -nic mac= option, 52:54:00:12:34:56 + index
	// otherwise, the same in every QEMU instance); on a real board a
	// random locally administered address.
	MAC net.HardwareAddr
	// RxRing and TxRing are descriptor counts (default 32 and 16: 74 KiB
	// of the 128 KiB OCRAM DMA region, so only one NIC fits with the
	// defaults).
	RxRing, TxRing int
	// Promiscuous disables the software destination filter. QEMU's ENET
	// model does no address filtering at all, so by default Receive drops
	// frames that are neither to MAC nor group-addressed.
	Promiscuous bool

	base     uint32
	ringAddr uint32 // DMA address of the descriptors (receive, then transmit)

	rx      ring // owned by the single reader
	rxArmed bool // owned by the single reader: it unmasked RXF since its last wake-up
	rxReady chan struct{}
	rxWait  rxwait.Waiter // the single reader's idle wait
	closed  atomic.Bool
	woken   atomic.Bool // Wake was called: the next Receive returns at once

	txMu    sync.Mutex // guards tx
	eimrMu  sync.Mutex // guards EIMR's read-modify-writes (held for those alone)
	tx      ring
	txReady chan struct{}

	stats nicCounters
}

// ring is a buffer descriptor ring in DMA memory.
type ring struct {
	desc []uint32 // 2 words per descriptor: len|status<<16, buffer address
	bufs [][]byte // one bufSize buffer per descriptor
	next int
}

// NICStats are the NIC's always-on counters.
type NICStats struct {
	RxFrames, RxBytes uint64
	// RxFiltered: frames for another station (software MAC filter).
	RxFiltered uint64
	// RxErrors: frames the MAC flagged (CRC, length, overrun, truncated,
	// split over several buffers) or shorter than a header.
	RxErrors          uint64
	TxFrames, TxBytes uint64
	// TxTooLong: frames refused by Transmit for exceeding MaxFrameLen.
	TxTooLong uint64
	// TxRingFull: times Transmit found no free descriptor and gave up.
	TxRingFull uint64
	// Resets: times Reset re-initialised the NIC.
	Resets uint64
	// Interrupts: ENET interrupts serviced (receive: at most one per
	// burst, the reader drains with the interrupt masked).
	Interrupts uint64
	// RxLate: times an idle Receive found frames after rxwait.Poll without
	// having been woken for them (a lost or very late interrupt).
	RxLate uint64
}

type nicCounters struct {
	rxFrames, rxBytes, rxFiltered, rxErrors  atomic.Uint64
	interrupts                               atomic.Uint64
	txFrames, txBytes, txTooLong, txRingFull atomic.Uint64
	resets                                   atomic.Uint64
}

// NIC returns the board's Ethernet port, configured but not initialised:
// ENET2 on the UA-MKII-LAN, ENET1 (QEMU's first -nic) under QEMU. Other Mk II
// models have no Ethernet port (ErrNoNIC). The same NIC is returned on every
// call.
func (b *Board) NIC() (*NIC, error) {
	if b.nic != nil {
		return b.nic, nil
	}

	var eth *enet.ENET

	if !imx6ul.Native {
		eth = imx6ul.ENET1
	} else if m, _ := mk2.Model(); m == mk2.LAN {
		eth = imx6ul.ENET2
	}

	if eth == nil {
		return nil, ErrNoNIC
	}

	b.nic = &NIC{ENET: eth}

	return b.nic, nil
}

// Init brings the MAC and PHY up, allocates the rings and starts reception.
// Board.Init must have run (Init registers the ENET interrupt).
func (n *NIC) Init() error {
	if n.ENET == nil {
		return ErrNoNIC
	}

	if n.RxRing <= 0 {
		n.RxRing = defaultRx
	}

	if n.TxRing <= 0 {
		n.TxRing = defaultTx
	}

	n.base = n.ENET.Base

	if n.MAC == nil {
		n.MAC = n.defaultMAC()
	} else if len(n.MAC) != 6 {
		return fmt.Errorf("usbarmory: ENET%d: invalid MAC %v", n.ENET.Index, n.MAC)
	}

	descBytes := (n.RxRing + n.TxRing) * descSize
	descBytes += -descBytes & (ringAlign - 1)
	total := descBytes + (n.RxRing+n.TxRing)*bufSize

	if largestFreeDMA() < uint(total+ringAlign) {
		return fmt.Errorf("usbarmory: ENET%d: %d bytes: %w", n.ENET.Index, total, ErrNoDMA)
	}

	// clocks, reset, RMII, MAC address, flow control, PHY; tamago also
	// programs MRBR/FTRL/MAX_FL, which are overridden below
	n.ENET.MAC = n.MAC
	n.ENET.Init()

	addr, mem := dma.Reserve(total, ringAlign)
	n.ringAddr = uint32(addr)

	n.rx = newRing(mem[:n.RxRing*descSize], mem[descBytes:], uint32(addr)+uint32(descBytes), n.RxRing, true)
	txDesc := mem[n.RxRing*descSize : (n.RxRing+n.TxRing)*descSize]
	txBufOff := descBytes + n.RxRing*bufSize
	n.tx = newRing(txDesc, mem[txBufOff:], uint32(addr)+uint32(txBufOff), n.TxRing, false)

	n.rxReady = make(chan struct{}, 1)
	n.txReady = make(chan struct{}, 1)

	n.start()
	registerInterrupt(n.ENET.IRQ, n.serviceInterrupt)
	n.write(regRDAR, 1<<enet.RDAR_ACTIVE)

	return nil
}

// start programs the ring registers and frame limits of a MAC that
// tamago's ENET.Init has set up, and enables the receive interrupt.
func (n *NIC) start() {
	// maximum receive buffer, truncation and frame length, FCS included
	n.write(regMRBR, bufSize)
	n.write(regFTRL, MaxFrameLen+fcsLen)
	rcr := n.read(regRCR)
	n.write(regRCR, rcr&^rcrMaxFLMask|(MaxFrameLen+fcsLen)<<rcrMaxFLShift)

	n.write(regRDSR, n.ringAddr)
	n.write(regTDSR, n.ringAddr+uint32(n.RxRing*descSize))

	n.write(regEIR, 0xffffffff)
	n.eimrMu.Lock()
	n.write(regEIMR, eirRXF)
	n.eimrMu.Unlock()
	n.rxArmed = true
}

// mask sets (on) or clears the interrupt enable bits in EIMR.
func (n *NIC) mask(bits uint32, on bool) {
	n.eimrMu.Lock()
	defer n.eimrMu.Unlock()

	m := n.read(regEIMR)
	if on {
		m |= bits
	} else {
		m &^= bits
	}
	n.write(regEIMR, m)
}

// Reset re-initialises an initialised NIC in place, as Init left it: the
// MAC's soft reset and set-up again (tamago's ENET.Init: every register,
// the PHY), both descriptor rings rewritten empty in the same DMA memory,
// the receive interrupt and reception started again. Frames in the rings
// are lost; the counters are kept (Resets counts the calls). No Receive
// may be running (a driver calls it between its incarnations, when its
// reader has returned); Transmit callers wait for it.
func (n *NIC) Reset() error {
	if n.rx.desc == nil {
		return fmt.Errorf("usbarmory: NIC reset before Init: %w", ErrNoNIC)
	}
	if n.closed.Load() {
		return ErrNICClosed
	}

	n.txMu.Lock()
	defer n.txMu.Unlock()

	n.mask(eirRXF|eirTXF, false)
	n.ENET.Init()

	n.rx.reset(true)
	n.tx.reset(false)

	// a stale wake-up would only make a Receive poll an empty ring
	select {
	case <-n.rxReady:
	default:
	}
	n.woken.Store(false)

	n.start()
	n.write(regRDAR, 1<<enet.RDAR_ACTIVE)
	n.stats.resets.Add(1)

	return nil
}

// defaultMAC is the address QEMU preloads in PALR/PAUR, or a random locally
// administered unicast address.
func (n *NIC) defaultMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)

	if !imx6ul.Native {
		binary.BigEndian.PutUint32(mac[0:4], n.read(regPALR))
		binary.BigEndian.PutUint16(mac[4:6], uint16(n.read(regPAUR)>>16))

		if mac[0]|mac[1]|mac[2]|mac[3]|mac[4]|mac[5] != 0 {
			return mac
		}
	}

	rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02

	return mac
}

func largestFreeDMA() (max uint) {
	for _, size := range dma.Default().FreeBlocks() {
		if size > max {
			max = size
		}
	}

	return
}

// reset gives every descriptor back empty (receive) or free (transmit),
// as newRing made them; the buffers and their addresses stay.
func (r *ring) reset(rx bool) {
	n := len(r.bufs)

	for i := 0; i < n; i++ {
		var status uint32
		if rx {
			status |= bdE
		}
		if i == n-1 {
			status |= bdW
		}

		atomic.StoreUint32(&r.desc[2*i], status<<16)
	}

	r.next = 0
}

func newRing(desc []byte, bufs []byte, bufAddr uint32, n int, rx bool) ring {
	r := ring{
		desc: unsafe.Slice((*uint32)(unsafe.Pointer(&desc[0])), 2*n),
		bufs: make([][]byte, n),
	}

	for i := 0; i < n; i++ {
		r.bufs[i] = bufs[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]

		var status uint32
		if rx {
			status |= bdE
		}
		if i == n-1 {
			status |= bdW
		}

		atomic.StoreUint32(&r.desc[2*i+1], bufAddr+uint32(i*bufSize))
		atomic.StoreUint32(&r.desc[2*i], status<<16)
	}

	return r
}

func (n *NIC) read(off uint32) uint32 {
	return atomic.LoadUint32(mmio(n.base + off))
}

func (n *NIC) write(off uint32, v uint32) {
	atomic.StoreUint32(mmio(n.base+off), v)
}

// mmio returns a pointer to the device register at physical address addr
// (TamaGo maps memory flat). unsafe.Add from nil states that the address
// is not a Go object.
func mmio(addr uint32) *uint32 {
	return (*uint32)(unsafe.Add(nil, uintptr(addr)))
}

// serviceInterrupt runs in the interrupt service goroutine: it clears
// exactly the events it consumes (EIR is write-1-to-clear) and wakes the
// waiters.
func (n *NIC) serviceInterrupt() {
	eir := n.read(regEIR) & (eirRXF | eirTXF)
	n.write(regEIR, eir)
	n.stats.interrupts.Add(1)

	if eir&eirRXF != 0 {
		// the reader drains with it masked and unmasks it when idle
		n.mask(eirRXF, false)

		select {
		case n.rxReady <- struct{}{}:
		default:
		}
	}

	if eir&eirTXF != 0 {
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
// caller. sizes are exact (no FCS, no rounding); a frame padded on the wire
// to MinFrameLen keeps its padding. Receive is for a single goroutine; it
// returns ErrNICClosed after Close. Frames in error and, unless
// Promiscuous, frames for other stations are dropped and counted.
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

		// Idle: take the receive interrupt again, then look once more
		// (a frame that came in meanwhile raised none while masked; one
		// still unread when unmasked raises it at once).
		if !n.rxArmed {
			n.rxArmed = true
			n.mask(eirRXF, true)
			continue
		}

		if n.rxWait.Wait(n.rxReady, n.rxPending) {
			n.rxArmed = false // the handler masked it (or Wake, Close: harmless)
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

// poll drains up to len(frames) received descriptors without blocking.
func (n *NIC) poll(frames [][]byte, sizes []int) (count int) {
	r := &n.rx
	max := min(len(frames), len(sizes))
	gave := false

	for count < max {
		i := r.next
		w := &r.desc[2*i]

		// status first: the MAC writes the length before it clears E
		status := atomic.LoadUint32(w) >> 16
		if status&bdE != 0 {
			break
		}
		length := int(atomic.LoadUint32(w) & 0xffff)

		switch {
		case status&bdL == 0 || status&bdRxErrors != 0 || length < rxMinFrame:
			n.stats.rxErrors.Add(1)
		case length-fcsLen > MaxFrameLen || len(frames[count]) < length-fcsLen:
			n.stats.rxErrors.Add(1)
		case !n.Promiscuous && !n.accept(r.bufs[i]):
			n.stats.rxFiltered.Add(1)
		default:
			sizes[count] = copy(frames[count], r.bufs[i][:length-fcsLen])
			n.stats.rxFrames.Add(1)
			n.stats.rxBytes.Add(uint64(sizes[count]))
			count++
		}

		// give the descriptor back to the MAC
		back := uint32(bdE)
		if i == len(r.bufs)-1 {
			back |= bdW
		}
		atomic.StoreUint32(w, back<<16)
		gave = true

		r.next = (i + 1) % len(r.bufs)
	}

	if gave {
		n.write(regRDAR, 1<<enet.RDAR_ACTIVE)
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

	r := &n.tx
	queued := 0
	var err error

	for _, f := range frames {
		if len(f) > MaxFrameLen {
			n.stats.txTooLong.Add(1)
			err = ErrFrameTooLong
			break
		}

		if len(f) < 14 {
			err = ErrFrameTooShort
			break
		}

		i := r.next
		w := &r.desc[2*i]

		if atomic.LoadUint32(w)>>16&bdR != 0 {
			if queued > 0 {
				// let the MAC start on what is queued while we wait
				n.write(regTDAR, 1<<enet.TDAR_ACTIVE)
			}

			if !n.waitTx(w) {
				n.stats.txRingFull.Add(1)
				err = ErrTxTimeout
				break
			}
		}

		buf := r.bufs[i]
		l := copy(buf, f)
		if l < MinFrameLen {
			clear(buf[l:MinFrameLen])
			l = MinFrameLen
		}

		status := uint32(bdR | bdL | bdTC)
		if i == len(r.bufs)-1 {
			status |= bdW
		}
		atomic.StoreUint32(w, status<<16|uint32(l))

		r.next = (i + 1) % len(r.bufs)
		queued++
		n.stats.txFrames.Add(1)
		n.stats.txBytes.Add(uint64(len(f)))
	}

	if queued > 0 {
		n.write(regTDAR, 1<<enet.TDAR_ACTIVE)
	}

	return queued, err
}

// waitTx waits, with txMu held, until the MAC releases descriptor word w.
func (n *NIC) waitTx(w *uint32) bool {
	deadline := time.Now().Add(txWait)

	n.mask(eirTXF, true)
	defer n.mask(eirTXF, false)

	for atomic.LoadUint32(w)>>16&bdR != 0 {
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
		Resets:     n.stats.resets.Load(),
		Interrupts: n.stats.interrupts.Load(),
		RxLate:     n.rxWait.Late(),
	}
}

// Close stops reception: a blocked Receive returns ErrNICClosed, later
// Transmit calls fail. The MAC keeps its rings (DMA memory is not freed).
func (n *NIC) Close() error {
	if n.closed.Swap(true) {
		return nil
	}

	n.mask(eirRXF|eirTXF, false)

	select {
	case n.rxReady <- struct{}{}:
	default:
	}

	return nil
}

// rxPending reports whether the next receive descriptor holds a frame.
func (n *NIC) rxPending() bool {
	return atomic.LoadUint32(&n.rx.desc[2*n.rx.next])>>16&bdE == 0
}
