package unicast

import (
	"context"
	"math/rand/v2"
	"time"
)

// Hearer tells which of a list of IPCP names the IPCP can reach directly
// over one of its lower layers without being told where they are: in a
// node, the names its lower Ethernet shims heard announced on their
// segments (the shims' "heard" management command, through the IRM).
type Hearer interface {
	Heard(ctx context.Context, names []string) ([]string, error)
}

// maxDiscover bounds the names asked about in one discovery round.
const maxDiscover = 64

// discoverLoop connects, every Config.DiscoverTick, to the members of the
// layer that a lower layer heard announced and that are not neighbours
// yet (Config.Discover). It only adds adjacencies: one whose neighbour
// goes silent is ended by the hello/dead logic like any other, and the
// connection manager keeps redialling it with backoff.
func (c *core) discoverLoop() {
	defer c.wg.Done()
	p := c.p
	t := time.NewTicker(p.cfg.DiscoverTick)
	defer t.Stop()
	asked := make(map[string]bool) // names handed to the connection manager
	for {
		select {
		case <-c.ctlStop:
			return
		case <-t.C:
		}
		cands := c.discoverCandidates(asked)
		if len(cands) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DiscoverTick)
		heard, err := p.cfg.Heard.Heard(ctx, cands)
		cancel()
		if err != nil {
			p.logf("discover: %v", err)
			continue
		}
		for _, n := range heard {
			if err := c.cm.Connect(n); err != nil {
				p.logf("discover: connect %s: %v", n, err)
				continue
			}
			asked[n] = true
			c.discovered.Add(1)
			p.logf("discover: %s is on a lower layer's segment: connecting", n)
		}
	}
}

// discoverCandidates returns up to maxDiscover names of members that are
// neither this IPCP, nor a neighbour, nor asked already, in random order
// so that a large layer's members all get their turn.
func (c *core) discoverCandidates(asked map[string]bool) []string {
	skip := make(map[string]bool)
	for _, n := range c.cm.Neighbours() {
		skip[n.Name] = true
	}
	var out []string
	for _, n := range c.names() {
		if n == "" || n == c.p.cfg.Name || skip[n] || asked[n] {
			continue
		}
		out = append(out, n)
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(len(out), maxDiscover)]
}
