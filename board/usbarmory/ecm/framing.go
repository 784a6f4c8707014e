package ecm

import "sync/atomic"

// Framing (ECM 1.2, 3.3.1 Segment Delineation): an Ethernet frame crosses
// a bulk endpoint as one USB transfer, a run of wMaxPacketSize packets
// ended by a short packet; a frame whose length is a multiple of
// wMaxPacketSize is ended by a zero-length packet (ZLP). The frame carries
// no FCS and is at most wMaxSegmentSize bytes.

// Frame sizes.
const (
	// MaxSegmentSize is wMaxSegmentSize (ECM 1.2, 5.4 Table 3): the
	// longest frame, 14-byte header and 1500-byte payload, no FCS and no
	// 802.1Q tag.
	MaxSegmentSize = 1514
	// MinFrameLen is the shortest frame accepted: an Ethernet header.
	// Frames are not padded to 60 bytes on USB.
	MinFrameLen = 14
)

// NeedsZLP reports whether a frame of n bytes sent on an endpoint with
// packets of maxPacket bytes must be followed by a zero-length packet (ECM
// 1.2, 3.3.1): when it fills its last packet exactly.
func NeedsZLP(n, maxPacket int) bool {
	return n > 0 && n%maxPacket == 0
}

// Packets is how many USB packets a frame of n bytes takes, the ZLP
// included.
func Packets(n, maxPacket int) int {
	p := (n + maxPacket - 1) / maxPacket
	if NeedsZLP(n, maxPacket) || n == 0 {
		p++
	}
	return p
}

// RxBufferSize is the OUT transfer size to ask the controller for: the
// smallest multiple of maxPacket longer than MaxSegmentSize (1536 for both
// 64 and 512). A frame of MaxSegmentSize bytes then always ends with a
// short packet inside the buffer, so a transfer that fills the buffer
// exactly is a frame that is too long. (The buffer must be a multiple of
// maxPacket: a full packet arriving with less room left is a controller
// error.)
func RxBufferSize(maxPacket int) int {
	return (MaxSegmentSize/maxPacket + 1) * maxPacket
}

// Verdict is what a completed OUT transfer holds.
type Verdict uint8

const (
	// Frame: one whole frame, MinFrameLen to MaxSegmentSize bytes. Linux
	// hosts (usbnet without FLAG_SEND_ZLP) append one byte instead of
	// a ZLP to a frame that is a multiple of wMaxPacketSize; that byte is
	// delivered as trailing padding, which Ethernet consumers ignore.
	Frame Verdict = iota
	// Runt: shorter than an Ethernet header (a lone ZLP included).
	Runt
	// Oversize: longer than MaxSegmentSize, or a transfer that filled its
	// buffer without a short packet; what follows up to the next short
	// packet is the same frame's tail.
	Oversize
	// Tail: the rest of an oversize frame, discarded.
	Tail
)

var verdictNames = [...]string{Frame: "frame", Runt: "runt", Oversize: "oversize", Tail: "tail"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// Receiver tracks segment delineation across OUT transfers. The zero value
// is ready. Transfer is for one goroutine (one OUT endpoint); Reset may be
// called from any.
type Receiver struct {
	discarding bool        // inside an oversize frame
	reset      atomic.Bool // Reset asked; the next Transfer starts over
}

// Reset makes the next Transfer start at a frame's beginning, forgetting
// an oversize frame whose tail it was discarding (a gadget's reset: the
// host's next transfer is taken for a frame, not a tail). Safe from any
// goroutine while Transfer runs on the endpoint's.
func (r *Receiver) Reset() { r.reset.Store(true) }

// Transfer classifies an OUT transfer that completed with got bytes in a
// buffer of asked bytes. A transfer ends at a short packet (got < asked)
// or when the buffer is full (got == asked): the latter means the frame
// went on and is oversize (RxBufferSize). A frame ended by a ZLP right
// after a full buffer leaves no trace if the driver hides zero-length
// transfers (TamaGo's does): the next frame is then counted as Tail.
func (r *Receiver) Transfer(got, asked int) Verdict {
	if r.reset.Load() && r.reset.Swap(false) {
		r.discarding = false
	}
	terminated := got < asked
	if r.discarding {
		r.discarding = !terminated
		return Tail
	}
	if !terminated {
		r.discarding = true
		return Oversize
	}
	switch {
	case got > MaxSegmentSize:
		return Oversize
	case got < MinFrameLen:
		return Runt
	}
	return Frame
}
