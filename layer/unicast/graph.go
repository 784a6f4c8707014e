package unicast

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// CmdGraph prints the layer's topology as this member's link-state
// database knows it: args format=dot (Graphviz, the default) or mermaid.
const CmdGraph = "graph"

// graph returns the layer's topology in format: one node per member (its
// name and address), one edge per adjacency both ends announce, labelled
// with its metric (two metrics if the ends differ); an adjacency only one
// end announces is drawn dashed (it carries no traffic).
func (c *core) graph(format string) (string, error) {
	db := c.router.Database()
	names := c.names()
	links := make(map[[2]layer.Addr]uint32, 4*len(db))
	for _, l := range db {
		for _, k := range l.Links {
			links[[2]layer.Addr{l.Origin, k.Neighbour}] = k.Metric
		}
	}
	type edge struct {
		a, b   layer.Addr
		ab, ba uint32 // 0: not announced
	}
	var edges []edge
	for k, m := range links {
		a, b := k[0], k[1]
		if back, ok := links[[2]layer.Addr{b, a}]; ok {
			if a < b {
				edges = append(edges, edge{a, b, m, back})
			}
			continue
		}
		edges = append(edges, edge{a, b, m, 0})
	}
	slices.SortFunc(edges, func(x, y edge) int {
		if c := cmpAddr(x.a, y.a); c != 0 {
			return c
		}
		return cmpAddr(x.b, y.b)
	})
	label := func(a layer.Addr) string {
		if n := names[a]; n != "" {
			return fmt.Sprintf("%s (%d)", n, a)
		}
		return fmt.Sprint(a)
	}
	metric := func(e edge) string {
		if e.ba == 0 || e.ab == e.ba {
			return fmt.Sprint(e.ab)
		}
		return fmt.Sprintf("%d/%d", e.ab, e.ba)
	}
	var b strings.Builder
	switch format {
	case "", "dot":
		fmt.Fprintf(&b, "graph %q {\n", c.lc.Layer)
		for _, l := range db {
			self := ""
			if l.Origin == c.self {
				self = ", style=bold"
			}
			fmt.Fprintf(&b, "  n%d [label=%q%s];\n", l.Origin, label(l.Origin), self)
		}
		for _, e := range edges {
			style := ""
			if e.ba == 0 {
				style = ", style=dashed"
			}
			fmt.Fprintf(&b, "  n%d -- n%d [label=%q%s];\n", e.a, e.b, metric(e), style)
		}
		b.WriteString("}\n")
	case "mermaid":
		b.WriteString("graph LR\n")
		for _, l := range db {
			fmt.Fprintf(&b, "  n%d[%q]\n", l.Origin, label(l.Origin))
		}
		for _, e := range edges {
			arrow := "---"
			if e.ba == 0 {
				arrow = "-.-"
			}
			fmt.Fprintf(&b, "  n%d %s|%s| n%d\n", e.a, arrow, metric(e), e.b)
		}
	default:
		return "", fmt.Errorf("unicast: graph: format %q (want dot or mermaid): %w", format, flow.ErrInvalid)
	}
	return b.String(), nil
}

func cmpAddr(x, y layer.Addr) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
