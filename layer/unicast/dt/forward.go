package dt

import (
	"fmt"
	"sync/atomic"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// Verdict is what to do with a received packet.
type Verdict uint8

// The verdicts.
const (
	Drop    Verdict = iota // release the buffer; Reason says why
	Deliver                // hand the payload to the local endpoint PCI.EID
	Forward                // send the packet on port NextHop
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case Deliver:
		return "deliver"
	case Forward:
		return "forward"
	}
	return fmt.Sprintf("dt.Verdict(%d)", uint8(v))
}

// Reason is why a packet was dropped.
type Reason uint8

// The drop reasons. Counters are kept per reason.
const (
	NoDrop     Reason = iota // not dropped
	BadHeader                // shorter than the PCI, or an unknown QoS cube
	TTLExpired               // TTL was 0, or reached 0 at this hop
	NoRoute                  // the PFF has no next hop for the destination
	QueueFull                // the cube's queue was full (counted by Scheduler)
	NumReasons               // the number of reasons, for sizing counter arrays
)

var reasonNames = [NumReasons]string{"none", "bad_header", "ttl_expired", "no_route", "queue_full"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("dt.Reason(%d)", uint8(r))
}

// Result is the outcome of Decide.
type Result struct {
	Verdict Verdict
	NextHop pff.Port // for Forward
	Reason  Reason   // for Drop
}

// PFF is the forwarding table Decide consults; *pff.Table implements it.
// Lookup must not block, must not allocate and must be safe for concurrent
// use: it is called once per forwarded packet.
type PFF interface {
	Lookup(dst layer.Addr, flowHash uint64) (pff.Port, bool)
}

var _ PFF = (*pff.Table)(nil)

// Counters are always-on packet counters, safe for concurrent use.
type Counters struct {
	Delivered atomic.Uint64
	Forwarded atomic.Uint64
	Drops     [NumReasons]atomic.Uint64 // indexed by Reason
}

// Forwarder makes the forward-or-deliver decision for one IPCP. It is
// safe for concurrent use; it has nothing running (no Start or Stop).
type Forwarder struct {
	self     layer.Addr
	pff      PFF
	counters Counters
}

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	Self layer.Addr // this IPCP's address
	PFF  PFF        // the forwarding table
}

// NewForwarder returns a Forwarder.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	if cfg.Self == 0 || cfg.PFF == nil {
		return nil, fmt.Errorf("dt: forwarder needs an address and a PFF: %w", flow.ErrInvalid)
	}
	return &Forwarder{self: cfg.Self, pff: cfg.PFF}, nil
}

// Counters returns the forwarder's counters (live, not a copy).
func (f *Forwarder) Counters() *Counters { return &f.counters }

// Decide decides what happens to the received packet pkt (PCI first). On
// Forward it has decremented the TTL in pkt in place; on Deliver the PCI
// is untouched. It counts the verdict, allocates nothing and never
// retains pkt. Multipath next hops are chosen by the destination EID, so
// one flow keeps one path.
func (f *Forwarder) Decide(pkt []byte) Result {
	p := PCI(pkt)
	if !p.IsValid() || p.Cube() >= flow.NumCubes {
		return f.drop(BadHeader)
	}
	ttl := p.TTL()
	if ttl == 0 {
		return f.drop(TTLExpired)
	}
	if p.Dst() == f.self {
		f.counters.Delivered.Add(1)
		return Result{Verdict: Deliver}
	}
	if ttl == 1 {
		return f.drop(TTLExpired)
	}
	nh, ok := f.pff.Lookup(p.Dst(), uint64(p.EID()))
	if !ok {
		return f.drop(NoRoute)
	}
	p.SetTTL(ttl - 1)
	f.counters.Forwarded.Add(1)
	return Result{Verdict: Forward, NextHop: nh}
}

func (f *Forwarder) drop(r Reason) Result {
	f.counters.Drops[r].Add(1)
	return Result{Verdict: Drop, Reason: r}
}
