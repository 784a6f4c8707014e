package unicast_test

import (
	"crypto/sha256"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// lossyHop drops each data packet with probability loss and holds back
// another with probability reorder, to send it after the next one: the
// impairment of one direction of one hop (seeded).
type lossyHop struct {
	mu              sync.Mutex
	rng             *rand.Rand
	loss, reorder   float64
	held            []byte
	dropped, swaped int
}

func (h *lossyHop) tamper(pkt []byte) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !isData(pkt) {
		return [][]byte{pkt}
	}
	if h.rng.Float64() < h.loss {
		h.dropped++
		return nil
	}
	if h.held != nil {
		out := [][]byte{pkt, h.held}
		h.held = nil
		return out
	}
	if h.rng.Float64() < h.reorder {
		h.held = append([]byte(nil), pkt...)
		h.swaped++
		return nil
	}
	return [][]byte{pkt}
}

// prng is a reproducible byte source: the transfer's content.
type prng struct{ r *rand.ChaCha8 }

func (p prng) Read(b []byte) (int, error) { return p.r.Read(b) }

// TestStreamThroughLossyChain moves OURO_TRANSFER_BYTES (default 4 MiB;
// the figure is 1 GiB) over a reliable byte stream (flow.Stream,
// the net.Conn of TCP programs, on an FRCT flow) across three unicast
// hops in one process, each hop dropping 5% of the data packets and
// reordering 5% in both directions (seeded by OURO_TRANSFER_SEED): the
// stream arrives byte-identical (SHA-256 of both ends), and the figures
// are logged (docs/benchmarks.md, "Loss recovery").
func TestStreamThroughLossyChain(t *testing.T) {
	size := int64(4 << 20)
	if s := os.Getenv("OURO_TRANSFER_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("OURO_TRANSFER_BYTES=%q", s)
		}
		size = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OURO_TRANSFER_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	lossP, reorderP := 0.05, 0.05
	if s := os.Getenv("OURO_TRANSFER_LOSS"); s != "" {
		lossP, _ = strconv.ParseFloat(s, 64)
		reorderP = lossP
	}
	if s := os.Getenv("OURO_TRANSFER_REORDER"); s != "" {
		reorderP, _ = strconv.ParseFloat(s, 64)
	}

	caPolicy := "mb-ecn"
	if s := os.Getenv("OURO_TRANSFER_CA"); s != "" {
		caPolicy = s
	}
	t.Logf("%d bytes, seed %d, loss %.2f, reorder %.2f, ca %s", size, seed, lossP, reorderP, caPolicy)
	a, b, n := chain3Q(t, caPolicy, flow.Data())
	var hops []*lossyHop
	for i := range 3 {
		for _, dir := range [][2]string{{unicasttest.NodeName(i), unicasttest.NodeName(i + 1)}, {unicasttest.NodeName(i + 1), unicasttest.NodeName(i)}} {
			h := &lossyHop{rng: rand.New(rand.NewPCG(seed, uint64(len(hops)))), loss: lossP, reorder: reorderP}
			hops = append(hops, h)
			n.Tamper(dir[0], dir[1], h.tamper)
		}
	}
	// The layer's SDU limit: the data-transfer PCI comes off flow.MaxSDU.
	info := flow.Info{QoS: flow.Data(), MaxSDU: flow.MaxSDU - dt.PCILen}
	fa, err := flow.New(a, info)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := flow.New(b, info)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := flow.NewStream(fa), flow.NewStream(fb)
	defer sa.Close()
	defer sb.Close()

	var seedKey [32]byte
	seedKey[0], seedKey[1] = byte(seed), byte(seed>>8)
	src := io.LimitReader(prng{rand.NewChaCha8(seedKey)}, size)
	sent := sha256.New()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(sa, sent), src)
		errc <- err
	}()
	got := sha256.New()
	sb.SetReadDeadline(time.Now().Add(10 * time.Minute))
	m, err := io.CopyN(got, sb, size)
	if err != nil {
		t.Fatalf("read %d of %d bytes: %v", m, size, err)
	}
	took := time.Since(start)
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !equalSum(sent, got) {
		t.Fatal("the stream arrived changed (SHA-256 differs)")
	}
	var dropped, swapped, fwd int
	for i, h := range hops {
		h.mu.Lock()
		if i%2 == 0 {
			fwd += h.dropped
		}
		dropped += h.dropped
		swapped += h.swaped
		h.mu.Unlock()
	}
	st := fa.Stats()
	t.Logf("of the drops, %d were on the way to the receiver", fwd)
	t.Logf("%.1f MiB across 3 hops, %.0f%% loss and %.0f%% reorder on each: byte-identical in %v = %.1f Mbit/s; %d packets dropped, %d reordered on the way; the sender retransmitted %d",
		float64(size)/(1<<20), 100*lossP, 100*reorderP, took.Round(time.Millisecond), float64(size*8)/took.Seconds()/1e6, dropped, swapped, st.Retransmits)
}

func equalSum(a, b hash.Hash) bool { return string(a.Sum(nil)) == string(b.Sum(nil)) }
