package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ouronet/ouro/flow"
)

// PerfConfig says how to run a perf client.
type PerfConfig struct {
	Name          string        // what is measured, for the result
	Duration      time.Duration // how long to send
	Size          int           // SDU size in bytes, at least HeaderLen
	Rate          float64       // SDUs per second; 0 floods (as fast as the flow takes them)
	ReportTimeout time.Duration // wait for each report answer; 0 = 500 ms
	// Progress, if set, is called about once a second while sending,
	// from the sending goroutine.
	Progress func(Progress)
}

// Progress is the client's view of the last second of a perf run.
type Progress struct {
	Elapsed time.Duration // since the start
	Sent    uint64        // SDUs sent so far
	PPS     float64       // SDUs/s over the last interval
	BPS     float64       // bit/s over the last interval
}

// PerfResult is the outcome of a perf run: the client's counts and rates,
// the server's, and the loss between them.
type PerfResult struct {
	Name       string  `json:"name"`
	Size       int     `json:"size"`
	Rate       float64 `json:"rate_pps"` // asked for; 0 = flood
	Sent       uint64  `json:"sent"`
	SentBytes  uint64  `json:"sent_bytes"`
	SendErrors uint64  `json:"send_errors"` // writes refused by a full socket or flow
	SendNS     int64   `json:"send_ns"`     // first to last send
	SendPPS    float64 `json:"send_pps"`
	SendBPS    float64 `json:"send_bps"`
	Server     Report  `json:"server"`
	HaveServer bool    `json:"server_reported"` // false: no report came back; Server is zero
	RecvPPS    float64 `json:"recv_pps"`        // as the server counted, over its span
	RecvBPS    float64 `json:"recv_bps"`
	// From SteadyAfter after the server's first data SDU on (zero:
	// the run was shorter, or the server predates the counters).
	RecvSteadyPPS float64 `json:"recv_steady_pps"`
	RecvSteadyBPS float64 `json:"recv_steady_bps"`
	Loss          float64 `json:"loss_percent"`
}

// ErrNoReport is returned by PerfClient when the server never answered
// a report request; the result still holds the client's side.
var ErrNoReport = errors.New("no report from the perf server")

// reportAttempts bounds the report requests a client sends; it stops
// early once the server's count equals what was sent or stopped moving.
const reportAttempts = 10

// udpBatch is how many datagrams the UDP server takes per recvmmsg(2)
// and a flooding client sends per sendmmsg(2).
const udpBatch = 32

// BatchWriter is a Conn that can send several SDUs in one call: it
// returns how many of bs (from the first) were sent; a short count with a
// nil error means the rest did not fit now.
type BatchWriter interface {
	WriteBatch(bs [][]byte, deadline time.Time) (int, error)
}

// BatchReader is a Conn that can read several SDUs in one call, as
// flow.BatchPort's ReadBatch does: it blocks until one SDU arrives or the
// deadline passes, then returns those that are ready, at most len(bufs),
// with sizes[i] set; a truncated SDU ends the batch (the last counted,
// with an error wrapping flow.ErrTruncated). Servers read runs through
// it: one call, and one wake-up, per run instead of per SDU.
type BatchReader interface {
	ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error)
}

// readBatch is how many SDUs a server reads per call from a BatchReader.
const readBatch = 32

// runReader reads runs of SDUs from a Conn: with ReadBatch where it has
// it, one Read at a time otherwise. Its buffers are made once.
type runReader struct {
	c     Conn
	br    BatchReader
	bufs  [][]byte
	sizes []int
	views [][]byte
}

// SDULimiter is a Conn that says how long its SDUs may be (a flow of a
// layer that carries more than flow.MaxSDU): a batch reader's buffers
// are made that long.
type SDULimiter interface {
	MaxSDU() int
}

func newRunReader(c Conn) *runReader {
	r := &runReader{c: c}
	r.br, _ = c.(BatchReader)
	k, size := 1, readBufSize // a UDP datagram may be longer than an SDU
	if r.br != nil {
		k, size = readBatch, flow.MaxSDU
		if l, ok := c.(SDULimiter); ok {
			size = max(size, l.MaxSDU())
		}
	}
	r.bufs, r.sizes, r.views = make([][]byte, k), make([]int, k), make([][]byte, k)
	for i := range r.bufs {
		r.bufs[i] = make([]byte, size)
	}
	return r
}

// read returns the next run (valid until the next call) and whether an
// SDU too long for the buffers was dropped from its end; err is the
// Conn's, with an empty run.
func (r *runReader) read(deadline time.Time) (run [][]byte, truncated bool, err error) {
	n := 0
	if r.br != nil {
		n, err = r.br.ReadBatch(r.bufs, r.sizes, deadline)
	} else if r.sizes[0], err = r.c.Read(r.bufs[0], deadline); err == nil || errors.Is(err, flow.ErrTruncated) {
		n = 1
	}
	if errors.Is(err, flow.ErrTruncated) && n > 0 {
		n, truncated, err = n-1, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	for i := range n {
		r.views[i] = r.bufs[i][:r.sizes[i]]
	}
	return r.views[:n], truncated, nil
}

// PerfClient sends data SDUs over c for cfg.Duration (flooding, or paced
// at cfg.Rate), then asks the server for its counts with report requests
// over the same flow until the count is complete or stable. ctx ending
// cuts the sending short (the report is still asked for). The sender's
// SDUs carry sequence numbers so the server can count reordering.
func PerfClient(ctx context.Context, c Conn, cfg PerfConfig) (PerfResult, error) {
	res := PerfResult{Name: cfg.Name, Size: cfg.Size, Rate: cfg.Rate}
	if cfg.Size < HeaderLen {
		return res, fmt.Errorf("probe: perf size %d is below the %d-byte header: %w", cfg.Size, HeaderLen, flow.ErrInvalid)
	}
	if cfg.Duration <= 0 {
		return res, fmt.Errorf("probe: perf duration %v: %w", cfg.Duration, flow.ErrInvalid)
	}
	if cfg.ReportTimeout <= 0 {
		cfg.ReportTimeout = 500 * time.Millisecond
	}
	buf := make([]byte, max(cfg.Size, ReportFullLen))
	// A flood over a port that sends batches goes out udpBatch SDUs per
	// call (the plain-UDP baseline's sendmmsg); paced runs stay one by one.
	bw, _ := c.(BatchWriter)
	var batch [][]byte
	if cfg.Rate > 0 {
		bw = nil
	}
	if bw != nil {
		batch = make([][]byte, udpBatch)
		for i := range batch {
			batch[i] = make([]byte, cfg.Size)
		}
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	var last time.Time
	nextProgress, progSent := start.Add(time.Second), uint64(0)
	for {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			break
		}
		if cfg.Progress != nil && !now.Before(nextProgress) {
			pps, bps := Rate(res.Sent-progSent, (res.Sent-progSent)*uint64(cfg.Size), time.Second)
			cfg.Progress(Progress{Elapsed: now.Sub(start), Sent: res.Sent, PPS: pps, BPS: bps})
			nextProgress, progSent = nextProgress.Add(time.Second), res.Sent
		}
		if cfg.Rate > 0 {
			// Send what is due by now; sleep until the next one is due.
			// At high rates that sends small bursts, never a busy loop.
			due := start.Add(time.Duration(float64(res.Sent+res.SendErrors) / cfg.Rate * float64(time.Second)))
			if now.Before(due) {
				time.Sleep(min(due.Sub(now), end.Sub(now)))
				continue
			}
		}
		if bw != nil {
			// A batch of consecutive sequence numbers, one system call.
			for i, b := range batch {
				Put(b, KindData, res.Sent+res.SendErrors+uint64(i), int64(now.Sub(start)))
			}
			n, err := bw.WriteBatch(batch, end)
			res.Sent += uint64(n)
			res.SentBytes += uint64(n) * uint64(cfg.Size)
			if n > 0 {
				last = time.Now()
			}
			switch {
			case err == nil, errors.Is(err, flow.ErrTimeout):
			case errors.Is(err, flow.ErrBusy):
				res.SendErrors++
			default:
				return res, fmt.Errorf("probe: perf %s: %w", cfg.Name, err)
			}
			continue
		}
		m := Put(buf[:cfg.Size], KindData, res.Sent+res.SendErrors, int64(now.Sub(start)))
		err := c.Write(m, end)
		switch {
		case err == nil:
			res.Sent++
			res.SentBytes += uint64(cfg.Size)
			last = time.Now()
		case errors.Is(err, flow.ErrTimeout):
			// blocked until the end of the run: the loop ends
		case errors.Is(err, flow.ErrBusy):
			res.SendErrors++
		default:
			return res, fmt.Errorf("probe: perf %s: %w", cfg.Name, err)
		}
	}
	if res.Sent > 0 {
		res.SendNS = int64(last.Sub(start))
		res.SendPPS, res.SendBPS = Rate(res.Sent, res.SentBytes, last.Sub(start))
	}

	r, ok, err := askReport(c, buf, res.Sent, cfg.ReportTimeout)
	if err != nil {
		return res, fmt.Errorf("probe: perf %s: report: %w", cfg.Name, err)
	}
	if !ok {
		res.Loss = 100
		return res, fmt.Errorf("probe: perf %s: %w", cfg.Name, ErrNoReport)
	}
	res.Server, res.HaveServer = r, true
	res.RecvPPS, res.RecvBPS = Rate(r.SDUs, r.Bytes, time.Duration(r.SpanNS))
	res.RecvSteadyPPS, res.RecvSteadyBPS = Rate(r.SteadySDUs, r.SteadyBytes, time.Duration(r.SteadySpanNS))
	res.Loss = LossPercent(res.Sent, r.SDUs)
	return res, nil
}

// askReport sends report requests and reads answers until the server's
// count reaches sent or two answers in a row agree.
func askReport(c Conn, buf []byte, sent uint64, timeout time.Duration) (Report, bool, error) {
	var (
		have bool
		last Report
	)
	rbuf := make([]byte, readBufSize)
	for attempt := uint64(0); attempt < reportAttempts; attempt++ {
		req := Put(buf[:HeaderLen], KindReportReq, attempt, 0)
		if err := c.Write(req, time.Now().Add(timeout)); err != nil && !errors.Is(err, flow.ErrTimeout) {
			return last, have, err
		}
		deadline := time.Now().Add(timeout)
		for {
			n, err := c.Read(rbuf, deadline)
			if errors.Is(err, flow.ErrTimeout) {
				break
			}
			if errors.Is(err, flow.ErrTruncated) {
				continue
			}
			if err != nil {
				return last, have, err
			}
			m := Msg(rbuf[:n])
			if !m.IsValid() || m.Kind() != KindReport {
				continue
			}
			r := m.Report()
			stable := have && r.SDUs == last.SDUs
			have, last = true, r
			if r.SDUs >= sent || stable {
				return last, true, nil
			}
			if m.Seq() == attempt {
				// The answer to this request: give data in flight a
				// moment before asking again.
				time.Sleep(timeout / 5)
				break
			}
		}
	}
	return last, have, nil
}

// PerfServer is the server side of perf for one flow (or one UDP peer):
// it counts data SDUs, answers report requests with the counts so far,
// and echoes pings. Not safe for concurrent use.
type PerfServer struct {
	counter PerfCounter
	invalid uint64
}

// Handle processes one received SDU that arrived at now and returns the
// answer to send back, if any, built in out (at least ReportFullLen bytes)
// or, for a ping, in in itself.
func (s *PerfServer) Handle(in []byte, now time.Duration, out []byte) []byte {
	m := Msg(in)
	if !m.IsValid() {
		s.invalid++
		return nil
	}
	switch m.Kind() {
	case KindData:
		s.counter.Data(m.Seq(), len(in), now)
	case KindReportReq:
		return PutReport(out, m.Seq(), m.Time(), s.counter.Report())
	case KindPing:
		return in
	default:
		s.invalid++
	}
	return nil
}

// Report returns the counts so far.
func (s *PerfServer) Report() Report { return s.counter.Report() }

// Invalid returns how many SDUs were not probe SDUs.
func (s *PerfServer) Invalid() uint64 { return s.invalid }

// ServePerf runs a PerfServer on c until the flow closes (the normal end:
// nil error) or stop is closed, and returns what it counted. It reads
// runs of SDUs where c is a BatchReader.
func ServePerf(c Conn, stop <-chan struct{}) (Report, error) {
	var s PerfServer
	start := time.Now()
	rd := newRunReader(c)
	out := make([]byte, ReportFullLen)
	for {
		run, truncated, err := rd.read(time.Now().Add(pollInterval))
		switch {
		case errors.Is(err, flow.ErrTimeout):
			select {
			case <-stop:
				return s.Report(), nil
			default:
				continue
			}
		case errors.Is(err, flow.ErrClosed):
			return s.Report(), nil
		case err != nil:
			return s.Report(), fmt.Errorf("probe: perf server: %w", err)
		}
		if truncated {
			s.invalid++
		}
		now := time.Since(start)
		for _, in := range run {
			reply := s.Handle(in, now, out)
			if reply == nil {
				continue
			}
			if err := c.Write(reply, time.Now().Add(time.Second)); err != nil && !errors.Is(err, flow.ErrTimeout) {
				if errors.Is(err, flow.ErrClosed) {
					return s.Report(), nil
				}
				return s.Report(), fmt.Errorf("probe: perf server: %w", err)
			}
		}
	}
}
