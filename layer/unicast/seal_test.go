package unicast_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/fa"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// sealNet is a - b - c, each with its own identity: b forwards between
// a and c, and c serves "echo".
type sealNet struct {
	n          *unicasttest.Net
	a, b, c    *unicasttest.Node
	ida, idc   *identity.Identity
	lastAccept ipcptest.Accepted
}

func newSealNet(t testing.TB, mod func(name string, c *unicast.Config)) *sealNet {
	t.Helper()
	s := &sealNet{n: unicasttest.New(t), ida: newID(t), idc: newID(t)}
	m := func(name string, id *identity.Identity) func(*unicast.Config) {
		return func(c *unicast.Config) {
			if id != nil {
				c.Signer = id
			}
			if mod != nil {
				mod(name, c)
			}
		}
	}
	s.b = s.n.Add("b.uni", true, nil, m("b", nil))
	s.a = s.n.Add("a.uni", false, []string{"b.uni"}, m("a", s.ida))
	s.c = s.n.Add("c.uni", false, []string{"b.uni"}, m("c", s.idc))
	s.n.WaitOperational(10 * time.Second)
	s.c.Register("echo")
	s.n.WaitFor(10*time.Second, "a reaches c", func() bool {
		return len(s.a.IPCP.NextHops(s.c.IPCP.Addr())) > 0 && len(s.c.IPCP.NextHops(s.a.IPCP.Addr())) > 0
	})
	return s
}

// alloc allocates a flow from a to echo at c and returns both application
// ends and what each side learnt of the other.
func (s *sealNet) alloc(t testing.TB, q flow.QoS) (ra, rc flow.Port, res ipcp.AllocResult, acc ipcptest.Accepted, err error) {
	t.Helper()
	app, ipc := flowtest.Pipe(unicasttest.PipeCap)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err = s.a.IPCP.AllocPeer(ctx, ipcp.AllocReq{Dst: "echo", Src: "a.app", QoS: q}, ipc)
	if err != nil {
		app.Close()
		ipc.Close()
		return nil, nil, res, acc, err
	}
	acc, err = s.c.Accept(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return app, acc.Port, res, acc, nil
}

// TestSealedFlow: a sealed flow across a forwarder carries SDUs both
// ways, each end learns the other's verified identity, the flow's SDU
// limit shrinks by the seal's overhead, and the forwarder sees none of
// the plaintext.
func TestSealedFlow(t *testing.T) {
	s := newSealNet(t, nil)
	secret := []byte("attack at dawn, the password is swordfish")
	var (
		mu   sync.Mutex
		seen int // forwarded data packets
		leak bool
	)
	s.n.Tamper("b.uni", "c.uni", func(pkt []byte) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		if isData(pkt) {
			seen++
		}
		if bytes.Contains(pkt, secret) {
			leak = true
		}
		return [][]byte{pkt}
	})
	ra, rc, res, acc, err := s.alloc(t, flow.QoS{Loss: flow.MaxLoss, Sealed: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	defer rc.Close()
	if res.Peer == nil || res.Peer.ID != identity.NameOf(s.idc.Public()) {
		t.Fatalf("a's peer = %v, want c (%s)", res.Peer, identity.NameOf(s.idc.Public()))
	}
	if acc.Req.Peer == nil || acc.Req.Peer.ID != identity.NameOf(s.ida.Public()) {
		t.Fatalf("c's peer = %v, want a (%s)", acc.Req.Peer, identity.NameOf(s.ida.Public()))
	}
	if want := s.a.IPCP.MaxSDU() - seal.Overhead; res.MaxSDU != want || acc.Req.MaxSDU != want {
		t.Fatalf("MaxSDU a %d, c %d; want %d", res.MaxSDU, acc.Req.MaxSDU, want)
	}
	for i := range 20 {
		msg := fmt.Appendf(nil, "%s #%d", secret, i)
		if err := ra.Write(msg, time.Time{}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, flow.MaxSDU)
		n, err := rc.Read(buf, time.Now().Add(5*time.Second))
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("c read %q, %v; want %q", buf[:n], err, msg)
		}
		if err := rc.Write(buf[:n], time.Time{}); err != nil {
			t.Fatal(err)
		}
		n, err = ra.Read(buf, time.Now().Add(5*time.Second))
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("a read %q, %v; want %q", buf[:n], err, msg)
		}
	}
	// The largest SDU the flow announces goes through; one byte more is
	// dropped at a and counted, not sent.
	big := bytes.Repeat([]byte{7}, res.MaxSDU)
	if err := ra.Write(big, time.Time{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, flow.MaxSDU)
	if n, err := rc.Read(buf, time.Now().Add(5*time.Second)); err != nil || n != len(big) {
		t.Fatalf("the largest SDU: read %d, %v", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen < 20 || leak {
		t.Fatalf("b forwarded %d data packets to c (want ≥ 20); plaintext seen: %v", seen, leak)
	}
	if st := s.a.IPCP.Stats(); st.Checks["seal.flows"] != 1 {
		t.Errorf("a: seal.flows = %d, want 1", st.Checks["seal.flows"])
	}
}

// isData reports whether pkt is a dt packet to a flow endpoint (not a
// control message, not a management-flow message).
func isData(pkt []byte) bool {
	pci := dt.PCI(pkt)
	return pci.IsValid() && pci.Cube() < flow.NumCubes && pci.EID() > unicast.MaxReservedEID && pci.TTL() > 0 && pci.TTL() <= dt.DefaultTTL
}

// tamperer is the malicious forwarder: of the data packets it forwards,
// it flips a bit in one, repeats one, cuts one short, holds one back
// until after the next, and forwards one as it is, in turn.
type tamperer struct {
	mu      sync.Mutex
	n       int
	held    []byte
	changed int // packets flipped, repeated or truncated
}

func (x *tamperer) fn(pkt []byte) [][]byte {
	if !isData(pkt) {
		return [][]byte{pkt}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	p := append([]byte(nil), pkt...)
	var out [][]byte
	switch x.n % 5 {
	case 0:
		out = [][]byte{p}
	case 1: // flip a bit of the payload
		p[len(p)-1] ^= 0x40
		x.changed++
		out = [][]byte{p}
	case 2: // replay
		x.changed++
		out = [][]byte{p, append([]byte(nil), p...)}
	case 3: // truncate
		x.changed++
		out = [][]byte{p[:dt.PCILen+(len(p)-dt.PCILen)/2]}
	case 4: // reorder: hold back
		x.held = p
		x.n++
		return nil
	}
	if x.held != nil {
		out = append(out, x.held)
		x.held = nil
	}
	x.n++
	return out
}

// TestSealedFlowTampering is the malicious forwarder: b flips bits,
// replays, truncates and reorders the packets of a best-effort flow from
// a to c. Sealed, c's program receives only SDUs a sent, each once, and
// every tampered packet is counted; unsealed, the same forwarder gets
// changed and repeated SDUs delivered (the test's own power).
func TestSealedFlowTampering(t *testing.T) {
	for _, sealed := range []bool{true, false} {
		t.Run(map[bool]string{true: "sealed", false: "unsealed"}[sealed], func(t *testing.T) {
			s := newSealNet(t, nil)
			x := &tamperer{}
			s.n.Tamper("b.uni", "c.uni", x.fn)
			ra, rc, _, _, err := s.alloc(t, flow.QoS{Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: sealed})
			if err != nil {
				t.Fatal(err)
			}
			defer ra.Close()
			defer rc.Close()
			const total = 100
			sent := make(map[string]bool, total)
			for i := range total {
				msg := make([]byte, 64)
				binary.BigEndian.PutUint64(msg, uint64(i))
				copy(msg[8:], "payload that must arrive as it was sent")
				sent[string(msg)] = true
				if err := ra.Write(msg, time.Time{}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond) // no queue overflow: only the tampering loses packets
			}
			got := make(map[string]int)
			var bad, dups int
			buf := make([]byte, flow.MaxSDU)
			for {
				n, err := rc.Read(buf, time.Now().Add(500*time.Millisecond))
				if err != nil {
					break
				}
				m := string(buf[:n])
				got[m]++
				switch {
				case !sent[m]:
					bad++
				case got[m] > 1:
					dups++
				}
			}
			st := s.c.IPCP.Stats()
			t.Logf("sealed %v: %d distinct SDUs delivered of %d, %d altered, %d repeated; tampered %d, replayed %d (forwarder changed %d)",
				sealed, len(got), total, bad, dups, st.Checks["seal.tampered"], st.Checks["seal.replayed"], x.changed)
			if !sealed {
				if bad == 0 || dups == 0 {
					t.Fatalf("unsealed: %d altered and %d repeated SDUs delivered; the forwarder should have got both through", bad, dups)
				}
				return
			}
			if bad != 0 || dups != 0 {
				t.Fatalf("sealed: %d altered and %d repeated SDUs delivered", bad, dups)
			}
			if len(got) < total*2/5 {
				t.Fatalf("sealed: only %d SDUs delivered (the untouched and reordered ones are %d)", len(got), total*2/5)
			}
			if refused := st.Checks["seal.tampered"] + st.Checks["seal.replayed"]; refused != uint64(x.changed) {
				t.Fatalf("sealed: %d packets refused, the forwarder changed %d", refused, x.changed)
			}
		})
	}
}

// TestSealedDowngrade: a forwarder strips the seal request (the QoS flag
// and the key exchange) from a's request. The allocation fails at both
// ends, and a later allocation over an honest path succeeds sealed.
func TestSealedDowngrade(t *testing.T) {
	for _, strip := range []string{"both", "flag", "kex"} {
		t.Run(strip, func(t *testing.T) {
			s := newSealNet(t, nil)
			var stripped int
			var mu sync.Mutex
			s.n.Tamper("b.uni", "c.uni", func(pkt []byte) [][]byte {
				pci := dt.PCI(pkt)
				if !pci.IsValid() || pci.EID() != unicast.EIDFlowAlloc || pci.Dst() != s.c.IPCP.Addr() || len(pci.Payload()) < 8 {
					return [][]byte{pkt}
				}
				m, err := fa.Unmarshal(pci.Payload()[8:])
				if err != nil || m.Type != fa.MsgReq {
					return [][]byte{pkt}
				}
				if strip != "kex" {
					m.QoS.Sealed = false
				}
				if strip != "flag" {
					if m.Part > 0 {
						return nil // the request's other pieces vanish
					}
					m.Kex, m.Part, m.Parts = nil, 0, 0
				}
				b, err := fa.Marshal(&m)
				if err != nil {
					t.Error(err)
					return nil
				}
				mu.Lock()
				stripped++
				mu.Unlock()
				return [][]byte{append(append([]byte(nil), pkt[:dt.PCILen+8]...), b...)}
			})
			_, _, _, _, err := s.alloc(t, flow.QoS{Loss: flow.MaxLoss, Sealed: true})
			if !errors.Is(err, flow.ErrRefused) {
				t.Fatalf("downgraded allocation: %v, want ErrRefused", err)
			}
			select {
			case a := <-s.c.Up.Accepted:
				// Stripped of both, the request looks like an unsealed one
				// to c, which cannot know better (unless it seals every
				// flow): a refuses the answer and ends the flow at once.
				if strip != "both" {
					t.Fatalf("c's program got a downgraded flow: %+v", a.Req)
				}
				if _, err := a.Port.Read(make([]byte, flow.MaxSDU), time.Now().Add(3*time.Second)); !errors.Is(err, flow.ErrClosed) {
					t.Fatalf("c's downgraded flow: Read %v, want ErrClosed (a ended it)", err)
				}
			default:
			}
			mu.Lock()
			if stripped == 0 {
				t.Fatal("nothing stripped: the test did not run its attack")
			}
			mu.Unlock()
			s.n.Tamper("b.uni", "c.uni", nil)
			ra, rc, res, _, err := s.alloc(t, flow.QoS{Loss: flow.MaxLoss, Sealed: true})
			if err != nil {
				t.Fatalf("the next allocation: %v", err)
			}
			ra.Close()
			rc.Close()
			if res.Peer == nil {
				t.Fatal("the next allocation is not sealed")
			}
		})
	}
}

// TestSealPolicy: a member with Seal refuses unsealed requests and seals
// what it allocates; SealPeers refuses nodes not listed, both ways.
func TestSealPolicy(t *testing.T) {
	t.Run("require", func(t *testing.T) {
		s := newSealNet(t, func(name string, c *unicast.Config) { c.Seal = name == "c" })
		if _, _, _, _, err := s.alloc(t, flow.QoS{Loss: flow.MaxLoss}); !errors.Is(err, flow.ErrRefused) {
			t.Fatalf("unsealed request to a member that seals all: %v, want ErrRefused", err)
		}
		// c's own allocations are sealed without asking.
		s.a.Register("back")
		s.n.WaitFor(5*time.Second, "c reaches a", func() bool { return s.c.IPCP.Query(context.Background(), "back") == nil })
		app, ipc := flowtest.Pipe(unicasttest.PipeCap)
		defer app.Close()
		res, err := s.c.IPCP.AllocPeer(context.Background(), ipcp.AllocReq{Dst: "back", QoS: flow.QoS{Loss: flow.MaxLoss}}, ipc)
		if err != nil || res.Peer == nil {
			t.Fatalf("c's allocation: peer %v, %v; want sealed", res.Peer, err)
		}
		acc, err := s.a.Accept(5 * time.Second)
		if err != nil || acc.Req.Peer == nil || !acc.Req.QoS.Sealed {
			t.Fatalf("a accepted %+v, %v; want sealed", acc.Req, err)
		}
		acc.Port.Close()
	})
	t.Run("peers", func(t *testing.T) {
		for _, listed := range []bool{true, false} {
			ida := newID(t)
			allow := "another node"
			if listed {
				allow = identity.NameOf(ida.Public())
			}
			s := newSealNet(t, func(name string, c *unicast.Config) {
				switch name {
				case "a":
					c.Signer = ida
				case "c":
					c.SealPeers = []string{allow}
				}
			})
			ra, rc, _, _, err := s.alloc(t, flow.QoS{Loss: flow.MaxLoss, Sealed: true})
			if listed {
				if err != nil {
					t.Fatalf("from a node c lists: %v", err)
				}
				ra.Close()
				rc.Close()
				continue
			}
			if !errors.Is(err, flow.ErrRefused) {
				t.Fatalf("from a node c does not list: %v, want ErrRefused", err)
			}
			if st := s.c.IPCP.Stats(); st.Checks["seal.kex_failed"] == 0 {
				t.Error("c did not count the refused key exchange")
			}
		}
	})
}

// BenchmarkAllocSealed times allocations from a to c across b, in one
// process: unsealed, sealed with the full key exchange every time, and
// sealed resuming from the last exchange's ticket (after the first):
// what sealing adds to an allocation without process hops or a signer
// component.
func BenchmarkAllocSealed(b *testing.B) {
	// The first allocation between two members: a fresh net for each
	// (made outside the timed part, given 50 ms to settle and make its
	// key pairs ahead), unsealed then sealed (the full exchange, no
	// document cached).
	for _, kind := range []string{"first-plain", "first-sealed"} {
		b.Run(kind, func(b *testing.B) {
			q := flow.QoS{Loss: flow.MaxLoss, Sealed: kind == "first-sealed"}
			for b.Loop() {
				b.StopTimer()
				s := newSealNet(b, nil)
				time.Sleep(50 * time.Millisecond)
				b.StartTimer()
				ra, rc, _, _, err := s.alloc(b, q)
				if err != nil {
					b.Fatal(err)
				}
				ra.Close()
				rc.Close()
			}
		})
	}
	for _, kind := range []string{"plain", "sealed-full", "sealed-resumed"} {
		b.Run(kind, func(b *testing.B) {
			s := newSealNet(b, func(_ string, c *unicast.Config) {
				if kind == "sealed-full" {
					c.SealTicketLife = -1 // never resume
				}
			})
			q := flow.QoS{Loss: flow.MaxLoss, Sealed: kind != "plain"}
			for b.Loop() {
				ra, rc, _, _, err := s.alloc(b, q)
				if err != nil {
					b.Fatal(err)
				}
				ra.Close()
				rc.Close()
			}
		})
	}
}

// TestSealedReliableStream: FRCT and a byte stream (flow.Stream, the
// net.Conn of HTTP and TLS) over a sealed flow whose forwarder drops one
// data packet in ten and repeats another: 256 KiB arrive whole and in
// order, and the forwarder's repeats are refused by the seal (FRCT never
// sees them).
func TestSealedReliableStream(t *testing.T) {
	s := newSealNet(t, nil)
	var mu sync.Mutex
	var n, dropped, repeated int
	s.n.Tamper("b.uni", "c.uni", func(pkt []byte) [][]byte {
		if !isData(pkt) {
			return [][]byte{pkt}
		}
		mu.Lock()
		defer mu.Unlock()
		n++
		switch n % 10 {
		case 3:
			dropped++
			return nil
		case 7:
			repeated++
			return [][]byte{pkt, append([]byte(nil), pkt...)}
		}
		return [][]byte{pkt}
	})
	q := flow.Data()
	q.Sealed = true
	ra, rc, res, acc, err := s.alloc(t, q)
	if err != nil {
		t.Fatal(err)
	}
	flA, err := flow.New(ra, flow.Info{QoS: q, MaxSDU: res.MaxSDU, Peer: res.Peer})
	if err != nil {
		t.Fatal(err)
	}
	flC, err := flow.New(rc, flow.Info{QoS: acc.Req.QoS, MaxSDU: acc.Req.MaxSDU, Peer: acc.Req.Peer})
	if err != nil {
		t.Fatal(err)
	}
	if flA.Peer() == nil || flC.Peer() == nil {
		t.Fatal("Flow.Peer() nil on a sealed flow")
	}
	sa, sc := flow.NewStream(flA), flow.NewStream(flC)
	defer sa.Close()
	defer sc.Close()
	want := make([]byte, 256<<10)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		sa.Write(want)
	}()
	got := make([]byte, len(want))
	sc.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil {
		t.Fatalf("stream read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the stream arrived changed")
	}
	// The last repeats may still be on their way to c: wait for them.
	mu.Lock()
	rep := repeated
	mu.Unlock()
	s.n.WaitFor(5*time.Second, "c to refuse every repeat", func() bool { return s.c.IPCP.Stats().Checks["seal.replayed"] >= uint64(rep) })
	mu.Lock()
	defer mu.Unlock()
	st := s.c.IPCP.Stats()
	t.Logf("%d data packets forwarded to c, %d dropped, %d repeated; c refused %d replays; FRCT retransmits %d", n, dropped, repeated, st.Checks["seal.replayed"], flA.Stats().Retransmits)
	if dropped == 0 || st.Checks["seal.replayed"] < uint64(rep) {
		t.Fatalf("dropped %d, repeated %d, replays refused %d", dropped, repeated, st.Checks["seal.replayed"])
	}
}

// TestSealedAEAD: the AEAD of a sealed flow across a forwarder is
// negotiated by its two ends, in the full exchange and in the resumption
// after it: this host's preference by default, the one a member is
// forced to (Config.SealAEAD) if the other takes it; both ends' peer
// names it. Members forced to different AEADs fail the allocation, and c
// counts the failed key exchange.
func TestSealedAEAD(t *testing.T) {
	gcm, cc := seal.AES256GCM, seal.ChaCha20Poly1305
	for _, tt := range []struct {
		name   string
		ao, co seal.AEAD
		want   seal.AEAD // 0: refused
	}{
		{"defaults", 0, 0, seal.Preferred()[0]},
		{"requester forced to ChaCha20-Poly1305", cc, 0, cc},
		{"responder forced to AES-256-GCM", 0, gcm, gcm},
		{"forced apart", cc, gcm, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSealNet(t, func(name string, c *unicast.Config) {
				c.SealAEAD = map[string]seal.AEAD{"a": tt.ao, "c": tt.co}[name]
			})
			q := flow.QoS{Loss: flow.MaxLoss, Sealed: true}
			for i := range 2 { // full, then resumed
				ra, rc, res, acc, err := s.alloc(t, q)
				if tt.want == 0 {
					if !errors.Is(err, flow.ErrRefused) {
						t.Fatalf("got %v, want ErrRefused", err)
					}
					if n := s.c.IPCP.Stats().Checks["seal.kex_failed"]; n == 0 {
						t.Fatal("c did not count the failed key exchange")
					}
					return
				}
				if err != nil {
					t.Fatalf("allocation %d: %v", i, err)
				}
				if res.Peer == nil || acc.Req.Peer == nil || res.Peer.AEAD != tt.want.String() || acc.Req.Peer.AEAD != tt.want.String() {
					t.Fatalf("allocation %d: a sees %+v, c sees %+v; want AEAD %s", i, res.Peer, acc.Req.Peer, tt.want)
				}
				echoOnce(t, ra, rc)
				ra.Close()
				rc.Close()
			}
			if st := s.c.IPCP.Stats().Checks; st["seal.resumed"] != 1 || st["seal.kex_failed"] != 0 {
				t.Fatalf("c's checks %v: want one resumption, no failure", st)
			}
		})
	}
}
