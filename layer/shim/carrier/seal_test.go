package carrier

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
)

// TestSealedBundles: a sealed flow's bundles carry none of its SDUs in
// clear (the same flow unsealed does: the check has the power to see
// them); the receiver opens them with its node key, accepts the flow as
// sealed from the sender, and reads what was written. A receiver without
// the agreement capability refuses them as unopened.
func TestSealedBundles(t *testing.T) {
	secret := []byte("a secret no carrier may read")
	written := func(t *testing.T, a *site, q flow.QoS) []byte {
		t.Helper()
		app := dial(t, a, q)
		for range 3 {
			if err := app.Write(secret, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		data, err := os.ReadFile(waitFile(t, a.out, Suffix))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	agree := func(c *Config) { c.Agreer = c.Signer.(*identity.Identity) }
	sealed := flow.DelayTolerant()
	sealed.Sealed = true

	t.Run("clear", func(t *testing.T) {
		a, _ := sites(t, agree)
		if !bytes.Contains(written(t, a, flow.DelayTolerant()), secret) {
			t.Fatal("an unsealed bundle does not show its SDUs: the check below could not see them either")
		}
	})
	t.Run("sealed", func(t *testing.T) {
		a, b := sites(t, agree)
		if data := written(t, a, sealed); bytes.Contains(data, secret) {
			t.Fatal("a sealed bundle carries an SDU in clear")
		}
		carry(t, a.out, b.in)
		var acc flowAccepted
		select {
		case x := <-b.up.Accepted:
			t.Cleanup(func() { x.Port.Close() })
			acc = flowAccepted{x.Req.QoS.Sealed, x.Req.Peer, x.Port}
		case <-time.After(5 * time.Second):
			t.Fatalf("no flow accepted: %+v", b.p.Bundles())
		}
		if !acc.sealed || acc.peer == nil || !bytes.Equal(acc.peer.Key, a.id.Public()) {
			t.Fatalf("accepted sealed=%v from %+v, want sealed from %s", acc.sealed, acc.peer, identity.NameOf(a.id.Public()))
		}
		buf := make([]byte, flow.MaxSDU)
		for range 3 {
			n, err := acc.port.Read(buf, time.Now().Add(5*time.Second))
			if err != nil || !bytes.Equal(buf[:n], secret) {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
		}
	})
	t.Run("no agreement", func(t *testing.T) {
		a, b := sites(t, func(c *Config) {
			if c.Name == "a.carrier" {
				agree(c)
			}
		})
		written(t, a, sealed)
		carry(t, a.out, b.in)
		waitFor(t, "the bundle refused", func() bool { return b.p.Bundles().Unopened == 1 })
		select {
		case x := <-b.up.Accepted:
			t.Fatalf("a flow was accepted for a bundle nobody opened: %+v", x.Req)
		default:
		}
	})
}

type flowAccepted struct {
	sealed bool
	peer   *flow.Peer
	port   flow.Port
}

// TestOpenSealedRefuses: a sealed bundle opens only for its recipient and
// only as sealed: another node, a changed ciphertext byte, or a changed
// header (the sealing binds it) is refused as unopened.
func TestOpenSealedRefuses(t *testing.T) {
	c := identity.NewCodec()
	sender, to, other := ident(t), ident(t), ident(t)
	mk := func() Bundle {
		b := Bundle{Version: BundleVersion, Sender: sender.Public(), Seq: 1, Expires: 1 << 40, Flow: 1, Dst: "files",
			SDUs: [][]byte{[]byte("one"), []byte("two")}, To: to.Public()}
		if err := sealSDUs(c, &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := mk()
	if err := openSDUs(context.Background(), c, to, to.Public(), &b); err != nil || len(b.SDUs) != 2 || string(b.SDUs[1]) != "two" {
		t.Fatalf("the recipient: %v, %q", err, b.SDUs)
	}
	for name, change := range map[string]func(*Bundle) (*identity.Identity, []byte){
		"another node": func(b *Bundle) (*identity.Identity, []byte) { return other, other.Public() },
		"another node claiming to be the recipient": func(b *Bundle) (*identity.Identity, []byte) { return other, to.Public() },
		"ciphertext":    func(b *Bundle) (*identity.Identity, []byte) { b.Sealed[40] ^= 1; return to, to.Public() },
		"ephemeral key": func(b *Bundle) (*identity.Identity, []byte) { b.Sealed[3] ^= 1; return to, to.Public() },
		"header":        func(b *Bundle) (*identity.Identity, []byte) { b.Dst = "other"; return to, to.Public() },
	} {
		b := mk()
		who, self := change(&b)
		if err := openSDUs(context.Background(), c, who, self, &b); !errors.Is(err, ErrUnopened) {
			t.Errorf("%s: %v, want unopened", name, err)
		}
	}
}
