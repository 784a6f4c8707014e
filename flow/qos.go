package flow

import (
	"fmt"
	"time"
)

// QoS is what an application asks of a flow, in the terms of Ouroboros'
// qosspec_t. The zero value is the best-effort spec with no guarantees.
// Units follow Ouroboros: Delay in milliseconds, Bandwidth in bit/s,
// Loss in parts per 2^32 (0 = no loss tolerated), BER in bit errors per 2^32.
type QoS struct {
	Delay        uint32        `cbor:"1,keyasint" toml:"delay" json:"delay"`               // ms; 0 = don't care
	Bandwidth    uint64        `cbor:"2,keyasint" toml:"bandwidth" json:"bandwidth"`       // bit/s; 0 = don't care
	Availability uint8         `cbor:"3,keyasint" toml:"availability" json:"availability"` // class of nines; 0 = don't care
	Loss         uint32        `cbor:"4,keyasint" toml:"loss" json:"loss"`                 // tolerated loss per 2^32; MaxLoss = any
	BER          uint32        `cbor:"5,keyasint" toml:"ber" json:"ber"`                   // tolerated bit errors per 2^32
	InOrder      bool          `cbor:"6,keyasint" toml:"in_order" json:"in_order"`         // deliver in order
	MaxGap       uint32        `cbor:"7,keyasint" toml:"max_gap" json:"max_gap"`           // ms of tolerated gap in delivery; MaxGap = any
	Timeout      time.Duration `cbor:"8,keyasint" toml:"timeout" json:"timeout"`           // peer silence after which the flow is declared dead; 0 = never
	// Sealed asks for a sealed flow: end-to-end key exchange between the
	// two nodes, every SDU encrypted and authenticated (docs/security.md,
	// "Sealed flows"). A layer that cannot seal refuses the allocation.
	Sealed bool `cbor:"9,keyasint,omitempty" toml:"sealed" json:"sealed,omitempty"`
}

// Limits used by the presets.
const (
	MaxLoss   = ^uint32(0) // any loss is acceptable
	MaxBER    = ^uint32(0) // any bit error rate is acceptable
	MaxGapAny = ^uint32(0)
)

// Raw is the preset for a raw flow: no reliability, no ordering, errors passed up.
func Raw() QoS { return QoS{Loss: MaxLoss, BER: MaxBER, MaxGap: MaxGapAny} }

// BestEffort is the preset for unreliable, unordered delivery.
func BestEffort() QoS { return QoS{Loss: MaxLoss, MaxGap: MaxGapAny} }

// Voice is the preset for interactive audio: low delay, in order, loss tolerated.
func Voice() QoS {
	return QoS{Delay: 50, Bandwidth: 100_000, Availability: 5, Loss: 1 << 24, InOrder: true, MaxGap: 100, Timeout: 10 * time.Second}
}

// Video is the preset for streaming video: high bandwidth, in order, some loss tolerated.
func Video() QoS {
	return QoS{Delay: 100, Bandwidth: 100_000_000, Availability: 3, Loss: 1 << 20, InOrder: true, MaxGap: 100, Timeout: 10 * time.Second}
}

// Data is the preset for reliable, in-order delivery (like TCP).
func Data() QoS {
	return QoS{Delay: 2000, Loss: 0, InOrder: true, MaxGap: 2000, Timeout: 60 * time.Second}
}

// DelayTolerant is the preset for flows across links that come and go or
// are carried (the carrier shim: docs/intermittent.md): the peer may be
// silent for a day before the flow is declared dead. It asks for no FRCT
// (its retransmission timers are seconds, the delay here hours): the
// carrier keeps what it was given until it is picked up or expires.
func DelayTolerant() QoS {
	return QoS{Loss: MaxLoss, MaxGap: MaxGapAny, Timeout: 24 * time.Hour}
}

// Preset returns the named preset: raw, best_effort, voice, video, data
// or delay_tolerant.
func Preset(name string) (QoS, error) {
	switch name {
	case "raw":
		return Raw(), nil
	case "best_effort", "best-effort", "":
		return BestEffort(), nil
	case "voice":
		return Voice(), nil
	case "video":
		return Video(), nil
	case "data":
		return Data(), nil
	case "delay_tolerant", "delay-tolerant":
		return DelayTolerant(), nil
	}
	return QoS{}, fmt.Errorf("flow: unknown QoS preset %q (want raw, best_effort, voice, video, data or delay_tolerant): %w", name, ErrInvalid)
}

// Reliable reports whether the spec needs retransmission (FRCT with ARQ).
func (q QoS) Reliable() bool { return q.Loss == 0 }

// NeedsFRCT reports whether the flow runs FRCT: for reliability or ordering.
func (q QoS) NeedsFRCT() bool { return q.Loss == 0 || q.InOrder }

// Cube is the QoS class a layer schedules a flow on. There are as many
// cubes as presets; a spec maps to the least demanding cube that meets it.
type Cube uint8

// The QoS cubes, in scheduling priority order (lowest value first).
const (
	CubeVoice Cube = iota
	CubeVideo
	CubeData
	CubeBestEffort
	CubeRaw
	NumCubes = 5
)

var cubeNames = [NumCubes]string{"voice", "video", "data", "best_effort", "raw"}

func (c Cube) String() string {
	if int(c) < len(cubeNames) {
		return cubeNames[c]
	}
	return fmt.Sprintf("cube(%d)", uint8(c))
}

// Cube maps the spec to the cube a layer serves it with.
func (q QoS) Cube() Cube {
	switch {
	case q.Delay != 0 && q.Delay <= 50:
		return CubeVoice
	case q.Delay != 0 && q.Delay <= 100:
		return CubeVideo
	case q.Loss == 0:
		return CubeData
	case q.BER == MaxBER:
		return CubeRaw
	}
	return CubeBestEffort
}
