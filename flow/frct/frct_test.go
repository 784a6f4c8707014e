package frct

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// t0 is the fake clock's epoch.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func at(d time.Duration) time.Time { return t0.Add(d) }

func mustNew(t testing.TB, cfg Config) *Conn {
	t.Helper()
	c, err := New(cfg, t0)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return c
}

// send frames sdu and returns a copy of the packet.
func send(t testing.TB, c *Conn, now time.Time, sdu string) []byte {
	t.Helper()
	pkt := make([]byte, HeaderSize+c.cfg.MaxSDU)
	n, err := c.Send(now, []byte(sdu), pkt)
	if err != nil {
		t.Fatalf("Send(%q): %v", sdu, err)
	}
	return pkt[:n]
}

// poll returns copies of every packet due at now.
func poll(c *Conn, now time.Time) []PCI {
	var out []PCI
	for {
		pkt := make([]byte, HeaderSize+c.cfg.MaxSDU)
		n := c.Poll(now, pkt)
		if n == 0 {
			return out
		}
		out = append(out, PCI(pkt[:n]))
	}
}

// read returns every deliverable SDU, and the error that ended the reading.
func read(c *Conn, now time.Time) ([]string, error) {
	var out []string
	buf := make([]byte, c.cfg.MaxSDU)
	for {
		n, err := c.Read(now, buf)
		if err != nil {
			if errors.Is(err, ErrNoData) {
				err = nil
			}
			return out, err
		}
		out = append(out, string(buf[:n]))
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Mode: Reliable}, true},
		{"no mode", Config{}, false},
		{"bad mode", Config{Mode: 9}, false},
		{"window not power of two", Config{Mode: Reliable, Window: 48}, false},
		{"window too big", Config{Mode: Reliable, Window: 1 << 15}, false},
		{"window 2", Config{Mode: Ordered, Window: 2}, true},
		{"negative sdu", Config{Mode: Reliable, MaxSDU: -1}, false},
		{"min rto above max", Config{Mode: Reliable, MinRTO: time.Minute}, false},
		{"negative timeout", Config{Mode: Reliable, Timeout: -1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, t0)
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
		})
	}
	c := mustNew(t, Config{Mode: Reliable, Timeout: time.Minute})
	if got := c.Config(); got.Window != DefaultWindow || got.MaxSDU != DefaultMaxSDU || got.Keepalive != 15*time.Second {
		t.Fatalf("defaults: %+v", got)
	}
}

func TestInOrderDelivery(t *testing.T) {
	for _, mode := range []Mode{Ordered, Reliable, ReliableUnordered} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := mustNew(t, Config{Mode: mode}), mustNew(t, Config{Mode: mode})
			p1, p2, p3 := send(t, a, t0, "one"), send(t, a, t0, "two"), send(t, a, t0, "three")
			b.Receive(t0, p1)
			b.Receive(t0, p2)
			b.Receive(t0, p3)
			got, err := read(b, t0)
			if err != nil || fmt.Sprint(got) != "[one two three]" {
				t.Fatalf("read = %v, %v; want [one two three]", got, err)
			}
			if s := b.Stats(); s.RecvSDUs != 3 || s.RecvBytes != 11 {
				t.Fatalf("stats = %+v, want 3 SDUs, 11 bytes", s)
			}
		})
	}
}

func TestReordering(t *testing.T) {
	tests := []struct {
		mode Mode
		want []string // after receiving 2 then 3, then after 1
		then []string
	}{
		{Reliable, nil, []string{"1", "2", "3"}},
		{Ordered, nil, []string{"1", "2", "3"}},
		{ReliableUnordered, []string{"2", "3"}, []string{"1"}},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			a, b := mustNew(t, Config{Mode: tc.mode}), mustNew(t, Config{Mode: tc.mode})
			p1, p2, p3 := send(t, a, t0, "1"), send(t, a, t0, "2"), send(t, a, t0, "3")
			b.Receive(t0, p2)
			b.Receive(t0, p3)
			if got, _ := read(b, t0); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("before the gap filled: read %v, want %v", got, tc.want)
			}
			b.Receive(t0, p1)
			if got, _ := read(b, t0); fmt.Sprint(got) != fmt.Sprint(tc.then) {
				t.Fatalf("after the gap filled: read %v, want %v", got, tc.then)
			}
		})
	}
}

func TestDuplicates(t *testing.T) {
	for _, mode := range []Mode{Ordered, Reliable, ReliableUnordered} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := mustNew(t, Config{Mode: mode}), mustNew(t, Config{Mode: mode})
			p1, p2 := send(t, a, t0, "1"), send(t, a, t0, "2")
			b.Receive(t0, p2)
			b.Receive(t0, p2) // duplicate, held
			b.Receive(t0, p1)
			b.Receive(t0, p1) // duplicate, delivered
			got, _ := read(b, t0)
			b.Receive(t0, p1) // duplicate, already read
			more, _ := read(b, t0)
			if len(got) != 2 || len(more) != 0 {
				t.Fatalf("read %v then %v, want two SDUs once", got, more)
			}
			if d := b.Stats().Dups; d != 3 {
				t.Fatalf("Dups = %d, want 3", d)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	a, b := mustNew(t, Config{Mode: Reliable}), mustNew(t, Config{Mode: Reliable})
	b.Receive(t0, send(t, a, t0, "0123456789"))
	b.Receive(t0, send(t, a, t0, "next"))
	buf := make([]byte, 4)
	if n, err := b.Read(t0, buf); n != 4 || !errors.Is(err, ErrTruncated) || string(buf) != "0123" {
		t.Fatalf("Read into 4 bytes = %d %q, %v; want 4 \"0123\", ErrTruncated", n, buf[:n], err)
	}
	if n, err := b.Read(t0, buf); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("Read after truncation = %q, %v; want next", buf[:n], err)
	}
}

func TestSendErrors(t *testing.T) {
	c := mustNew(t, Config{Mode: Reliable, MaxSDU: 10})
	pkt := make([]byte, HeaderSize+10)
	if _, err := c.Send(t0, make([]byte, 11), pkt); !errors.Is(err, ErrTooBig) {
		t.Errorf("Send(11 bytes) with MaxSDU 10 = %v, want ErrTooBig", err)
	}
	if _, err := c.Send(t0, make([]byte, 10), pkt[:HeaderSize+9]); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("Send into a short packet buffer = %v, want ErrShortBuffer", err)
	}
	c.Close(t0)
	if _, err := c.Send(t0, nil, pkt); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestDelayedAck(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable, AckDelay: ms(5)})
	b := mustNew(t, Config{Mode: Reliable, AckDelay: ms(5)})
	b.Receive(t0, send(t, a, t0, "1"))
	if got := poll(b, t0); len(got) != 0 {
		t.Fatalf("one in-order packet: ACK sent at once (%v), want delayed", got[0].Flags())
	}
	if next := b.Next(t0); !next.Equal(at(ms(5))) {
		t.Fatalf("Next = %v, want the ACK at +5ms", next.Sub(t0))
	}
	acks := poll(b, at(ms(5)))
	if len(acks) != 1 || acks[0].Flags() != FlagAck|FlagFC || acks[0].Ackno() != 1 {
		t.Fatalf("at +5ms: %d packets, want one ACK of 1", len(acks))
	}
	// Every second packet is acknowledged at once.
	b.Receive(at(ms(6)), send(t, a, at(ms(6)), "2"))
	b.Receive(at(ms(6)), send(t, a, at(ms(6)), "3"))
	if acks := poll(b, at(ms(6))); len(acks) != 1 || acks[0].Ackno() != 3 {
		t.Fatalf("after two packets: %v, want one ACK of 3 at once", acks)
	}
	// Data going the other way carries the ACK; nothing else is due.
	b.Receive(at(ms(7)), send(t, a, at(ms(7)), "4"))
	p := send(t, b, at(ms(7)), "reply")
	if PCI(p).Flags() != FlagData|FlagAck|FlagFC || PCI(p).Ackno() != 4 {
		t.Fatalf("reply: %v ackno %d, want a piggybacked ACK of 4", PCI(p).Flags(), PCI(p).Ackno())
	}
	if acks := poll(b, at(ms(20))); len(acks) != 0 {
		t.Fatalf("ACK sent again after piggybacking: %v", acks[0].Flags())
	}
	// An out-of-order packet is acknowledged at once (duplicate ACK), with
	// a SACK block for it.
	send(t, a, at(ms(21)), "5") // lost
	b.Receive(at(ms(21)), send(t, a, at(ms(21)), "6"))
	acks = poll(b, at(ms(21)))
	if len(acks) != 1 || acks[0].Ackno() != 4 || acks[0].SackBlocks() != 1 {
		t.Fatalf("after a gap: %v, want a duplicate ACK of 4 with one SACK block at once", acks)
	}
	// DATA cannot carry SACK blocks: new out-of-order data while replying
	// makes a pure ACK with them follow the reply.
	b.Receive(at(ms(22)), send(t, a, at(ms(22)), "7"))
	send(t, b, at(ms(22)), "reply")
	acks = poll(b, at(ms(22)))
	if len(acks) != 1 || acks[0].SackBlocks() != 1 {
		t.Fatalf("after a reply with a hole open: %v, want one SACK", acks)
	}
	if s, e := acks[0].SackBlock(0); s != 5 || e != 7 {
		t.Fatalf("SACK block [%d, %d), want [5, 7)", s, e)
	}
}

func TestRetransmission(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable, InitialRTO: ms(100), MinRTO: ms(10)})
	b := mustNew(t, Config{Mode: Reliable})
	p := send(t, a, t0, "x") // lost
	if got := poll(a, at(ms(99))); len(got) != 0 {
		t.Fatalf("retransmitted before the RTO")
	}
	if next := a.Next(t0); !next.Equal(at(ms(100))) {
		t.Fatalf("Next = %v, want +100ms", next.Sub(t0))
	}
	r := poll(a, at(ms(100)))
	if len(r) != 1 || r[0].Seqno() != PCI(p).Seqno() || string(r[0].Payload()) != "x" {
		t.Fatalf("at RTO: %v, want the packet again", r)
	}
	// Exponential backoff: next retransmission after 200ms (RFC 6298 §5.5).
	if got := poll(a, at(ms(299))); len(got) != 0 {
		t.Fatalf("second retransmission before the backed-off RTO")
	}
	if got := poll(a, at(ms(300))); len(got) != 1 {
		t.Fatalf("no second retransmission at +300ms")
	}
	if s := a.Stats(); s.Retransmits != 2 || s.RTO != ms(400) {
		t.Fatalf("stats %+v, want 2 retransmits, RTO 400ms", s)
	}
	// Karn: the ACK of a retransmitted packet gives no RTT sample.
	b.Receive(at(ms(300)), r[0])
	for _, ack := range poll(b, at(ms(400))) {
		a.Receive(at(ms(400)), ack)
	}
	if s := a.Stats(); s.RTT != 0 || a.Unacked() != 0 {
		t.Fatalf("after ACK of a retransmitted packet: RTT %v, unacked %d; want no sample, 0 unacked", s.RTT, a.Unacked())
	}
}

func TestRTTEstimation(t *testing.T) {
	// RFC 6298 §2.2-2.3 with samples 100ms then 60ms.
	a := mustNew(t, Config{Mode: Reliable, MinRTO: ms(1)})
	b := mustNew(t, Config{Mode: Reliable, AckDelay: 1})
	step := func(sent, acked time.Time) {
		b.Receive(sent, send(t, a, sent, "x"))
		for _, p := range poll(b, sent.Add(1)) {
			a.Receive(acked, p)
		}
	}
	step(t0, at(ms(100)))
	if s := a.Stats(); s.RTT != ms(100) || s.RTO != ms(100)+4*ms(50) {
		t.Fatalf("after 100ms: RTT %v RTO %v; want 100ms, 300ms", s.RTT, s.RTO)
	}
	step(at(ms(200)), at(ms(260)))
	// RTTVAR = 3/4*50 + 1/4*40 = 47.5ms; SRTT = 7/8*100 + 1/8*60 = 95ms.
	if s := a.Stats(); s.RTT != ms(95) || s.RTO != ms(95)+4*(ms(47)+ms(1)/2) {
		t.Fatalf("after 60ms: RTT %v RTO %v; want 95ms, 285ms", s.RTT, s.RTO)
	}
}

func TestFastRetransmit(t *testing.T) {
	// With SACK: one ACK showing a packet sent after the hole arrived.
	a := mustNew(t, Config{Mode: Reliable, InitialRTO: time.Second})
	b := mustNew(t, Config{Mode: Reliable})
	send(t, a, t0, "lost")
	b.Receive(t0, send(t, a, t0, "after"))
	for _, ack := range poll(b, t0) {
		a.Receive(t0, ack)
	}
	r := poll(a, t0)
	if len(r) != 1 || string(r[0].Payload()) != "lost" {
		t.Fatalf("after one SACK: %d packets, want the lost one again", len(r))
	}
	if s := a.Stats(); s.FastRetransmits != 1 || s.Timeouts != 0 {
		t.Fatalf("stats %+v, want one fast retransmit and no timeout", s)
	}

	// Without SACK (a peer with no room for blocks): three duplicate ACKs.
	a = mustNew(t, Config{Mode: Reliable, InitialRTO: time.Second})
	send(t, a, t0, "lost")
	for i := range 3 {
		send(t, a, t0, "after")
		dup := make(PCI, HeaderSize)
		dup.Encode(FlagAck|FlagFC, 64, 0, 0)
		a.Receive(t0, dup)
		if r := poll(a, t0); len(r) != 0 && i < 2 {
			t.Fatalf("after %d duplicate ACKs: %d packets, want none", i+1, len(r))
		}
	}
	if s := a.Stats(); s.FastRetransmits != 1 || s.Timeouts != 0 {
		t.Fatalf("stats %+v, want one fast retransmit after three duplicate ACKs", s)
	}
}

func TestFlowControl(t *testing.T) {
	cfg := Config{Mode: Reliable, Window: 4, InitialRTO: ms(100)}
	a, b := mustNew(t, cfg), mustNew(t, cfg)
	pkt := make([]byte, HeaderSize+DefaultMaxSDU)
	for i := 0; i < 4; i++ {
		b.Receive(t0, send(t, a, t0, "x"))
	}
	if _, err := a.Send(t0, []byte("x"), pkt); !errors.Is(err, ErrWindowFull) {
		t.Fatalf("fifth Send in a window of 4 = %v, want ErrWindowFull", err)
	}
	// The receiver acknowledges but its application reads nothing: the
	// window stays closed.
	for _, ack := range poll(b, t0) {
		a.Receive(t0, ack)
	}
	if a.Unacked() != 0 || a.CanSend() {
		t.Fatalf("after ACK without reads: unacked %d, CanSend %v; want 0, false", a.Unacked(), a.CanSend())
	}
	// Blocked: a rendezvous after the RTO.
	a.Send(t0, []byte("x"), pkt)
	rdvs := poll(a, at(ms(100)))
	if len(rdvs) != 1 || rdvs[0].Flags()&FlagRdvs == 0 {
		t.Fatalf("blocked for an RTO: %v, want one RDVS", rdvs)
	}
	b.Receive(at(ms(100)), rdvs[0])
	fc := poll(b, at(ms(100)))
	if len(fc) != 1 || fc[0].Window() != cfg.ISN+4 {
		t.Fatalf("answer to RDVS: %v, want a window update with the edge still at 4", fc)
	}
	// The application reads: the window opens and an update goes out.
	if got, _ := read(b, at(ms(101))); len(got) != 4 {
		t.Fatalf("read %d SDUs, want 4", len(got))
	}
	fc = poll(b, at(ms(101)))
	if len(fc) != 1 || fc[0].Window() != 8 {
		t.Fatalf("after reads: %v, want a window update to 8", fc)
	}
	a.Receive(at(ms(101)), fc[0])
	if !a.CanSend() {
		t.Fatalf("window update did not open the sender's window")
	}
}

func TestGiveUp(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable, Timeout: 10 * time.Second, InitialRTO: ms(100)})
	send(t, a, t0, "into the void")
	now := t0
	for i := 0; i < 100 && a.Err() == nil; i++ {
		now = a.Next(now)
		poll(a, now)
	}
	if !errors.Is(a.Err(), ErrPeerGone) || now.Sub(t0) != 10*time.Second {
		t.Fatalf("Err() = %v at +%v, want ErrPeerGone at +10s", a.Err(), now.Sub(t0))
	}
	if _, err := a.Send(now, nil, make([]byte, HeaderSize)); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("Send after give-up = %v, want ErrPeerGone", err)
	}
	if !a.Next(now).IsZero() || !a.Done() {
		t.Fatalf("a dead Conn still has timers, or is not Done")
	}
}

func TestKeepalive(t *testing.T) {
	cfg := Config{Mode: Ordered, Timeout: 4 * time.Second}
	a, b := mustNew(t, cfg), mustNew(t, cfg)
	// Both ends idle: keepalives every second keep both alive.
	for now := t0; now.Before(at(time.Minute)); now = now.Add(100 * time.Millisecond) {
		for _, p := range poll(a, now) {
			if p.Flags()&FlagKeepalive == 0 {
				t.Fatalf("idle end sent %v, want KEEPALIVE", p.Flags())
			}
			b.Receive(now, p)
		}
		for _, p := range poll(b, now) {
			a.Receive(now, p)
		}
	}
	if a.Err() != nil || b.Err() != nil {
		t.Fatalf("errors with keepalives flowing: %v, %v", a.Err(), b.Err())
	}
	// b goes silent: a declares it dead after the timeout.
	start := at(time.Minute)
	now := start
	for a.Err() == nil && now.Before(start.Add(time.Minute)) {
		now = a.Next(now)
		poll(a, now)
	}
	if !errors.Is(a.Err(), ErrPeerGone) || now.Sub(start) > 4*time.Second {
		t.Fatalf("silent peer: Err() = %v after %v, want ErrPeerGone within 4s", a.Err(), now.Sub(start))
	}
	if _, err := a.Read(now, nil); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("Read on a dead Conn = %v, want ErrPeerGone", err)
	}
}

func TestMaxGap(t *testing.T) {
	cfg := Config{Mode: Ordered, MaxGap: ms(50)}
	a, b := mustNew(t, cfg), mustNew(t, cfg)
	send(t, a, t0, "1") // lost
	b.Receive(at(ms(10)), send(t, a, t0, "2"))
	b.Receive(at(ms(20)), send(t, a, t0, "3"))
	if got, _ := read(b, at(ms(59))); len(got) != 0 {
		t.Fatalf("delivered %v across a gap before MaxGap", got)
	}
	poll(b, at(ms(20))) // the duplicate ACKs
	if next := b.Next(at(ms(20))); !next.After(at(ms(20))) || next.After(at(ms(60))) {
		t.Fatalf("Next = %v, want a wake-up by the gap deadline (+60ms)", next.Sub(t0))
	}
	if !b.Readable(at(ms(60))) {
		t.Fatalf("not readable once the gap expired")
	}
	if got, _ := read(b, at(ms(60))); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("after MaxGap: read %v, want [2 3]", got)
	}
	if l := b.Stats().Lost; l != 1 {
		t.Fatalf("Lost = %d, want 1", l)
	}
	// A late arrival of the skipped SDU is a duplicate.
	b.Receive(at(ms(70)), send(t, mustNew(t, cfg), t0, "1"))
	if got, _ := read(b, at(ms(70))); len(got) != 0 {
		t.Fatalf("late SDU delivered after its gap was skipped: %v", got)
	}
}

func TestFin(t *testing.T) {
	for _, mode := range []Mode{Ordered, Reliable, ReliableUnordered} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := mustNew(t, Config{Mode: mode}), mustNew(t, Config{Mode: mode})
			b.Receive(t0, send(t, a, t0, "last words"))
			a.Close(t0)
			if a.Done() {
				t.Fatalf("Done before the FIN was sent")
			}
			pkts := poll(a, t0)
			if len(pkts) != 1 || pkts[0].Flags()&FlagFin == 0 {
				t.Fatalf("after Close: %v, want a FIN", pkts)
			}
			b.Receive(t0, pkts[0])
			got, err := read(b, t0)
			if fmt.Sprint(got) != "[last words]" || !errors.Is(err, ErrFinished) {
				t.Fatalf("read = %v, %v; want [last words], ErrFinished", got, err)
			}
			if mode.reliable() && a.Done() {
				t.Fatalf("Done before the FIN was acknowledged")
			}
			for _, ack := range poll(b, t0) {
				a.Receive(t0, ack)
			}
			if !a.Done() {
				t.Fatalf("not Done after the FIN was acknowledged")
			}
		})
	}
}

func TestSeqnoWrap(t *testing.T) {
	cfg := Config{Mode: Reliable, ISN: ^uint32(0) - 2, Window: 4}
	a, b := mustNew(t, cfg), mustNew(t, cfg)
	var want []string
	for i := 0; i < 20; i++ {
		sdu := fmt.Sprint(i)
		want = append(want, sdu)
		b.Receive(t0, send(t, a, t0, sdu))
		for _, ack := range poll(b, t0) {
			a.Receive(t0, ack)
		}
		got, _ := read(b, t0)
		if len(got) != 1 || got[0] != sdu {
			t.Fatalf("SDU %d across the wrap: read %v", i, got)
		}
		for _, fc := range poll(b, t0) {
			a.Receive(t0, fc)
		}
	}
	if a.Unacked() != 0 || a.sndNext != cfg.ISN+20 {
		t.Fatalf("after the wrap: unacked %d, sndNext %#x", a.Unacked(), a.sndNext)
	}
}

func TestBogusAcksIgnored(t *testing.T) {
	a := mustNew(t, Config{Mode: Reliable})
	send(t, a, t0, "x")
	p := make(PCI, HeaderSize)
	p.Encode(FlagAck|FlagFC, 1<<31, 1000, 1000) // acks the future, huge window
	a.Receive(t0, p)
	if a.Unacked() != 1 || a.rwe != DefaultWindow {
		t.Fatalf("bogus ACK changed state: unacked %d, rwe %d", a.Unacked(), a.rwe)
	}
	a.Receive(t0, []byte{1, 2, 3})
	if a.Stats().Drops != 1 {
		t.Fatalf("malformed packet not counted as a drop")
	}
}

// TestZeroAllocs proves the steady state allocates nothing per packet:
// send, receive, read, ACK, and the ACK's receipt.
func TestZeroAllocs(t *testing.T) {
	for _, mode := range []Mode{Ordered, Reliable, ReliableUnordered} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := mustNew(t, Config{Mode: mode}), mustNew(t, Config{Mode: mode})
			sdu := make([]byte, 1000)
			pkt := make([]byte, HeaderSize+DefaultMaxSDU)
			buf := make([]byte, DefaultMaxSDU)
			now := t0
			step := func() {
				now = now.Add(time.Millisecond)
				n, err := a.Send(now, sdu, pkt)
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				b.Receive(now, pkt[:n])
				if _, err := b.Read(now, buf); err != nil {
					t.Fatalf("Read: %v", err)
				}
				for m := b.Poll(now.Add(DefaultAckDelay), pkt); m > 0; m = b.Poll(now.Add(DefaultAckDelay), pkt) {
					a.Receive(now, pkt[:m])
				}
				for a.Poll(now, pkt) > 0 {
				}
				a.Next(now)
				b.Next(now)
			}
			step()
			if allocs := testing.AllocsPerRun(1000, step); allocs != 0 {
				t.Fatalf("%v allocations per packet, want 0", allocs)
			}
		})
	}
}
