// Package probe is the measurement protocol of the ouro tool and of the
// node's perf app: the wire format of ping and perf SDUs, the statistics
// kept over them (RTT min/avg/max/mdev, loss, reordering, duplicates;
// perf counters and rates) and the loops that run them over anything
// shaped like a flow.Port, including a plain UDP socket for baseline
// numbers.
package probe

import (
	"encoding/binary"
	"fmt"
)

// Msg is a ping or perf SDU as it travels, parsed in place:
//
//	 0               2       3       4                              12
//	+---------------+-------+-------+-------------------------------+
//	| magic 0x6F70  | ver 1 | kind  | seq (uint64)                  |
//	+---------------+-------+-------+-------------------------------+
//	| time (int64, ns on the sender's monotonic clock)              |
//	+---------------------------------------------------------------+ 20
//	| kind Report only: sdus, bytes, span_ns, reordered (4 x uint64) |
//	+---------------------------------------------------------------+ 52
//	| kind Report: steady_sdus, steady_bytes, steady_span_ns        |
//	| (3 x uint64; a server of before them sent none)               |
//	+---------------------------------------------------------------+ 76
//	| padding up to the SDU size (zeros)                            |
//
// All fields are big-endian. The receiver never interprets the time; it
// is the sender's own clock, echoed back for RTT. Check IsValid before
// calling any accessor. A Report of ReportLen bytes (a server of before
// the steady counters) reads as one whose steady counters are zero.
type Msg []byte

// Sizes of the format.
const (
	HeaderLen = 20              // magic, version, kind, seq, time
	ReportLen = HeaderLen + 4*8 // the shortest Report: four counters
	// ReportFullLen is a Report with the steady counters, as servers
	// send it now.
	ReportFullLen = ReportLen + 3*8
	Magic         = 0x6F70 // "op"
	Version       = 1
)

const (
	offMagic   = 0
	offVersion = 2
	offKind    = 3
	offSeq     = 4
	offTime    = 12
	offSDUs    = 20
	offBytes   = 28
	offSpan    = 36
	offReorder = 44
	offSteady  = 52 // steady_sdus, steady_bytes, steady_span_ns
)

// Kind says what an SDU is for.
type Kind uint8

// The kinds of probe SDUs.
const (
	KindPing      Kind = 1 // a ping; an echo server sends it back unchanged
	KindData      Kind = 2 // perf payload; counted by the perf server
	KindReportReq Kind = 3 // perf: "report?" — asks the server for its counts
	KindReport    Kind = 4 // perf: the server's counts, answering a KindReportReq
)

func (k Kind) String() string {
	switch k {
	case KindPing:
		return "ping"
	case KindData:
		return "data"
	case KindReportReq:
		return "report?"
	case KindReport:
		return "report"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// IsValid reports whether m is a well-formed probe SDU: long enough for
// its kind, with the right magic, version and a known kind.
func (m Msg) IsValid() bool {
	if len(m) < HeaderLen {
		return false
	}
	if binary.BigEndian.Uint16(m[offMagic:]) != Magic || m[offVersion] != Version {
		return false
	}
	switch Kind(m[offKind]) {
	case KindPing, KindData, KindReportReq:
		return true
	case KindReport:
		return len(m) >= ReportLen
	}
	return false
}

// Kind returns the SDU's kind.
func (m Msg) Kind() Kind { return Kind(m[offKind]) }

// Seq returns the sender's sequence number.
func (m Msg) Seq() uint64 { return binary.BigEndian.Uint64(m[offSeq:]) }

// Time returns the sender's timestamp, in nanoseconds since its own epoch.
func (m Msg) Time() int64 { return int64(binary.BigEndian.Uint64(m[offTime:])) }

// SetSeq sets the sequence number.
func (m Msg) SetSeq(seq uint64) { binary.BigEndian.PutUint64(m[offSeq:], seq) }

// SetTime sets the timestamp.
func (m Msg) SetTime(ns int64) { binary.BigEndian.PutUint64(m[offTime:], uint64(ns)) }

// Report returns the counters of a KindReport SDU (the steady ones zero
// in a Report shorter than ReportFullLen).
func (m Msg) Report() Report {
	r := Report{
		SDUs:      binary.BigEndian.Uint64(m[offSDUs:]),
		Bytes:     binary.BigEndian.Uint64(m[offBytes:]),
		SpanNS:    int64(binary.BigEndian.Uint64(m[offSpan:])),
		Reordered: binary.BigEndian.Uint64(m[offReorder:]),
	}
	if len(m) >= ReportFullLen {
		r.SteadySDUs = binary.BigEndian.Uint64(m[offSteady:])
		r.SteadyBytes = binary.BigEndian.Uint64(m[offSteady+8:])
		r.SteadySpanNS = int64(binary.BigEndian.Uint64(m[offSteady+16:]))
	}
	return r
}

// Put writes a header of the given kind, seq and time at the start of
// buf, zeroes the rest (the padding) and returns buf as a Msg. len(buf)
// must be at least HeaderLen (ReportLen for KindReport).
func Put(buf []byte, k Kind, seq uint64, ns int64) Msg {
	clear(buf)
	m := Msg(buf)
	binary.BigEndian.PutUint16(m[offMagic:], Magic)
	m[offVersion] = Version
	m[offKind] = byte(k)
	m.SetSeq(seq)
	m.SetTime(ns)
	return m
}

// PutReport writes a KindReport SDU answering the request with sequence
// number seq into buf (at least ReportFullLen bytes) and returns it,
// trimmed to ReportFullLen.
func PutReport(buf []byte, seq uint64, ns int64, r Report) Msg {
	m := Put(buf[:ReportFullLen], KindReport, seq, ns)
	binary.BigEndian.PutUint64(m[offSDUs:], r.SDUs)
	binary.BigEndian.PutUint64(m[offBytes:], r.Bytes)
	binary.BigEndian.PutUint64(m[offSpan:], uint64(r.SpanNS))
	binary.BigEndian.PutUint64(m[offReorder:], r.Reordered)
	binary.BigEndian.PutUint64(m[offSteady:], r.SteadySDUs)
	binary.BigEndian.PutUint64(m[offSteady+8:], r.SteadyBytes)
	binary.BigEndian.PutUint64(m[offSteady+16:], uint64(r.SteadySpanNS))
	return m
}

// Report is what a perf server counted on one flow (or one UDP peer).
type Report struct {
	SDUs      uint64 `json:"sdus"`      // data SDUs received
	Bytes     uint64 `json:"bytes"`     // their bytes, padding included
	SpanNS    int64  `json:"span_ns"`   // first to last data SDU, on the server's clock
	Reordered uint64 `json:"reordered"` // data SDUs that arrived after a higher sequence number
	// What arrived from SteadyAfter after the first data SDU on: the
	// rate once the flow has started (a congestion avoidance's ramp
	// left out). SteadySpanNS is from the first of them to the last.
	SteadySDUs   uint64 `json:"steady_sdus"`
	SteadyBytes  uint64 `json:"steady_bytes"`
	SteadySpanNS int64  `json:"steady_span_ns"`
}
