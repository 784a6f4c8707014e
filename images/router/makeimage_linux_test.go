package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

// TestMakeImageChecksConfig runs "make image CONFIG=..." with a missing and
// with an invalid file: make must fail with the reason, before building
// anything (it once printed a base64 error, built an image without the
// configuration and exited 0).
func TestMakeImageChecksConfig(t *testing.T) {
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("SKIP: make not installed")
	}
	root, err := testnet.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("[node]\nname = \"a\"\n[[ipcp]]\nkind = \"udp\"\n[ipcp.udp]\nadr = \"127.0.0.1:3435\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	elf := filepath.Join(root, "bin", "router-usbarmory.elf")
	before, _ := os.Stat(elf)
	for _, tc := range []struct {
		name, config string
		want         []string
	}{
		{"missing", filepath.Join(t.TempDir(), "missing.toml"), []string{"missing.toml: no such file: no image built"}},
		{"invalid", bad, []string{
			bad + `:6: [ipcp.udp] of [[ipcp]] #1: unknown key "adr"; did you mean "addr"?`,
			"is not a valid node configuration (docs/config.md): no image built",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, mk, "--no-print-directory", "-C", root, "image", "BOARD=usbarmory",
				"CONFIG="+tc.config, "CONFIG_CHECKER="+bins.router)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err == nil {
				t.Fatalf("make image CONFIG=%s succeeded:\n%s", tc.config, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("make output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "tamago build") {
				t.Errorf("make went on to build:\n%s", out.String())
			}
		})
	}
	after, _ := os.Stat(elf)
	if after != nil && (before == nil || !after.ModTime().Equal(before.ModTime())) {
		t.Errorf("%s was written", elf)
	}
}
