package carrier

import (
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
)

// FuzzOpen feeds the bundle decoder (envelope, body, limits, sender,
// signature) arbitrary files, seeded with genuine bundles: it must never
// panic, and what it accepts is within the limits and signed by the peer.
func FuzzOpen(f *testing.F) {
	id := ident(f)
	c := identity.NewCodec()
	for _, b := range []*Bundle{
		{Version: BundleVersion, Sender: id.Public(), Seq: 1, Expires: 1 << 40, Flow: 1, Dst: "files", SDUs: [][]byte{[]byte("one"), {}}},
		{Version: BundleVersion, Sender: id.Public(), Seq: 2, Expires: 1 << 40, Flow: 1, Dst: "files", Src: "me", End: true},
	} {
		file, err := Seal(context.Background(), c, id, b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(file)
	}
	f.Add([]byte{0x82, 0x40, 0x40})
	peers := []ed25519.PublicKey{id.Public()}
	f.Fuzz(func(t *testing.T, file []byte) {
		b, err := Open(c, file, peers)
		if err != nil {
			return
		}
		if !id.Public().Equal(ed25519.PublicKey(b.Sender)) || b.Dst == "" || len(b.SDUs) > MaxSDUs {
			t.Fatalf("accepted %+v", b)
		}
		for _, s := range b.SDUs {
			if len(s) > flow.MaxSDU {
				t.Fatalf("accepted an SDU of %d bytes", len(s))
			}
		}
	})
}
