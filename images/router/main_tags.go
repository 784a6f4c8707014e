package main

import "github.com/ouronet/ouro/images/internal/node"

// imageTags returns the build tags, beyond the board's own, that a board
// image needs for the configuration cfg: netstack when anything runs on
// the node's own TCP/IP stack (a UDP shim's [ipcp.udp.netstack], an
// [[ipnet]] netstack), since gVisor (about 1 MB of an image,
// docs/benchmarks.md) is built into a board image only then
// (images/internal/node, netstack_device.go); and ipstack_tcp as well when
// an [[ipnet]] netstack serves a status page, since gVisor's TCP (another
// 0.5 MB) is built in only then (images/internal/ipstack). make image asks
// for them with router -image-tags; an image started with a configuration
// that needs a tag it was built without stops at once, saying so
// (main_tamago.go).
func imageTags(cfg *node.Config) []string {
	var tags []string
	if cfg.UsesNetstack() {
		tags = append(tags, "netstack")
	}
	for _, c := range cfg.IPNets {
		if c.Netstack != "" && c.Status != 0 {
			return append(tags, "ipstack_tcp")
		}
	}
	return tags
}
