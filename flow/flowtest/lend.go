package flowtest

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
)

// LendingPort is a flow.LendPort over a BatchPort, for tests of a reader
// that takes lent SDUs (a shim's transmit loop): Lend reads a batch into
// buffers of its own, each SDU behind headroom bytes of room and with
// TailRoom bytes after it, and lends them in place, as the node's rings
// lend their buffers. It counts the calls and what the reader did wrong.
type LendingPort struct {
	flow.BatchPort
	headroom int
	bufs     [][]byte
	rooms    [][]byte
	sizes    []int
	lent     bool

	// Lends and Returns count the calls that lent or returned something;
	// Unreturned counts Lends made while the last one's SDUs were still
	// out (a reader that broke the contract).
	Lends, Returns, Unreturned atomic.Int64
}

// TailRoom is the room a LendingPort leaves after each SDU it lends.
const TailRoom = 64

// Lending wraps p, a BatchPort (a Pipe end), lending at most 32 SDUs per
// Lend with headroom bytes of room in front of each.
func Lending(p flow.Port, headroom int) *LendingPort {
	bp := p.(flow.BatchPort)
	l := &LendingPort{BatchPort: bp, headroom: headroom, bufs: make([][]byte, 32), rooms: make([][]byte, 32), sizes: make([]int, 32)}
	for i := range l.bufs {
		l.bufs[i] = make([]byte, headroom+flow.MaxSDU+TailRoom)
		l.rooms[i] = l.bufs[i][headroom : headroom+flow.MaxSDU]
	}
	return l
}

var _ flow.LendPort = (*LendingPort)(nil)

// Lend implements flow.LendPort.
func (l *LendingPort) Lend(frames [][]byte, head int, deadline time.Time) (int, error) {
	if head < 0 || head > l.headroom {
		return 0, fmt.Errorf("flowtest: lend with %d bytes in front (most %d): %w", head, l.headroom, flow.ErrInvalid)
	}
	if l.lent {
		l.Unreturned.Add(1)
	}
	k := min(len(frames), len(l.bufs))
	n, err := l.ReadBatch(l.rooms[:k], l.sizes[:k], deadline)
	if n == 0 {
		return 0, err
	}
	for i := range n {
		frames[i] = l.bufs[i][l.headroom-head : l.headroom+l.sizes[i]]
	}
	l.lent = true
	l.Lends.Add(1)
	return n, nil
}

// Return implements flow.LendPort.
func (l *LendingPort) Return() {
	if l.lent {
		l.lent = false
		l.Returns.Add(1)
	}
}
