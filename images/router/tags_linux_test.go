package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/tools/testnet"
)

// TestImageTags: a board image gets gVisor (the netstack tag) exactly
// when its configuration runs something on the node's own TCP/IP stack (a
// UDP shim's [ipcp.udp.netstack], an [[ipnet]] netstack), and gVisor's TCP
// (the ipstack_tcp tag) too when it serves a status page on an [[ipnet]]
// netstack; router -image-tags FILE prints what make image adds to the
// board's tags.
func TestImageTags(t *testing.T) {
	root, err := testnet.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(filepath.Join(root, "docs", "examples", "usbarmory.toml"))
	if err != nil {
		t.Fatal(err)
	}
	const netstack = "\n[[ipnet]]\nname = \"lan\"\nnetstack = \"10.77.0.9/24\"\n"
	const udpNetstack = "\n[[ipcp]]\nkind = \"udp\"\nlayer = \"ip\"\n[ipcp.udp.netstack]\nboard = true\naddrs = [\"10.0.2.15/24\"]\n"
	const udpSocket = "\n[[ipcp]]\nkind = \"udp\"\nlayer = \"ip\"\n[ipcp.udp]\naddr = \"127.0.0.1:3435\"\n"
	for _, tc := range []struct {
		name, extra string
		want        []string
	}{
		{"plain", "", nil},
		{"udp socket", udpSocket, nil},
		{"udp netstack", udpNetstack, []string{"netstack"}},
		{"ipnet netstack", netstack, []string{"netstack"}},
		{"status", netstack + "status = 80\n", []string{"netstack", "ipstack_tcp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := string(base) + tc.extra
			cfg, err := node.ParseConfig([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			if got := imageTags(cfg); !slices.Equal(got, tc.want) {
				t.Fatalf("imageTags = %q, want %q", got, tc.want)
			}
			path := filepath.Join(t.TempDir(), "node.toml")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bins.router, "-image-tags", path).Output()
			if err != nil {
				t.Fatalf("router -image-tags: %v", err)
			}
			if got, want := strings.TrimSpace(string(out)), strings.Join(tc.want, ","); got != want {
				t.Fatalf("router -image-tags printed %q, want %q", got, want)
			}
		})
	}
}
