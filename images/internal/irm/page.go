package irm

import (
	"fmt"
	"github.com/ouronet/ouro/layer/ipcp"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

// pageBudget is what an encoded answer may take: one kernel message.
const pageBudget = kernel.MaxPayload

// pager cuts one page out of a listing.
type pager struct {
	off, limit int
	budget     int
	codec      flow.Codec
}

// newPager reads the page req asks for.
func newPager(req ipcp.MgmtReq) (pager, error) {
	p := pager{budget: pageBudget, codec: flow.NewCodec()}
	for _, a := range []struct {
		key string
		dst *int
	}{{ipcp.ArgOffset, &p.off}, {ipcp.ArgLimit, &p.limit}} {
		s, ok := req.Args[a.key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > math.MaxInt32 {
			return p, fmt.Errorf("irm: %s %s=%q: want a number from 0: %w", req.Cmd, a.key, s, flow.ErrInvalid)
		}
		*a.dst = n
	}
	return p, nil
}

// size is the encoded size of r.
func (p pager) size(r ipcp.MgmtResp) (int, error) {
	b, err := p.codec.Marshal(r)
	return len(b), err
}

// rows returns the page of a listing of total rows, row(i) making row i.
// A row too large for any page is an error.
func (p pager) rows(cols []string, total int, row func(i int) []string) (ipcp.MgmtResp, error) {
	// The page without rows, with the largest Next and Total, and room
	// for the rows array's header to grow.
	used, err := p.size(ipcp.MgmtResp{Table: ipcp.Table{Columns: cols}, Next: math.MaxInt32, Total: math.MaxInt32})
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	used += 8
	resp := ipcp.MgmtResp{Table: ipcp.Table{Columns: cols}, Total: total}
	i := min(p.off, total)
	for ; i < total && (p.limit == 0 || len(resp.Table.Rows) < p.limit); i++ {
		r := row(i)
		b, err := p.codec.Marshal(r)
		if err != nil {
			return ipcp.MgmtResp{}, err
		}
		if used+len(b) > p.budget {
			if len(resp.Table.Rows) == 0 {
				return ipcp.MgmtResp{}, fmt.Errorf("irm: row %d of %d bytes does not fit in a reply: %w", i, len(b), flow.ErrTooBig)
			}
			break
		}
		used += len(b)
		resp.Table.Rows = append(resp.Table.Rows, r)
	}
	if i < total {
		resp.Next = i
	}
	return resp, nil
}

// text returns the page of a text-only answer: as many bytes from the
// offset as fit, cut at a character boundary.
func (p pager) text(s string) (ipcp.MgmtResp, error) {
	used, err := p.size(ipcp.MgmtResp{Next: math.MaxInt32, Total: math.MaxInt32})
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	room := p.budget - used - 9 // the text's CBOR header
	off := min(p.off, len(s))
	end := min(off+room, len(s))
	for end > off && end < len(s) && !utf8.RuneStart(s[end]) {
		end--
	}
	resp := ipcp.MgmtResp{Text: s[off:end], Total: len(s)}
	if end < len(s) {
		resp.Next = end
	}
	return resp, nil
}

// page returns the page of a whole answer r: its rows, or its text when
// it has no table. An answer already paged (by the IPCP that made it) or
// with neither is returned as is; a text beside a table goes with the
// first page.
func (p pager) page(r ipcp.MgmtResp) (ipcp.MgmtResp, error) {
	switch {
	case r.Total != 0 || r.Next != 0:
		return r, nil
	case len(r.Table.Columns) > 0 || len(r.Table.Rows) > 0:
		q := p
		if p.off == 0 && r.Text != "" {
			// The text takes room from the first page.
			n, err := p.size(ipcp.MgmtResp{Text: r.Text})
			if err != nil {
				return ipcp.MgmtResp{}, err
			}
			q.budget -= n
		}
		out, err := q.rows(r.Table.Columns, len(r.Table.Rows), func(i int) []string { return r.Table.Rows[i] })
		if p.off == 0 {
			out.Text = r.Text
		}
		return out, err
	case r.Text != "":
		return p.text(r.Text)
	}
	return r, nil
}

// pageAnswer pages an IPCP's answer to req (ServeIPCP).
func pageAnswer(r ipcp.MgmtResp, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	p, err := newPager(req)
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	return p.page(r)
}
