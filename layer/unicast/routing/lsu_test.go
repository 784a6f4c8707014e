package routing_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/ouronet/ouro/layer/unicast/routing"
)

func TestCodecRoundTrip(t *testing.T) {
	m := routing.Msg{Version: routing.Version, LSUs: []routing.LSU{
		{Origin: 1, Seq: 7, Links: []routing.Link{{Neighbour: 2, Metric: 1}, {Neighbour: 3, Metric: 10}}},
		{Origin: 1 << 40, Seq: 1 << 62, Links: []routing.Link{}},
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
	// Deterministic and array-shaped: [1, [[1, 7, [[2, 1], [3, 10]]], ...]]
	if want := []byte{0x82, 0x01, 0x82, 0x83, 0x01, 0x07, 0x82, 0x82, 0x02, 0x01, 0x82, 0x03, 0x0a}; !bytes.HasPrefix(b, want) {
		t.Fatalf("encoding % x, want prefix % x", b, want)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not an array", []byte{0x01}},
		{"version 2", []byte{0x82, 0x02, 0x80}},
		{"origin 0", []byte{0x82, 0x01, 0x81, 0x83, 0x00, 0x01, 0x80}},
		{"self link", []byte{0x82, 0x01, 0x81, 0x83, 0x01, 0x01, 0x81, 0x82, 0x01, 0x01}},
		{"zero metric", []byte{0x82, 0x01, 0x81, 0x83, 0x01, 0x01, 0x81, 0x82, 0x02, 0x00}},
		{"unsorted links", []byte{0x82, 0x01, 0x81, 0x83, 0x01, 0x01, 0x82, 0x82, 0x03, 0x01, 0x82, 0x02, 0x01}},
		{"indefinite length", []byte{0x82, 0x01, 0x9f, 0xff}},
		{"tag", []byte{0xc1, 0x82, 0x01, 0x80}},
		{"huge array", []byte{0x82, 0x01, 0x9a, 0xff, 0xff, 0xff, 0xff}},
		{"trailing bytes", []byte{0x82, 0x01, 0x80, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := routing.Unmarshal(tc.b); !errors.Is(err, routing.ErrMalformed) {
				t.Fatalf("Unmarshal(% x) = %+v, %v; want ErrMalformed", tc.b, m, err)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	seed, _ := routing.Marshal(routing.Msg{Version: routing.Version, LSUs: []routing.LSU{
		{Origin: 1, Seq: 7, Links: []routing.Link{{Neighbour: 2, Metric: 1}}},
	}})
	f.Add(seed)
	f.Add([]byte{0x82, 0x01, 0x80})
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
	})
}
