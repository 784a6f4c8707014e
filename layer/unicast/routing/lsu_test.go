package routing_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/layer/unicast/routing"
	"github.com/ouronet/ouro/layer/unicast/routing/routingtest"
)

func TestCodecRoundTrip(t *testing.T) {
	key, sig := make([]byte, 32), make([]byte, 64)
	m := routing.Msg{Version: routing.Version, LSUs: []routing.LSU{
		{Origin: 1, Seq: 7, Links: []routing.Link{{Neighbour: 2, Metric: 1}, {Neighbour: 3, Metric: 10}}, Key: key, Sig: sig},
		{Origin: 1 << 40, Seq: 1 << 62, Links: []routing.Link{}, Key: key, Sig: sig},
	}}
	b, err := routing.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := routing.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: got %+v, want %+v", got, m)
	}
	// Deterministic and array-shaped: [2, [[1, 7, [[2, 1], [3, 10]], "", key, sig], ...]]
	if want := []byte{0x82, 0x02, 0x82, 0x86, 0x01, 0x07, 0x82, 0x82, 0x02, 0x01, 0x82, 0x03, 0x0a, 0x60, 0x58, 0x20}; !bytes.HasPrefix(b, want) {
		t.Fatalf("encoding % x, want prefix % x", b, want)
	}
}

// msgBytes encodes a message with one LSU as generic CBOR, so that tests
// can break what Marshal would refuse.
func msgBytes(t *testing.T, version uint, origin uint64, links [][2]uint64, keyLen, sigLen int) []byte {
	t.Helper()
	ls := []any{}
	for _, l := range links {
		ls = append(ls, []any{l[0], l[1]})
	}
	b, err := cbor.Marshal([]any{version, []any{[]any{origin, uint64(1), ls, "", make([]byte, keyLen), make([]byte, sigLen)}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnmarshalRejects(t *testing.T) {
	ok := [][2]uint64{{2, 1}}
	if _, err := routing.Unmarshal(msgBytes(t, routing.Version, 1, ok, 32, 64)); err != nil {
		t.Fatalf("the well-formed base case: %v", err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not an array", []byte{0x01}},
		{"version 1", msgBytes(t, 1, 1, ok, 32, 64)},
		{"origin 0", msgBytes(t, routing.Version, 0, ok, 32, 64)},
		{"self link", msgBytes(t, routing.Version, 1, [][2]uint64{{1, 1}}, 32, 64)},
		{"zero metric", msgBytes(t, routing.Version, 1, [][2]uint64{{2, 0}}, 32, 64)},
		{"unsorted links", msgBytes(t, routing.Version, 1, [][2]uint64{{3, 1}, {2, 1}}, 32, 64)},
		{"no key", msgBytes(t, routing.Version, 1, ok, 0, 64)},
		{"short signature", msgBytes(t, routing.Version, 1, ok, 32, 63)},
		{"unsigned (version 1 shape)", []byte{0x82, 0x02, 0x81, 0x83, 0x01, 0x01, 0x80}},
		{"indefinite length", []byte{0x82, 0x02, 0x9f, 0xff}},
		{"tag", []byte{0xc1, 0x82, 0x02, 0x80}},
		{"huge array", []byte{0x82, 0x02, 0x9a, 0xff, 0xff, 0xff, 0xff}},
		{"trailing bytes", []byte{0x82, 0x02, 0x80, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := routing.Unmarshal(tc.b); !errors.Is(err, routing.ErrMalformed) {
				t.Fatalf("Unmarshal(% x) = %+v, %v; want ErrMalformed", tc.b, m, err)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	lsu := routing.LSU{Origin: 3, Seq: 7, Links: []routing.Link{{Neighbour: 2, Metric: 1}}}
	id, _ := routingtest.Key(3)
	if err := routing.Sign(context.Background(), id, routingtest.Layer, &lsu); err != nil {
		f.Fatal(err)
	}
	seed, _ := routing.Marshal(routing.Msg{Version: routing.Version, LSUs: []routing.LSU{lsu}})
	f.Add(seed)
	f.Add([]byte{0x82, 0x02, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := routing.Unmarshal(b)
		if err != nil {
			return
		}
		again, err := routing.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal of a decoded message: %v", err)
		}
		m2, err := routing.Unmarshal(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decode: %+v, %v; want %+v", m2, err, m)
		}
		// A Router must take any valid message.
		n := newLineNet(t, 2)
		if err := n.Node(1).Router.HandleMessage(2, b); err != nil {
			t.Fatalf("HandleMessage of a valid message: %v", err)
		}
		n.Node(1).Router.Flush() // checks what it held
	})
}
