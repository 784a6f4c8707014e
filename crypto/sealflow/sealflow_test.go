package sealflow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
)

// A message cut into pieces comes back whole whatever order the pieces
// arrive in, repeats included; a piece with another count starts over.
func TestSplitGather(t *testing.T) {
	msg := make([]byte, 2500)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	ps := Split(msg, 900)
	if len(ps) != 3 || len(ps[2]) != 700 {
		t.Fatalf("split into %d pieces", len(ps))
	}
	var g Pieces
	for _, i := range []int{2, 0, 2} {
		if _, ok := g.Add(uint8(i), 3, ps[i]); ok {
			t.Fatalf("whole after piece %d of 3", i)
		}
	}
	got, ok := g.Add(1, 3, ps[1])
	if !ok || !bytes.Equal(got, msg) {
		t.Fatalf("gathered %d bytes (ok %v), want the %d sent", len(got), ok, len(msg))
	}
	var h Pieces
	h.Add(0, 3, ps[0])
	if b, ok := h.Add(0, 1, []byte("x")); !ok || string(b) != "x" {
		t.Fatalf("a new count did not start over: %q %v", b, ok)
	}
	if n := len(Split(nil, 900)); n != 1 {
		t.Fatalf("empty message in %d pieces, want 1", n)
	}
}

// Verify answers as identity.VerifyDocument, from memory the second time.
func TestDocCache(t *testing.T) {
	id, err := identity.FromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Document(context.Background(), id, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var c DocCache
	for range 2 {
		d, err := c.Verify(doc)
		if err != nil || d.Name != "n1" {
			t.Fatalf("verify: %+v %v", d, err)
		}
	}
	bad := bytes.Clone(doc)
	bad[len(bad)-1] ^= 1
	if _, err := c.Verify(bad); err == nil {
		t.Fatal("a damaged document verified")
	}
	p := PeerOf(mustVerify(t, doc))
	if p.Name != "n1" || p.ID != identity.NameOf(id.Public()) || p.Measurement != nil {
		t.Fatalf("peer %+v", p)
	}
}

func mustVerify(t *testing.T, doc []byte) identity.Document {
	d, err := identity.VerifyDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// KeepMade keeps the channel full, stops when done closes, and returns
// the maker's error.
func TestKeepMade(t *testing.T) {
	ch := make(chan int, 2)
	done := make(chan struct{})
	n := 0
	end := make(chan error, 1)
	go func() { end <- KeepMade(ch, done, func() (int, error) { n++; return n, nil }) }()
	if a, b := <-ch, <-ch; a != 1 || b != 2 {
		t.Fatalf("got %d, %d", a, b)
	}
	close(done)
	if err := <-end; err != nil {
		t.Fatal(err)
	}
	// Full again: a value taken is replaced (by the one made and
	// waiting) at once, and the next is made no sooner than RefillPause
	// after that.
	ch, done = make(chan int, 2), make(chan struct{})
	made := make(chan time.Time, 16)
	go func() {
		end <- KeepMade(ch, done, func() (int, error) { made <- time.Now(); return 0, nil })
	}()
	for range 3 { // two in ch, one waiting to go in
		<-made
	}
	time.Sleep(50 * time.Millisecond) // let it block on the full channel
	<-ch
	took := time.Now()
	if at := <-made; at.Sub(took) < RefillPause {
		t.Fatalf("a replacement made %v after the take, want at least %v", at.Sub(took), RefillPause)
	}
	close(done)
	if err := <-end; err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := KeepMade(ch, nil, func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the maker's error", err)
	}
}

// TestDocCacheHitsAndBound: a document verified once is answered from
// the cache (an entry planted under its hash is what comes back: the
// signature is not checked again), a document that fails is not
// remembered, and the cache never holds more than MaxDocs.
func TestDocCacheHitsAndBound(t *testing.T) {
	var c DocCache
	var first []byte
	for i := range MaxDocs + 1 {
		id, err := identity.FromSeed(bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 16))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := Document(context.Background(), id, "n")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = doc
		}
		if _, err := c.Verify(doc); err != nil {
			t.Fatal(err)
		}
		if c.memo.Len() > MaxDocs {
			t.Fatalf("%d documents cached, bound %d", c.memo.Len(), MaxDocs)
		}
		if i == 0 {
			bad := bytes.Clone(doc)
			bad[len(bad)-1] ^= 1
			if _, err := c.Verify(bad); err == nil || c.memo.Len() != 1 {
				t.Fatalf("a damaged document: %v; %d cached, want 1", err, c.memo.Len())
			}
			planted, _ := c.memo.Get(sha256.Sum256(doc))
			planted.Name = "planted"
			c.memo.Put(sha256.Sum256(doc), planted, MaxDocs)
			if d, _ := c.Verify(doc); d.Name != "planted" {
				t.Fatalf("a cached document was verified again (name %q)", d.Name)
			}
		}
	}
	if _, ok := c.memo.Get(sha256.Sum256(first)); ok {
		t.Fatal("the cache did not start over when full")
	}
}
