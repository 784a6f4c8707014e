package diode

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/impair"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// link is an in-memory one-way medium: what Send gets, Recv returns, in
// order; it never drops (a full link blocks the sender).
type link struct {
	ch     chan []byte
	once   sync.Once
	closed chan struct{}
	tap    func([]byte) // if set, sees every packet sent (tests capture shards)
}

func newLink() *link { return &link{ch: make(chan []byte, 4096), closed: make(chan struct{})} }

func (l *link) Send(b []byte) error {
	if l.tap != nil {
		l.tap(b)
	}
	select {
	case l.ch <- bytes.Clone(b):
		return nil
	case <-l.closed:
		return flow.ErrClosed
	}
}

func (l *link) Recv(b []byte) (int, error) {
	select {
	case p := <-l.ch:
		return copy(b, p), nil
	case <-l.closed:
		return 0, flow.ErrClosed
	}
}

func (l *link) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

var flows = []Flow{{ID: 7, Name: "files"}}

func ident(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pair starts a sending and a receiving end; mod adjusts both configs.
func pair(t testing.TB, tx Sender, rx Receiver, signer identity.Signer, peer identity.Signer, mod func(*Config)) (s, r *IPCP, up *ipcptest.Upcalls) {
	t.Helper()
	up = ipcptest.NewUpcalls(1024)
	base := Config{Layer: "diode", Runner: layertest.Runner{}, Flows: flows, K: 16, Parity: 4, Rate: -1}
	sc, rc := base, base
	sc.Name, sc.Tx, sc.Signer = "a.diode", tx, signer
	rc.Name, rc.Rx, rc.Peer = "b.diode", rx, peer.Public()
	if mod != nil {
		mod(&sc)
		mod(&rc)
	}
	var err error
	if s, err = New(sc, ipcptest.NewUpcalls(1)); err != nil {
		t.Fatal(err)
	}
	if r, err = New(rc, up); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*IPCP{s, r} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
	}
	if err := r.Register(context.Background(), "files"); err != nil {
		t.Fatal(err)
	}
	return s, r, up
}

// dial allocates the configured flow at the sending end.
func dial(t testing.TB, s *IPCP) flow.Port {
	t.Helper()
	app, end := flowtest.Pipe(256)
	if err := s.Alloc(context.Background(), ipcp.AllocReq{Dst: "files", QoS: flow.BestEffort()}, end); err != nil {
		t.Fatal(err)
	}
	return app
}

// sendFile writes data in SDUs of at most max bytes, then closes.
func sendFile(t testing.TB, app flow.Port, data []byte, max int) {
	for off := 0; off < len(data); off += max {
		if err := app.Write(data[off:min(off+max, len(data))], time.Time{}); err != nil {
			t.Errorf("write at %d: %v", off, err)
			return
		}
	}
	app.Close()
}

// recvFile reads the accepted flow until the sender's end marker closes it.
func recvFile(t testing.TB, up *ipcptest.Upcalls, timeout time.Duration) []byte {
	t.Helper()
	var acc ipcptest.Accepted
	select {
	case acc = <-up.Accepted:
	case <-time.After(timeout):
		t.Fatal("no flow accepted")
	}
	defer acc.Port.Close()
	var got []byte
	buf := make([]byte, flow.MaxSDU)
	deadline := time.Now().Add(timeout)
	for {
		n, err := acc.Port.Read(buf, deadline)
		if errors.Is(err, flow.ErrClosed) {
			return got
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
}

func TestParity(t *testing.T) {
	for _, tc := range []struct {
		k       int
		loss    float64
		want    int
		wantErr bool
	}{
		{k: 16, loss: 0, want: 0},
		{k: 16, loss: 1, want: 5},
		{k: 16, loss: 5, want: 9},
		{k: 32, loss: 5, want: 11},
		{k: 16, loss: 90, wantErr: true},
		{k: 0, loss: 5, wantErr: true},
	} {
		t.Run(fmt.Sprintf("k%d_loss%v", tc.k, tc.loss), func(t *testing.T) {
			m, err := Parity(tc.k, tc.loss, DefaultResidual)
			if (err != nil) != tc.wantErr {
				t.Fatalf("got err %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && m != tc.want {
				t.Errorf("got m = %d, want %d", m, tc.want)
			}
			if !tc.wantErr && tc.loss > 0 {
				if tail := lossTail(tc.k+m, m, tc.loss/100); tail > DefaultResidual {
					t.Errorf("block loss %g with m = %d, want <= %g", tail, m, DefaultResidual)
				}
				if m > 0 && lossTail(tc.k+m-1, m-1, tc.loss/100) <= DefaultResidual {
					t.Errorf("m = %d is not the least", m)
				}
			}
		})
	}
}

// TestFileOverLossyDiode is the diode test: 10 MB across a
// one-way UDP link (the receiver never writes, the sender never reads)
// that loses 5% of the shards in the impairment stage arrive
// hash-identical through FEC alone (parity sized from the loss).
func TestFileOverLossyDiode(t *testing.T) {
	if testing.Short() {
		t.Skip("10 MB")
	}
	rx, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := DialUDP(netip.AddrPort{}, rx.Addr())
	if err != nil {
		t.Fatal(err)
	}
	a := ident(t)
	s, r, up := pair(t, tx, rx, a, a, func(c *Config) {
		c.Parity, c.Loss = 0, 5
		// 8 MB/s: the receiving socket's buffer, not the link, is the
		// bottleneck on loopback, and a receiver starved of CPU (CI runs
		// the race-detector tests of two packages at once) overflowed it
		// at 40 MB/s once: losses beyond the 5% the stage makes, a block
		// past repair, and a one-way link never resends it (the read
		// timed out 244 KB short of 10 MB).
		c.Rate = 8_000_000
		c.Impair = impair.Config{Seed: 17, Loss: 5}
	})
	data := make([]byte, 10<<20)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	app := dial(t, s)
	go sendFile(t, app, data, s.MaxSDU())
	got := recvFile(t, up, 2*time.Minute)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("got %d bytes, sha256 differs from the %d sent", len(got), len(data))
	}
	fs, fr := s.FEC(), r.FEC()
	imp := s.tx.(impairedTx).st.Stats()
	t.Logf("k=%d m=%d: %d shards sent, %d lost by the stage, %d blocks, %d repaired", fs.DataShards, fs.Parity, fs.ShardsOut, imp.Dropped, fr.BlocksIn, fr.Repaired)
	if fs.Parity != 9 {
		t.Errorf("got parity %d, want 9 (sized for 5%% loss, k = 16)", fs.Parity)
	}
	if imp.Dropped == 0 || fr.Repaired == 0 {
		t.Errorf("got %d shards dropped and %d blocks repaired, want both > 0", imp.Dropped, fr.Repaired)
	}
	if fr.BlocksLost != 0 || fr.Forged != 0 {
		t.Errorf("got %d blocks lost and %d forged, want none", fr.BlocksLost, fr.Forged)
	}
}

// captureBlock sends one block of SDUs and returns its shards as sent.
func captureBlock(t testing.TB, l *link, s *IPCP, sdus int) [][]byte {
	t.Helper()
	var mu sync.Mutex
	var shards [][]byte
	l.tap = func(b []byte) {
		mu.Lock()
		shards = append(shards, bytes.Clone(b))
		mu.Unlock()
	}
	app := dial(t, s)
	for i := range sdus {
		if err := app.Write(fmt.Appendf(nil, "sdu %d", i), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if s.FEC().BlocksOut >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no block sent")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return shards
}

// TestForgedShardsRefused: a shard whose payload, proof, root or
// signature was changed, or that a key other than the configured peer's
// signed, is refused and counted as forged and never delivered; the
// genuine shards of the same block still rebuild it. (Without the checks
// in rx.handle, the tampered payload is delivered: the subtest "payload"
// then fails on the SDU it reads.)
func TestForgedShardsRefused(t *testing.T) {
	a, mallory := ident(t), ident(t)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, sh Shard) Shard
	}{
		{"payload", func(t *testing.T, sh Shard) Shard { sh.Payload()[3] ^= 'X' ^ 'd'; return sh }},
		{"proof", func(t *testing.T, sh Shard) Shard { sh.Proof()[0] ^= 1; return sh }},
		{"root", func(t *testing.T, sh Shard) Shard { sh.Root()[0] ^= 1; return sh }},
		{"signature", func(t *testing.T, sh Shard) Shard { sh.Sig()[0] ^= 1; return sh }},
		{"header", func(t *testing.T, sh Shard) Shard { sh[offM]--; return sh }},
		{"other key", func(t *testing.T, sh Shard) Shard { return resign(t, sh, mallory) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Capture one block from a sender whose link goes nowhere.
			l := newLink()
			s, _, _ := pair(t, l, newLink(), a, a, nil)
			shards := captureBlock(t, l, s, 16)
			if len(shards) != 20 {
				t.Fatalf("got %d shards, want 20", len(shards))
			}
			// A fresh receiver gets the tampered shard first, then the
			// genuine shards but data shard 0.
			in := newLink()
			_, r, up := pair(t, newLink(), in, a, a, nil)
			bad := tc.tamper(t, Shard(bytes.Clone(shards[0])))
			if !bad.IsValid() {
				t.Fatalf("tampered shard is not well-formed")
			}
			in.Send(bad)
			for _, sh := range shards[1:] {
				in.Send(sh)
			}
			var acc ipcptest.Accepted
			select {
			case acc = <-up.Accepted:
			case <-time.After(5 * time.Second):
				t.Fatalf("block not delivered (forged %d)", r.FEC().Forged)
			}
			defer acc.Port.Close()
			buf := make([]byte, flow.MaxSDU)
			for i := range 16 {
				n, err := acc.Port.Read(buf, time.Now().Add(5*time.Second))
				if want := fmt.Sprintf("sdu %d", i); err != nil || string(buf[:n]) != want {
					t.Fatalf("got %q, %v, want %q", buf[:n], err, want)
				}
			}
			if got := r.FEC(); got.Forged != 1 || got.Repaired != 1 {
				t.Errorf("got %d forged and %d repaired, want 1 and 1", got.Forged, got.Repaired)
			}
		})
	}
}

// resign signs sh's header (root included) again with id.
func resign(t *testing.T, sh Shard, id *identity.Identity) Shard {
	sig, err := identity.SignLabeled(context.Background(), id, Label, sh.SignedMsg(nil))
	if err != nil {
		t.Fatal(err)
	}
	copy(sh.Sig(), sig)
	return sh
}

// TestReplayRefused: a block sent again after it was delivered, or a
// block older than the receiver's window, is refused and counted as late.
func TestReplayRefused(t *testing.T) {
	a := ident(t)
	l := newLink()
	s, _, _ := pair(t, l, newLink(), a, a, nil)
	shards := captureBlock(t, l, s, 16)
	in := newLink()
	_, r, up := pair(t, newLink(), in, a, a, nil)
	for _, sh := range shards {
		in.Send(sh)
	}
	acc := <-up.Accepted
	defer acc.Port.Close()
	buf := make([]byte, flow.MaxSDU)
	for range 16 {
		if _, err := acc.Port.Read(buf, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for _, sh := range shards { // the replay
		in.Send(sh)
	}
	for deadline := time.Now().Add(5 * time.Second); r.FEC().Late < 24; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("got %d late shards, want 24 (4 parity after the rebuild, 20 replayed)", r.FEC().Late)
		}
	}
	if n, err := acc.Port.Read(buf, time.Now().Add(50*time.Millisecond)); !errors.Is(err, flow.ErrTimeout) {
		t.Fatalf("got %q, %v after the replay, want nothing", buf[:n], err)
	}
	if got := r.FEC(); got.BlocksIn != 1 {
		t.Errorf("got %d blocks delivered, want 1", got.BlocksIn)
	}
}

// TestOneWay: the receiving end reaches no name and allocates nothing;
// the sending end reaches only the configured flows, once at a time,
// never sealed.
func TestOneWay(t *testing.T) {
	a := ident(t)
	s, r, _ := pair(t, newLink(), newLink(), a, a, nil)
	ctx := context.Background()
	if err := r.Query(ctx, "files"); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("receiver query: got %v, want ErrNotFound", err)
	}
	if err := s.Query(ctx, "other"); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("sender query other: got %v, want ErrNotFound", err)
	}
	_, end := flowtest.Pipe(4)
	if err := s.Alloc(ctx, ipcp.AllocReq{Dst: "files", QoS: flow.QoS{Sealed: true}}, end); !errors.Is(err, flow.ErrRefused) {
		t.Errorf("sealed alloc: got %v, want ErrRefused", err)
	}
	app := dial(t, s)
	defer app.Close()
	_, end2 := flowtest.Pipe(4)
	if err := s.Alloc(ctx, ipcp.AllocReq{Dst: "files"}, end2); !errors.Is(err, flow.ErrBusy) {
		t.Errorf("second alloc: got %v, want ErrBusy", err)
	}
	if got := s.MaxSDU(); got != 1472-HeaderLen-5*HashLen-SlotHdrLen {
		t.Errorf("got MaxSDU %d, want %d", got, 1472-HeaderLen-5*HashLen-SlotHdrLen)
	}
}

// TestLossBeyondParity: when the medium loses more than the parity
// covers, the blocks that lost more than m shards are lost whole and
// counted (once evicted from the window); what is delivered is whole
// SDUs, in order.
func TestLossBeyondParity(t *testing.T) {
	a := ident(t)
	l := newLink()
	s, r, up := pair(t, l, l, a, a, func(c *Config) {
		c.Parity = 2
		c.Impair = impair.Config{Seed: 5, Loss: 20}
	})
	app := dial(t, s)
	const blocks = 64
	for i := range blocks * 16 {
		if err := app.Write(fmt.Appendf(nil, "%06d", i), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); s.FEC().BlocksOut < blocks; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("got %d blocks sent, want %d", s.FEC().BlocksOut, blocks)
		}
	}
	var acc ipcptest.Accepted
	select {
	case acc = <-up.Accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered")
	}
	defer acc.Port.Close()
	buf := make([]byte, flow.MaxSDU)
	last, got := -1, 0
	// The end: a second with nothing more once every SDU of the blocks
	// counted delivered is read (under load a second's gap came in the
	// middle: 318 of 320 read), or 10 s with nothing.
	for heard := time.Now(); ; {
		n, err := acc.Port.Read(buf, time.Now().Add(100*time.Millisecond))
		if err != nil {
			quiet := time.Since(heard)
			if quiet > 10*time.Second || quiet > time.Second && got >= int(r.FEC().BlocksIn)*16 {
				break
			}
			continue
		}
		heard = time.Now()
		var v int
		if _, err := fmt.Sscanf(string(buf[:n]), "%06d", &v); err != nil || v <= last {
			t.Fatalf("got %q after %d, want a later SDU", buf[:n], last)
		}
		last = v
		got++
	}
	fr := r.FEC()
	t.Logf("%d SDUs of %d delivered; %d blocks in, %d lost", got, blocks*16, fr.BlocksIn, fr.BlocksLost)
	if fr.BlocksLost == 0 || fr.BlocksIn == 0 {
		t.Errorf("got %d blocks delivered and %d lost, want both > 0", fr.BlocksIn, fr.BlocksLost)
	}
	if got != int(fr.BlocksIn)*16 {
		t.Errorf("got %d SDUs for %d blocks, want 16 each", got, fr.BlocksIn)
	}
	if pending := blocks - fr.BlocksIn - fr.BlocksLost; pending > 16 {
		t.Errorf("%d blocks neither delivered nor counted lost, want at most the window (16)", pending)
	}
}
