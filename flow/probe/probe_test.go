package probe

import (
	"bytes"
	"math"
	"testing"
	"time"
)

func TestMsgRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		size int
		seq  uint64
		ns   int64
	}{
		{"ping minimal", KindPing, HeaderLen, 0, 0},
		{"ping padded", KindPing, 64, 3, 112_000},
		{"data max seq", KindData, 1400, math.MaxUint64, math.MaxInt64},
		{"report request", KindReportReq, HeaderLen, 7, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := bytes.Repeat([]byte{0xAA}, tt.size)
			m := Put(buf, tt.kind, tt.seq, tt.ns)
			if !m.IsValid() {
				t.Fatalf("IsValid() = false for % x", m[:HeaderLen])
			}
			if got := m.Kind(); got != tt.kind {
				t.Errorf("Kind() = %v, want %v", got, tt.kind)
			}
			if got := m.Seq(); got != tt.seq {
				t.Errorf("Seq() = %d, want %d", got, tt.seq)
			}
			if got := m.Time(); got != tt.ns {
				t.Errorf("Time() = %d, want %d", got, tt.ns)
			}
			for i, b := range m[HeaderLen:] {
				if b != 0 {
					t.Fatalf("padding byte %d = %#x, want 0", HeaderLen+i, b)
				}
			}
		})
	}
}

func TestReportRoundTrip(t *testing.T) {
	want := Report{SDUs: 10, Bytes: 14000, SpanNS: 9_000_000, Reordered: 2, SteadySDUs: 7, SteadyBytes: 9800, SteadySpanNS: 5_000_000}
	m := PutReport(make([]byte, 100), 4, 55, want)
	if len(m) != ReportFullLen {
		t.Fatalf("len = %d, want %d", len(m), ReportFullLen)
	}
	if !m.IsValid() || m.Kind() != KindReport || m.Seq() != 4 || m.Time() != 55 {
		t.Fatalf("header: valid %v kind %v seq %d time %d", m.IsValid(), m.Kind(), m.Seq(), m.Time())
	}
	if got := m.Report(); got != want {
		t.Errorf("Report() = %+v, want %+v", got, want)
	}
	// A server of before the steady counters sent the first ReportLen
	// bytes: the same counts, the steady ones zero.
	old := want
	old.SteadySDUs, old.SteadyBytes, old.SteadySpanNS = 0, 0, 0
	if short := m[:ReportLen]; !short.IsValid() || short.Report() != old {
		t.Errorf("a short report: valid %v, Report() = %+v, want %+v", short.IsValid(), short.Report(), old)
	}
}

func TestMsgIsValid(t *testing.T) {
	good := Put(make([]byte, HeaderLen), KindPing, 1, 1)
	mod := func(f func(m []byte) []byte) Msg {
		c := append([]byte(nil), good...)
		return Msg(f(c))
	}
	tests := []struct {
		name string
		m    Msg
		want bool
	}{
		{"good", good, true},
		{"empty", nil, false},
		{"short", good[:HeaderLen-1], false},
		{"bad magic", mod(func(m []byte) []byte { m[0] ^= 1; return m }), false},
		{"bad version", mod(func(m []byte) []byte { m[2] = 2; return m }), false},
		{"kind zero", mod(func(m []byte) []byte { m[3] = 0; return m }), false},
		{"unknown kind", mod(func(m []byte) []byte { m[3] = 9; return m }), false},
		{"short report", mod(func(m []byte) []byte { m[3] = byte(KindReport); return m }), false},
		{"report", mod(func(m []byte) []byte { m[3] = byte(KindReport); return append(m, make([]byte, 32)...) }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.IsValid(); got != tt.want {
				t.Errorf("IsValid() = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzMsg(f *testing.F) {
	f.Add([]byte(Put(make([]byte, 64), KindPing, 3, 99)))
	f.Add([]byte(PutReport(make([]byte, ReportFullLen), 1, 2, Report{SDUs: 1, Bytes: 2, SpanNS: 3, Reordered: 4, SteadySDUs: 5, SteadyBytes: 6, SteadySpanNS: 7})))
	f.Add([]byte(PutReport(make([]byte, ReportFullLen), 1, 2, Report{SDUs: 1, Bytes: 2, SpanNS: 3, Reordered: 4})[:ReportLen]))
	f.Add([]byte(Put(make([]byte, HeaderLen), KindReportReq, 0, 0)))
	f.Add([]byte{0x6f, 0x70, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := Msg(b)
		if !m.IsValid() {
			return
		}
		// Every accessor of a valid message is safe, and re-encoding
		// what was decoded gives back the same header (and counters).
		k, seq, ns := m.Kind(), m.Seq(), m.Time()
		var again Msg
		if k == KindReport {
			// The steady counters where the report has them (a
			// shorter one's are zero, so not compared).
			n := ReportLen
			if len(b) >= ReportFullLen {
				n = ReportFullLen
			}
			again = PutReport(make([]byte, ReportFullLen), seq, ns, m.Report())
			if !bytes.Equal(again[:n], b[:n]) {
				t.Fatalf("report re-encoding % x, want % x", again[:n], b[:n])
			}
		} else {
			again = Put(make([]byte, HeaderLen), k, seq, ns)
			if !bytes.Equal(again, b[:HeaderLen]) {
				t.Fatalf("re-encoding % x, want % x", again, b[:HeaderLen])
			}
		}
		// A perf server takes any valid message without panicking.
		var s PerfServer
		s.Handle(b, time.Second, make([]byte, ReportFullLen))
	})
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func TestPingStats(t *testing.T) {
	type reply struct {
		seq uint64
		rtt time.Duration
	}
	tests := []struct {
		name     string
		sent     int
		replies  []reply
		timeout  time.Duration
		outcomes []Outcome
		want     Summary
	}{
		{
			name:     "all in order",
			sent:     3,
			replies:  []reply{{0, ms(1)}, {1, ms(2)}, {2, ms(3)}},
			outcomes: []Outcome{OK, OK, OK},
			want:     Summary{Transmitted: 3, Received: 3, RTTMinMS: 1, RTTAvgMS: 2, RTTMaxMS: 3, RTTMdevMS: math.Sqrt(2.0 / 3)},
		},
		{
			name:     "loss",
			sent:     4,
			replies:  []reply{{0, ms(2)}, {2, ms(2)}},
			outcomes: []Outcome{OK, OK},
			want:     Summary{Transmitted: 4, Received: 2, LossPercent: 50, RTTMinMS: 2, RTTAvgMS: 2, RTTMaxMS: 2},
		},
		{
			name:     "reorder and duplicate",
			sent:     3,
			replies:  []reply{{1, ms(1)}, {0, ms(3)}, {1, ms(1)}, {2, ms(2)}},
			outcomes: []Outcome{OK, OutOfOrder, Duplicate, OK},
			want:     Summary{Transmitted: 3, Received: 3, Duplicates: 1, OutOfOrder: 1, RTTMinMS: 1, RTTAvgMS: 2, RTTMaxMS: 3, RTTMdevMS: math.Sqrt(2.0 / 3)},
		},
		{
			name:     "late and invalid",
			sent:     2,
			timeout:  ms(10),
			replies:  []reply{{0, ms(20)}, {5, ms(1)}, {1, ms(4)}, {0, ms(1)}},
			outcomes: []Outcome{Late, Invalid, OK, Duplicate},
			want:     Summary{Transmitted: 2, Received: 1, Late: 1, Invalid: 1, Duplicates: 1, LossPercent: 50, RTTMinMS: 4, RTTAvgMS: 4, RTTMaxMS: 4},
		},
		{
			name: "nothing sent",
			want: Summary{},
		},
		{
			name:     "many sequence numbers",
			sent:     200,
			replies:  []reply{{199, ms(1)}, {64, ms(1)}, {128, ms(1)}},
			outcomes: []Outcome{OK, OutOfOrder, OutOfOrder},
			want:     Summary{Transmitted: 200, Received: 3, OutOfOrder: 2, LossPercent: 98.5, RTTMinMS: 1, RTTAvgMS: 1, RTTMaxMS: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s PingStats
			for i := 0; i < tt.sent; i++ {
				if got := s.Sent(); got != uint64(i) {
					t.Fatalf("Sent() = %d, want %d", got, i)
				}
			}
			for i, r := range tt.replies {
				if got := s.Reply(r.seq, r.rtt, tt.timeout); got != tt.outcomes[i] {
					t.Errorf("reply %d (seq %d): outcome %q, want %q", i, r.seq, got, tt.outcomes[i])
				}
			}
			got := s.Summary("", 0)
			const eps = 1e-9
			if got.Transmitted != tt.want.Transmitted || got.Received != tt.want.Received ||
				got.Duplicates != tt.want.Duplicates || got.OutOfOrder != tt.want.OutOfOrder ||
				got.Late != tt.want.Late || got.Invalid != tt.want.Invalid ||
				math.Abs(got.LossPercent-tt.want.LossPercent) > eps ||
				math.Abs(got.RTTMinMS-tt.want.RTTMinMS) > eps || math.Abs(got.RTTAvgMS-tt.want.RTTAvgMS) > eps ||
				math.Abs(got.RTTMaxMS-tt.want.RTTMaxMS) > eps || math.Abs(got.RTTMdevMS-tt.want.RTTMdevMS) > 1e-6 {
				t.Errorf("Summary() = %+v,\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPerfCounter(t *testing.T) {
	var c PerfCounter
	for _, d := range []struct {
		seq uint64
		at  time.Duration
	}{{0, ms(10)}, {2, ms(11)}, {1, ms(12)}, {3, ms(20)}} {
		c.Data(d.seq, 100, d.at)
	}
	want := Report{SDUs: 4, Bytes: 400, SpanNS: int64(ms(10)), Reordered: 1}
	if got := c.Report(); got != want {
		t.Errorf("Report() = %+v, want %+v", got, want)
	}
	// From SteadyAfter after the first on, the steady counters count
	// too, their span from the first of them.
	c.Data(4, 100, ms(10)+SteadyAfter-1)
	c.Data(5, 200, ms(10)+SteadyAfter)
	c.Data(6, 300, ms(10)+SteadyAfter+ms(500))
	want = Report{SDUs: 7, Bytes: 1000, SpanNS: int64(SteadyAfter + ms(500)), Reordered: 1,
		SteadySDUs: 2, SteadyBytes: 500, SteadySpanNS: int64(ms(500))}
	if got := c.Report(); got != want {
		t.Errorf("after a second: Report() = %+v, want %+v", got, want)
	}
}

func TestRateAndLoss(t *testing.T) {
	tests := []struct {
		name             string
		sdus, bytes      uint64
		span             time.Duration
		wantPPS, wantBPS float64
		sent, recv       uint64
		wantLoss         float64
	}{
		{"one second", 1000, 1_000_000, time.Second, 1000, 8_000_000, 1000, 1000, 0},
		{"half second", 500, 500, 500 * time.Millisecond, 1000, 8000, 1000, 500, 50},
		{"zero span", 1, 100, 0, 0, 0, 0, 0, 0},
		{"more received than sent", 1, 1, time.Second, 1, 8, 2, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pps, bps := Rate(tt.sdus, tt.bytes, tt.span)
			if pps != tt.wantPPS || bps != tt.wantBPS {
				t.Errorf("Rate() = %g, %g; want %g, %g", pps, bps, tt.wantPPS, tt.wantBPS)
			}
			if got := LossPercent(tt.sent, tt.recv); got != tt.wantLoss {
				t.Errorf("LossPercent(%d, %d) = %g, want %g", tt.sent, tt.recv, got, tt.wantLoss)
			}
		})
	}
}

func TestPerfServerHandle(t *testing.T) {
	var s PerfServer
	out := make([]byte, ReportFullLen)
	data := Put(make([]byte, 100), KindData, 0, 0)
	if r := s.Handle(data, ms(1), out); r != nil {
		t.Fatalf("data answered with % x", r)
	}
	if r := s.Handle([]byte("garbage that is long enough"), ms(2), out); r != nil || s.Invalid() != 1 {
		t.Fatalf("garbage: reply %x, invalid %d; want none, 1", r, s.Invalid())
	}
	ping := Put(make([]byte, 64), KindPing, 9, 77)
	if r := s.Handle(ping, ms(3), out); !bytes.Equal(r, ping) {
		t.Fatalf("ping answered with % x, want it echoed", r)
	}
	r := Msg(s.Handle(Put(make([]byte, HeaderLen), KindReportReq, 5, 6), ms(4), out))
	if !r.IsValid() || r.Kind() != KindReport || r.Seq() != 5 || r.Time() != 6 {
		t.Fatalf("report request answered with % x", r)
	}
	if got, want := r.Report(), (Report{SDUs: 1, Bytes: 100}); got != want {
		t.Errorf("report %+v, want %+v", got, want)
	}
}
