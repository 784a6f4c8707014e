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

// TestImageTags: a board image gets gVisor's TCP (the ipstack_tcp tag)
// exactly when its configuration serves a status page on an [[ipnet]]
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
	for _, tc := range []struct {
		name, extra string
		want        []string
	}{
		{"plain", "", nil},
		{"netstack", netstack, nil},
		{"status", netstack + "status = 80\n", []string{"ipstack_tcp"}},
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
