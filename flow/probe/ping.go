package probe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
)

// Conn is the part of a flow.Port the probes use: whole SDUs with
// deadlines. flow.Port, *flow.Flow and UDPPort satisfy it. Errors are
// expected to wrap flow.ErrTimeout and flow.ErrClosed as Port's do.
type Conn interface {
	Read(p []byte, deadline time.Time) (int, error)
	Write(p []byte, deadline time.Time) error
}

// InPlaceWriter is a Conn that can have an SDU written where the flow
// takes it rather than copied in (flow.Flow.WriteWith over a hosted
// node's shared rings): fill gets the SDU's n bytes and must not keep
// them. Ping writes its pings so when the Conn can.
type InPlaceWriter interface {
	WriteWith(n int, fill func(sdu []byte), deadline time.Time) error
}

// InPlaceReader is a Conn that can hand over an SDU where the flow holds
// it rather than copy it out (flow.Flow.ReadWith over a hosted node's
// shared rings): it waits like Read for an SDU, until the deadline, and
// calls use with it; use must not keep it. The errors are Read's, and
// use is called only when the error is nil (or, for an SDU too long for
// the flow, wraps flow.ErrTruncated). Ping reads its replies so when the
// Conn can.
type InPlaceReader interface {
	ReadWith(use func(sdu []byte), deadline time.Time) error
}

// readBufSize is large enough for any SDU a probe reads: a flow SDU
// (flow.MaxSDU) or a UDP datagram.
const readBufSize = 64 << 10

// pollInterval bounds how long a reader blocks before it looks whether it
// should stop; it is not a busy poll, the read sleeps in between.
const pollInterval = 100 * time.Millisecond

// PingConfig says how to ping.
type PingConfig struct {
	Name     string        // what is pinged, for the summary
	Count    int           // SDUs to send; 0 = until ctx ends or Deadline passes
	Interval time.Duration // between sends; 0 sends back to back
	Size     int           // SDU size in bytes, at least HeaderLen
	Deadline time.Duration // stop everything after this long; 0 = no deadline
	Timeout  time.Duration // a reply slower than this is late (lost); also the wait for the last replies
}

// PingReply is one reply as Ping reports it.
type PingReply struct {
	Seq     uint64
	Size    int
	RTT     time.Duration
	Outcome Outcome
}

// Ping sends cfg.Count ping SDUs over c, one every cfg.Interval, each
// carrying its sequence number and the send time on a monotonic clock,
// and matches the echoed replies. onReply, if not nil, is called for
// every reply (from another goroutine than the caller's, never
// concurrently with itself, and never after Ping returned). Ping stops
// when the count is sent and answered (or cfg.Timeout passed after the
// last send), when cfg.Deadline passes or when ctx ends; an interrupted
// ping is not an error. It returns the statistics, and an error if the
// flow failed.
func Ping(ctx context.Context, c Conn, cfg PingConfig, onReply func(PingReply)) (Summary, error) {
	if cfg.Size < HeaderLen {
		return Summary{}, fmt.Errorf("probe: ping size %d is below the %d-byte header: %w", cfg.Size, HeaderLen, flow.ErrInvalid)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	start := time.Now()
	if cfg.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(cfg.Deadline))
		defer cancel()
	}

	var (
		mu    sync.Mutex // guards stats
		stats PingStats
	)
	got := make(chan struct{}, 1) // a reply arrived
	stop := make(chan struct{})   // the receiver should return
	recvErr := make(chan error, 1)
	go func() {
		recvErr <- pingReceiver(c, start, cfg.Timeout, &mu, &stats, stop, got, onReply)
	}()

	finish := func(err error) (Summary, error) {
		close(stop)
		if rerr := <-recvErr; err == nil && rerr != nil {
			err = fmt.Errorf("probe: ping %s: %w", cfg.Name, rerr)
		}
		mu.Lock()
		defer mu.Unlock()
		return stats.Summary(cfg.Name, time.Since(start)), err
	}

	buf := make([]byte, cfg.Size)
	ipw, _ := c.(InPlaceWriter)
	tick := time.NewTicker(max(cfg.Interval, time.Microsecond))
	defer tick.Stop()
	for i := 0; cfg.Count == 0 || i < cfg.Count; i++ {
		if i > 0 && cfg.Interval > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return finish(nil)
			case err := <-recvErr:
				recvErr <- err
				return finish(nil)
			}
		} else if ctx.Err() != nil {
			return finish(nil)
		}
		mu.Lock()
		seq := stats.Sent()
		mu.Unlock()
		var err error
		if ipw != nil { // the ping written where the flow takes it, not copied in
			err = ipw.WriteWith(len(buf), func(sdu []byte) { Put(sdu, KindPing, seq, int64(time.Since(start))) }, time.Now().Add(cfg.Timeout))
		} else {
			err = c.Write(Put(buf, KindPing, seq, int64(time.Since(start))), time.Now().Add(cfg.Timeout))
		}
		if err != nil {
			if errors.Is(err, flow.ErrTimeout) {
				continue // counted as sent and lost
			}
			return finish(fmt.Errorf("probe: ping %s: %w", cfg.Name, err))
		}
	}

	// Everything is sent: wait for the outstanding replies.
	wait := time.NewTimer(cfg.Timeout)
	defer wait.Stop()
	for {
		mu.Lock()
		pending := stats.Pending()
		mu.Unlock()
		if !pending {
			return finish(nil)
		}
		select {
		case <-got:
		case <-wait.C:
			return finish(nil)
		case <-ctx.Done():
			return finish(nil)
		case err := <-recvErr:
			recvErr <- err
			return finish(nil)
		}
	}
}

// pingReceiver reads replies until stop is closed or the flow fails; it
// returns the flow's error unwrapped. Where c is an InPlaceReader it
// reads each reply where the flow holds it: the reply is not copied.
func pingReceiver(c Conn, start time.Time, timeout time.Duration, mu *sync.Mutex, stats *PingStats,
	stop <-chan struct{}, got chan<- struct{}, onReply func(PingReply)) error {
	var (
		buf   []byte
		n     int    // the reply's size
		valid bool   // a ping's echo
		seq   uint64 // its sequence number
		sent  int64  // and its send time
	)
	note := func(sdu []byte) { // made once: it escapes to ReadWith
		m := Msg(sdu)
		n, valid = len(sdu), m.IsValid() && m.Kind() == KindPing
		if valid {
			seq, sent = m.Seq(), m.Time()
		}
	}
	ipr, _ := c.(InPlaceReader)
	if ipr == nil {
		buf = make([]byte, readBufSize)
	}
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		var err error
		if ipr != nil {
			err = ipr.ReadWith(note, time.Now().Add(pollInterval))
		} else if n, err = c.Read(buf, time.Now().Add(pollInterval)); err == nil {
			note(buf[:n])
		}
		now := time.Since(start)
		switch {
		case errors.Is(err, flow.ErrTimeout):
			continue
		case errors.Is(err, flow.ErrTruncated):
			mu.Lock()
			stats.CountInvalid()
			mu.Unlock()
			continue
		case err != nil:
			return err
		}
		mu.Lock()
		var r PingReply
		if !valid {
			stats.CountInvalid()
			r.Outcome = Invalid
		} else {
			r = PingReply{Seq: seq, Size: n, RTT: now - time.Duration(sent)}
			r.Outcome = stats.Reply(r.Seq, r.RTT, timeout)
		}
		mu.Unlock()
		if onReply != nil && r.Outcome != Invalid {
			onReply(r)
		}
		select {
		case got <- struct{}{}:
		default:
		}
	}
}

// Echo sends every SDU read from c back on c until the flow closes, and
// returns how many SDUs and bytes it echoed. A closed flow is the normal
// end (nil error); stop, when closed, ends it too. Where c reads and
// writes batches (BatchReader, BatchWriter) it echoes a run per call,
// also where c reads and writes in place (InPlaceReader, InPlaceWriter):
// a flood echoed in place, one SDU per call, costs more in calls and
// wake-ups than the copy it saves (docs/benchmarks.md, "Reading in
// place").
func Echo(c Conn, stop <-chan struct{}) (sdus, bytes uint64, err error) {
	rd := newRunReader(c)
	bw, _ := c.(BatchWriter)
	for {
		run, _, err := rd.read(time.Now().Add(pollInterval))
		switch {
		case errors.Is(err, flow.ErrTimeout):
			select {
			case <-stop:
				return sdus, bytes, nil
			default:
				continue
			}
		case errors.Is(err, flow.ErrClosed):
			return sdus, bytes, nil
		case err != nil:
			return sdus, bytes, fmt.Errorf("probe: echo: %w", err)
		}
		// A truncated SDU (longer than any SDU) is not ours to echo: read
		// dropped it.
		for len(run) > 0 {
			k := 0
			if bw != nil {
				k, err = bw.WriteBatch(run, time.Now().Add(time.Second))
			} else if err = c.Write(run[0], time.Now().Add(time.Second)); err == nil {
				k = 1
			}
			for _, p := range run[:k] {
				sdus++
				bytes += uint64(len(p))
			}
			run = run[k:]
			switch {
			case err == nil && k > 0:
				continue
			case err == nil, errors.Is(err, flow.ErrTimeout):
				// The reader is not reading (or, a short batch, a socket
				// is full): drop the rest, as a lossy flow would.
				run = nil
			case errors.Is(err, flow.ErrClosed):
				return sdus, bytes, nil
			default:
				return sdus, bytes, fmt.Errorf("probe: echo: %w", err)
			}
		}
	}
}
