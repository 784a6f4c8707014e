package node

import (
	"strings"
	"testing"
)

// TestBoardPortValues checks the values [ipcp.eth] board takes; a hosted
// image has no board devices, so each valid one fails with its own reason.
func TestBoardPortValues(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  string // in the error from Parse or Start
	}{
		{"true", "no board NIC"},
		{`"enet"`, "no board NIC"},
		{`"usb"`, "no USB Ethernet gadget"},
		{`"wifi"`, "wifi"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			cfg, err := ParseConfig([]byte("[node]\nname = \"x\"\n[[ipcp]]\nkind = \"eth\"\n[ipcp.eth]\nboard = " + tc.value + "\n"))
			if err == nil {
				var n *Node
				if n, err = New(cfg); err == nil {
					err = n.Start()
					if err == nil {
						n.Stop()
					}
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("board = %s: got %v, want an error mentioning %q", tc.value, err, tc.want)
			}
		})
	}
}
