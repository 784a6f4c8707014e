package main

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/kernel"
)

// measuredVMConfig is the armory image's configuration for the measured
// admission test: the Ethernet shim on the board's NIC and a unicast IPCP
// that enrolls in layer "uni" through the hosted node's h.uni.
const measuredVMConfig = `
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
board = true

[[ipcp]]
kind = "unicast"
name = "vm.uni"
layer = "uni"
[ipcp.unicast]
lower = ["eth"]
enroll = "h.uni"

[[app]]
kind = "halt"
`

// TestQEMUMeasured is the measured-admission test of the trust issue: a
// hosted node bootstraps layer "uni" admitting only two image
// measurements (its own and the armory image's, as the host computes it
// from the ELF file); the armory image, whose key derives from the
// board's unique key and which measures itself, proves both and enrolls.
// The same image rebuilt with one byte of its embedded configuration
// changed reports another measurement and is refused, counted as
// refused.measurement.
func TestQEMUMeasured(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tool := findToolchain(t)
	good := buildImage(t, tool, measuredVMConfig)
	changed := buildImage(t, tool, measuredVMConfig+" ") // one byte more
	mGood, err := identity.MeasureELF(good)
	if err != nil {
		t.Fatal(err)
	}
	mChanged, err := identity.MeasureELF(changed)
	if err != nil {
		t.Fatal(err)
	}
	if mGood == mChanged {
		t.Fatal("one byte changed, the same measurement")
	}
	mHost, err := identity.MeasureSelf()
	if err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("open measurement=%s measurement=%s", mGood, mHost)
	for _, tc := range []struct {
		name   string
		elf    string
		admits bool
	}{{"allowed", good, true}, {"one-byte-changed", changed, false}} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			h := startMeasuredHost(t, port, policy, mHost)
			v := bootVM(t, tc.elf, "vm", fmt.Sprintf("socket,model=imx.enet,connect=127.0.0.1:%d,mac=02:00:00:00:00:02", port))
			v.checkIdentity(t, "vm", tc.elf)
			want, other := "members_enrolled", "refused.measurement"
			if !tc.admits {
				want, other = other, want
			}
			deadline := time.Now().Add(30 * time.Second)
			for uniStat(t, h, "h.uni", want) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("h.uni: no %s in 30 s", want)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if n := uniStat(t, h, "h.uni", other); n != 0 {
				t.Fatalf("h.uni: %s = %d", other, n)
			}
			if tc.admits {
				t.Logf("image %s enrolled under the measured policy", mGood)
			} else {
				t.Logf("image %s (one byte changed) refused under the measured policy", mChanged)
			}
		})
	}
}

// startMeasuredHost starts the hosted bootstrapper of layer "uni" over an
// Ethernet shim listening for the VM on port, with measurement m in its
// identity document, and returns a management client's broker.
func startMeasuredHost(t *testing.T, port int, policy string, m identity.Measurement) *irm.Broker {
	t.Helper()
	c, err := node.ParseConfig([]byte(fmt.Sprintf(`[node]
name = "h"
[[ipcp]]
kind = "eth"
layer = "eth"
[ipcp.eth]
qemu_listen = "127.0.0.1:%d"
[[ipcp]]
kind = "unicast"
name = "h.uni"
layer = "uni"
[ipcp.unicast]
lower = ["eth"]
bootstrap = true
admission = %q
`, port, policy)))
	if err != nil {
		t.Fatal(err)
	}
	c.Measurement = m
	brc := make(chan *irm.Broker, 1)
	n, err := node.New(c, node.Extra{Name: "client", Mgmt: true, Program: func(pd *kernel.PD) error {
		ep, err := pd.Slot("irm")
		if err != nil {
			return err
		}
		b, err := irm.OpenSession(pd.Context(), pd, ep, irm.SessionReq{})
		if err != nil {
			return err
		}
		brc <- b
		<-pd.Context().Done()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return <-brc
}
