package unicast

import (
	"context"
	"math/rand/v2"
	"slices"
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
// yet (Config.Discover). An adjacency whose neighbour goes silent is
// ended by the hello/dead logic like any other, and the connection
// manager redials it with backoff until the lower layers no longer hear
// the name (its announcements expire): then it is forgotten.
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
		cands, gone := c.discoverCandidates(asked)
		if len(cands)+len(gone) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DiscoverTick)
		heard, err := p.cfg.Heard.Heard(ctx, append(cands, gone...))
		cancel()
		if err != nil {
			p.log().Warn("discover failed", "err", err)
			continue
		}
		for _, n := range gone {
			// Down, and no longer heard on any segment: stop redialling.
			if !slices.Contains(heard, n) {
				c.cm.Forget(n)
				delete(asked, n)
				c.forgotten.Add(1)
				p.log().Info("discovered neighbour no longer heard, not redialled", "peer", n)
			}
		}
		for _, n := range heard {
			if asked[n] {
				continue
			}
			if err := c.cm.Connect(n); err != nil {
				p.log().Warn("connect to discovered neighbour failed", "peer", n, "err", err)
				continue
			}
			asked[n] = true
			c.discovered.Add(1)
			p.log().Info("neighbour discovered on a lower layer's segment, connecting", "peer", n)
		}
	}
}

// discoverCandidates returns up to maxDiscover names of members that are
// neither this IPCP, nor a neighbour, nor configured, nor asked already,
// in random order so that a large layer's members all get their turn;
// and gone, the names asked before that are not neighbours now (down, or
// not up yet).
func (c *core) discoverCandidates(asked map[string]bool) (cands, gone []string) {
	skip := map[string]bool{c.p.cfg.Name: true, c.p.cfg.Enroll: true}
	for _, n := range c.p.cfg.Neighbours {
		skip[n] = true
	}
	for _, n := range c.cm.Neighbours() {
		skip[n.Name] = true
	}
	for n := range asked {
		if !skip[n] {
			gone = append(gone, n)
		}
	}
	for _, n := range c.names() {
		if n == "" || skip[n] || asked[n] {
			continue
		}
		cands = append(cands, n)
	}
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	return cands[:min(len(cands), maxDiscover)], gone
}
