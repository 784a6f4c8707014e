package main

import "github.com/ouronet/ouro/images/internal/node"

// imageTags returns the build tags, beyond the board's own, that a board
// image needs for the configuration cfg: ipstack_tcp when an [[ipnet]]
// netstack serves a status page, since gVisor's TCP (about 0.5 MB of an
// image, docs/benchmarks.md) is built into a board image only then
// (images/internal/ipstack). make image asks for them with router
// -image-tags; an image started with a configuration that needs a tag it
// was built without stops at once, saying so (main_tamago.go).
func imageTags(cfg *node.Config) []string {
	for _, c := range cfg.IPNets {
		if c.Netstack != "" && c.Status != 0 {
			return []string{"ipstack_tcp"}
		}
	}
	return nil
}
