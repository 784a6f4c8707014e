package connmgr_test

import (
	"testing"

	"github.com/ouronet/ouro/layer/unicast/connmgr"
)

func FuzzUnmarshal(f *testing.F) {
	for _, v := range []any{
		connmgr.Open{Version: connmgr.Version, Purpose: connmgr.PurposeMgmt, Layer: "l", Name: "a", Addr: 1, Nonce: 7, Key: make([]byte, 32), Challenge: make([]byte, 32), Doc: []byte{1}},
		connmgr.OpenResp{Name: "b", Addr: 2, Key: make([]byte, 32), Challenge: make([]byte, 32), Doc: []byte{1}, Sig: make([]byte, 64)},
		connmgr.Msg{Type: connmgr.MsgAuth, Body: make([]byte, 64)},
		connmgr.Msg{Type: connmgr.MsgLSU, Body: []byte{0x82, 1, 0x80}},
	} {
		b, err := connmgr.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if o, err := connmgr.UnmarshalOpen(b); err == nil {
			if o.Name == "" || (o.Purpose != connmgr.PurposeEnroll && o.Addr == 0) {
				t.Fatalf("accepted %+v", o)
			}
		}
		connmgr.UnmarshalOpenResp(b)
		connmgr.UnmarshalMsg(b)
	})
}

func TestUnmarshalOpen(t *testing.T) {
	tests := []struct {
		name string
		o    connmgr.Open
		ok   bool
	}{
		{"mgmt", connmgr.Open{Version: 2, Purpose: connmgr.PurposeMgmt, Name: "a", Addr: 1, Key: make([]byte, 32), Challenge: make([]byte, 32), Doc: []byte{1}}, true},
		{"mgmt without identity", connmgr.Open{Version: 2, Purpose: connmgr.PurposeMgmt, Name: "a", Addr: 1}, false},
		{"mgmt with a short challenge", connmgr.Open{Version: 2, Purpose: connmgr.PurposeMgmt, Name: "a", Addr: 1, Key: make([]byte, 32), Challenge: make([]byte, 8), Doc: []byte{1}}, false},
		{"dt", connmgr.Open{Version: 2, Purpose: connmgr.PurposeDT, Name: "a", Addr: 1}, true},
		{"enroll without address", connmgr.Open{Version: 2, Purpose: connmgr.PurposeEnroll, Name: "a"}, true},
		{"dt without address", connmgr.Open{Version: 2, Purpose: connmgr.PurposeDT, Name: "a"}, false},
		{"no name", connmgr.Open{Version: 2, Purpose: connmgr.PurposeMgmt, Addr: 1}, false},
		{"bad purpose", connmgr.Open{Version: 2, Purpose: 9, Name: "a", Addr: 1}, false},
		{"old version", connmgr.Open{Version: 1, Purpose: connmgr.PurposeMgmt, Name: "a", Addr: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := connmgr.Marshal(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			_, err = connmgr.UnmarshalOpen(b)
			if (err == nil) != tc.ok {
				t.Fatalf("UnmarshalOpen(%+v) err = %v, want ok %v", tc.o, err, tc.ok)
			}
		})
	}
}
