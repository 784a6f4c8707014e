package eth

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/eth/ethtest"
	"github.com/ouronet/ouro/layer/shim/impair"
)

// mtuDevice refuses frames longer than its MTU allows, as a NIC does,
// and remembers the longest it sent. The first loseLarge frames it sends
// of more than 500 bytes (pieces of the key exchange) are lost on the
// wire.
type mtuDevice struct {
	Device
	longest   atomic.Int64
	loseLarge atomic.Int32
}

func (d *mtuDevice) WriteFrame(b []byte) error {
	if len(b) > EthLen+d.MTU() {
		return fmt.Errorf("frame of %d bytes, MTU %d", len(b), d.MTU())
	}
	if n := int64(len(b)); n > d.longest.Load() {
		d.longest.Store(n)
	}
	if len(b) > 500 && d.loseLarge.Add(-1) >= 0 {
		return nil
	}
	return d.Device.WriteFrame(b)
}

// boardSigner is a node's signer as a board's image has it: it hands out
// a measured document with the longest name and board a document
// carries, so that the key exchange's messages are the largest they get
// (each more than an Ethernet frame).
type boardSigner struct {
	*identity.Identity
	name string
}

func (s boardSigner) Document(ctx context.Context) ([]byte, error) {
	var m identity.Measurement
	m[0] = 1
	return identity.NewDocument(s, s.name+strings.Repeat("n", identity.MaxNameLen-len(s.name)),
		strings.Repeat("b", identity.MaxNameLen), m, time.Now()).Sign(ctx, s)
}

func sealedNode(t *testing.T, name string, seed byte, dev Device, imp impair.Config) (*node, *identity.Identity) {
	s := make([]byte, 32)
	s[0] = seed
	id, err := identity.FromSeed(s)
	if err != nil {
		t.Fatal(err)
	}
	up := ipcptest.NewUpcalls(16)
	p, err := New(Config{Runner: layertest.Runner{}, Layer: "eth.test", Name: name, Device: dev, Impair: imp,
		QueryTimeout: 300 * time.Millisecond, RetryBase: 5 * time.Millisecond, Signer: boardSigner{id, name}}, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &node{p, up}, id
}

// A sealed flow over Ethernet: the key exchange, larger than a frame,
// crosses in frames within the MTU (also when 30% of them are lost), and
// SDUs of every size up to the sealed flow's largest cross sealed.
func TestSealedEth(t *testing.T) {
	for _, loss := range []int{0, 30} {
		t.Run(fmt.Sprintf("loss %d%%", loss), func(t *testing.T) {
			pa, pb := ethtest.NewPair()
			da, db := &mtuDevice{Device: pa}, &mtuDevice{Device: pb}
			if loss > 0 {
				// Besides the random loss, which may spare every piece
				// of the exchange (its draws fall on whatever frames
				// timing sends first), a's first piece is lost: a
				// retransmission is certain.
				da.loseLarge.Store(1)
			}
			imp := impair.Config{Seed: 5, Loss: float64(loss)}
			a, _ := sealedNode(t, "a", 1, da, imp)
			b, idb := sealedNode(t, "b", 2, db, imp)
			if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
				t.Fatal(err)
			}
			app, ipcpEnd := flowtest.Pipe(16)
			defer app.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			q := flow.BestEffort()
			q.Sealed = true
			res, err := a.ipcp.AllocPeer(ctx, ipcp.AllocReq{Dst: "srv", QoS: q}, ipcpEnd)
			if err != nil {
				t.Fatal(err)
			}
			if res.Peer == nil || res.Peer.ID != identity.NameOf(idb.Public()) || len(res.Peer.Measurement) == 0 {
				t.Fatalf("peer %+v", res.Peer)
			}
			acc := <-b.up.Accepted
			defer acc.Port.Close()
			if loss == 0 {
				for _, n := range []int{1, 64, res.MaxSDU} {
					msg := bytes.Repeat([]byte{byte(n)}, n)
					roundTrip(t, app, acc.Port, msg)
					roundTrip(t, acc.Port, app, msg)
				}
			}
			if loss > 0 && a.ipcp.Stats().AllocRetries == 0 {
				t.Error("no retransmission at 30% loss")
			}
			if n := a.ipcp.Stats().Drops.TxError + b.ipcp.Stats().Drops.TxError; n != 0 {
				t.Fatalf("%d frames refused by the devices", n)
			}
			t.Logf("longest frames: %d bytes from a, %d from b", da.longest.Load(), db.longest.Load())
			if n := a.ipcp.Stats().CtlOut; n < 4 {
				t.Fatalf("%d control frames from a: the exchange was not cut in pieces", n)
			}
		})
	}
}
