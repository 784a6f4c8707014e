package enroll

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/flow"
)

// TestNamesConfig: names = certified needs the dht directory and an
// authority policy; anything else but "" is refused.
func TestNamesConfig(t *testing.T) {
	auth := admission.Policy{Mode: admission.ModeAuthority, Authorities: []ed25519.PublicKey{make([]byte, ed25519.PublicKeySize)}}
	for _, tt := range []struct {
		names, dir string
		pol        admission.Policy
		want       string // "" valid, else a part of the error
	}{
		{"", "dht", auth, ""},
		{"", "flood", auth, ""},
		{NamesCertified, "dht", auth, ""},
		{NamesCertified, "flood", auth, "needs the dht directory"},
		{NamesCertified, "dht", admission.Policy{Mode: admission.ModeOpen}, "needs an authority admission policy"},
		{"first", "dht", auth, `names "first"`},
	} {
		c := DefaultConfig("net")
		c.Dir, c.Names, c.Admission = tt.dir, tt.names, tt.pol
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("names %q, dir %s: %v", tt.names, tt.dir, err)
		case tt.want != "" && (!errors.Is(err, flow.ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("names %q, dir %s: %v, want %q", tt.names, tt.dir, err, tt.want)
		}
	}
}
