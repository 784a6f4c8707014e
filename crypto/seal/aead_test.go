package seal

import (
	"errors"
	"runtime"
	"slices"
	"testing"
)

const (
	c = ChaCha20Poly1305
	g = AES256GCM
)

// TestChoose is the negotiation's rule, case by case: AES-256-GCM when
// both put it first or one takes nothing else, ChaCha20-Poly1305 when
// the two disagree; nothing when nothing is shared; unknown identifiers
// and repeats do not count; either side's list may be the requester's.
func TestChoose(t *testing.T) {
	for _, tt := range []struct {
		name     string
		req, rsp []AEAD
		want     AEAD // 0: none shared
	}{
		{"both hardware AES", []AEAD{g, c}, []AEAD{g, c}, g},
		{"neither", []AEAD{c, g}, []AEAD{c, g}, c},
		{"requester without AES", []AEAD{c, g}, []AEAD{g, c}, c},
		{"responder without AES", []AEAD{g, c}, []AEAD{c, g}, c},
		{"old requester (no list)", []AEAD{c}, []AEAD{g, c}, c},
		{"requester forced to AES", []AEAD{g}, []AEAD{c, g}, g},
		{"responder forced to AES", []AEAD{c, g}, []AEAD{g}, g},
		{"forced apart", []AEAD{g}, []AEAD{c}, 0},
		{"empty", nil, []AEAD{c, g}, 0},
		{"unknown first", []AEAD{7, c, g}, []AEAD{c, g}, c},
		{"unknown only", []AEAD{7, 0}, []AEAD{c, g}, 0},
		{"repeats", []AEAD{g, g, c}, []AEAD{c, g}, c},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, swap := range []bool{false, true} {
				req, rsp := tt.req, tt.rsp
				if swap {
					req, rsp = rsp, req
				}
				got, ok := Choose(req, rsp)
				if ok != (tt.want != 0) || got != tt.want {
					t.Errorf("Choose(%v, %v) = %s, %v; want %s", req, rsp, got, ok, tt.want)
				}
			}
		})
	}
}

func TestPreferred(t *testing.T) {
	p := Preferred()
	if len(p) != 2 || !slices.Contains(p, c) || !slices.Contains(p, g) {
		t.Fatalf("Preferred() = %v, want both AEADs", p)
	}
	if want := HardwareAES(); (p[0] == g) != want {
		t.Fatalf("Preferred() = %v with HardwareAES %v", p, want)
	}
	if runtime.GOARCH == "arm" && HardwareAES() {
		t.Fatal("ARMv7: Go has no AES instructions there")
	}
	t.Logf("%s: hardware AES %v, preferred %v", runtime.GOARCH, HardwareAES(), p)
}

func TestParseAEAD(t *testing.T) {
	for _, a := range AEADs {
		if got, err := ParseAEAD(a.String()); err != nil || got != a {
			t.Errorf("ParseAEAD(%q) = %s, %v", a, got, err)
		}
	}
	if _, err := ParseAEAD("aes128gcm"); !errors.Is(err, ErrAEAD) {
		t.Errorf("aes128gcm: %v, want ErrAEAD", err)
	}
}
