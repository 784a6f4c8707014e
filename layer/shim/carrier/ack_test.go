package carrier

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
)

// TestLostBundleResent: the carrier loses A's bundle (the file is gone
// from A's out and never reaches B); A, keeping it unacknowledged, writes
// it again after Resend, and it is delivered. B's acknowledgement, carried
// back, ends the resending. Then the acknowledgement is lost instead: A
// resends a bundle B already took, which B refuses as a replay (nothing
// is delivered twice) and acknowledges again. Without Resend the lost
// bundle never arrives: the test's proof of power.
func TestLostBundleResent(t *testing.T) {
	const resend = 300 * time.Millisecond
	t.Run("resend", func(t *testing.T) {
		state := t.TempDir()
		a, b := sites(t, func(c *Config) {
			c.Ack = true
			if c.Name == "a.carrier" {
				c.State, c.Resend = state, resend
			}
		})
		app := dial(t, a, flow.DelayTolerant())
		if err := app.Write([]byte("one"), time.Time{}); err != nil {
			t.Fatal(err)
		}
		lost := waitFile(t, a.out, Suffix)
		if err := os.Remove(lost); err != nil { // the carrier loses it
			t.Fatal(err)
		}
		waitFor(t, "the resend", func() bool { return a.p.Bundles().Resent >= 1 })
		carry(t, a.out, b.in)
		port := accepted(t, b, 5*time.Second)
		buf := make([]byte, flow.MaxSDU)
		if n, err := port.Read(buf, time.Now().Add(5*time.Second)); err != nil || string(buf[:n]) != "one" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		ack := waitFile(t, b.out, AckSuffix)
		carryFile(t, ack, a.in)
		waitFor(t, "the acknowledgement", func() bool { return a.p.Bundles().Acked == 1 })
		if ents, _ := os.ReadDir(filepath.Join(state, SentDir)); len(ents) != 0 {
			t.Fatalf("%d bundles still kept after the acknowledgement", len(ents))
		}

		// Now the acknowledgement is lost: A resends what B took.
		if err := app.Write([]byte("two"), time.Time{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the second bundle", func() bool { return a.p.Bundles().BundlesOut == 2 })
		carry(t, a.out, b.in)
		if n, err := port.Read(buf, time.Now().Add(5*time.Second)); err != nil || string(buf[:n]) != "two" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		if err := os.Remove(waitFile(t, b.out, AckSuffix)); err != nil {
			t.Fatal(err)
		}
		resent := a.p.Bundles().Resent
		waitFor(t, "the resend of the second", func() bool { return a.p.Bundles().Resent > resent })
		carry(t, a.out, b.in)
		waitFor(t, "the copy refused", func() bool { return b.p.Bundles().Replayed == 1 })
		if n, err := port.Read(buf, time.Now().Add(200*time.Millisecond)); !errors.Is(err, flow.ErrTimeout) {
			t.Fatalf("the resent copy was delivered again: %q, %v", buf[:n], err)
		}
		carryFile(t, waitFile(t, b.out, AckSuffix), a.in)
		waitFor(t, "the second acknowledgement", func() bool { return a.p.Bundles().Acked == 2 })
		t.Logf("A %+v; B %+v", a.p.Bundles(), b.p.Bundles())
	})
	t.Run("no resend", func(t *testing.T) {
		a, b := sites(t, func(c *Config) { c.Ack = true })
		app := dial(t, a, flow.DelayTolerant())
		if err := app.Write([]byte("one"), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(waitFile(t, a.out, Suffix)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * resend)
		if n := carry(t, a.out, b.in); n != 0 || a.p.Bundles().Resent != 0 {
			t.Fatalf("without resend, %d bundles came back (%+v)", n, a.p.Bundles())
		}
		select {
		case acc := <-b.up.Accepted:
			t.Fatalf("a lost bundle arrived without resend: %+v", acc.Req)
		case <-time.After(200 * time.Millisecond):
		}
	})
}

// TestAckRefused: an acknowledgement from a node that is not a peer, one
// for another node, and one with a changed byte are refused and counted,
// and keep the bundle they name for resending.
func TestAckRefused(t *testing.T) {
	c := identity.NewCodec()
	me, peer, other := ident(t), ident(t), ident(t)
	good := &Ack{Version: AckVersion, Acker: peer.Public(), For: me.Public(), Seq: 1, Expires: 1 << 40, Seqs: []uint64{7}}
	file := func(s identity.Signer, a *Ack) []byte {
		b, err := SealAck(context.Background(), c, s, a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	peers := []ed25519.PublicKey{peer.Public()}
	if _, err := OpenAck(c, file(peer, good), me.Public(), peers); err != nil {
		t.Fatalf("a genuine ack: %v", err)
	}
	forOther := *good
	forOther.For = other.Public()
	fromOther := *good
	fromOther.Acker = other.Public()
	tampered := file(peer, good)
	tampered[len(tampered)-70] ^= 1 // in the body, before the signature
	for _, tc := range []struct {
		name string
		file []byte
		want error
	}{
		{"not a peer", file(other, &fromOther), ErrUnknownKey},
		{"for another node", file(peer, &forOther), ErrUnknownKey},
		{"tampered", tampered, nil},
		{"empty", file(peer, &Ack{Version: AckVersion, Acker: peer.Public(), For: me.Public(), Expires: 1 << 40}), ErrMalformed},
	} {
		_, err := OpenAck(c, tc.file, me.Public(), peers)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzOpenAck: the acknowledgement decoder never panics, and what it
// accepts is a peer's, for us, within the limits.
func FuzzOpenAck(f *testing.F) {
	c := identity.NewCodec()
	me, peer := ident(f), ident(f)
	b, err := SealAck(context.Background(), c, peer, &Ack{Version: AckVersion, Acker: peer.Public(), For: me.Public(), Seq: 1, Expires: 1 << 40, Seqs: []uint64{1, 2}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{0x82, 0x40, 0x40})
	peers := []ed25519.PublicKey{peer.Public()}
	f.Fuzz(func(t *testing.T, file []byte) {
		a, err := OpenAck(c, file, me.Public(), peers)
		if err != nil {
			return
		}
		if !peer.Public().Equal(ed25519.PublicKey(a.Acker)) || !me.Public().Equal(ed25519.PublicKey(a.For)) || len(a.Seqs) == 0 || len(a.Seqs) > MaxAckSeqs {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// waitFile waits for a complete file with suffix in dir and returns its path.
func waitFile(t *testing.T, dir, suffix string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), suffix) && !strings.HasPrefix(e.Name(), ".") {
				return filepath.Join(dir, e.Name())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s file in %s", suffix, dir)
		}
	}
}

// carryFile moves one file into dir, as the carrier would.
func carryFile(t *testing.T, path, dir string) {
	t.Helper()
	if err := os.Rename(path, filepath.Join(dir, filepath.Base(path))); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
