package irm

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

// Paging. A management answer crosses kernel endpoints (IPCP → IRM →
// gateway), whose messages carry at most kernel.MaxPayload bytes, so a
// listing that does not fit (thousands of flows or names, a long system
// description) is answered a page at a time. A request asks for a page
// with Args[ArgOffset] (the first row, or byte of a text-only answer;
// default 0) and Args[ArgLimit] (at most that many rows; default: as
// many as fit). The answer's Next is the offset of the next page, 0 when
// none remains, and Total the size of the whole listing. A listing that
// changes between pages may repeat or miss rows, as any paged view. The
// ouro tool fetches every page (docs/wire/node-socket.md).
const (
	ArgOffset = "offset"
	ArgLimit  = "limit"
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
func newPager(req MgmtReq) (pager, error) {
	p := pager{budget: pageBudget, codec: flow.NewCodec()}
	for _, a := range []struct {
		key string
		dst *int
	}{{ArgOffset, &p.off}, {ArgLimit, &p.limit}} {
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
func (p pager) size(r MgmtResp) (int, error) {
	b, err := p.codec.Marshal(r)
	return len(b), err
}

// rows returns the page of a listing of total rows, row(i) making row i.
// A row too large for any page is an error.
func (p pager) rows(cols []string, total int, row func(i int) []string) (MgmtResp, error) {
	// The page without rows, with the largest Next and Total, and room
	// for the rows array's header to grow.
	used, err := p.size(MgmtResp{Table: Table{Columns: cols}, Next: math.MaxInt32, Total: math.MaxInt32})
	if err != nil {
		return MgmtResp{}, err
	}
	used += 8
	resp := MgmtResp{Table: Table{Columns: cols}, Total: total}
	i := min(p.off, total)
	for ; i < total && (p.limit == 0 || len(resp.Table.Rows) < p.limit); i++ {
		r := row(i)
		b, err := p.codec.Marshal(r)
		if err != nil {
			return MgmtResp{}, err
		}
		if used+len(b) > p.budget {
			if len(resp.Table.Rows) == 0 {
				return MgmtResp{}, fmt.Errorf("irm: row %d of %d bytes does not fit in a reply: %w", i, len(b), flow.ErrTooBig)
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
func (p pager) text(s string) (MgmtResp, error) {
	used, err := p.size(MgmtResp{Next: math.MaxInt32, Total: math.MaxInt32})
	if err != nil {
		return MgmtResp{}, err
	}
	room := p.budget - used - 9 // the text's CBOR header
	off := min(p.off, len(s))
	end := min(off+room, len(s))
	for end > off && end < len(s) && !utf8.RuneStart(s[end]) {
		end--
	}
	resp := MgmtResp{Text: s[off:end], Total: len(s)}
	if end < len(s) {
		resp.Next = end
	}
	return resp, nil
}

// page returns the page of a whole answer r: its rows, or its text when
// it has no table. An answer already paged (by the IPCP that made it) or
// with neither is returned as is; a text beside a table goes with the
// first page.
func (p pager) page(r MgmtResp) (MgmtResp, error) {
	switch {
	case r.Total != 0 || r.Next != 0:
		return r, nil
	case len(r.Table.Columns) > 0 || len(r.Table.Rows) > 0:
		q := p
		if p.off == 0 && r.Text != "" {
			// The text takes room from the first page.
			n, err := p.size(MgmtResp{Text: r.Text})
			if err != nil {
				return MgmtResp{}, err
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
func pageAnswer(r MgmtResp, req MgmtReq) (MgmtResp, error) {
	p, err := newPager(req)
	if err != nil {
		return MgmtResp{}, err
	}
	return p.page(r)
}

// MaxPages bounds the pages ReadAll fetches of one answer (a node paging
// in circles).
const MaxPages = 1 << 16

// MgmtFunc sends one management request and returns one page of its
// answer: a session's Mgmt, or a management flow's.
type MgmtFunc func(ctx context.Context, req MgmtReq) (MgmtResp, error)

// ReadAll sends req through m and fetches every page of its answer
// (docs/wire/node-socket.md): the rows of a table joined, the text of a
// text answer concatenated; at most MaxPages pages.
func ReadAll(ctx context.Context, m MgmtFunc, req MgmtReq) (MgmtResp, error) {
	return ReadPages(ctx, m, req, MaxPages)
}

// ReadPages is ReadAll with at most maxPages pages. On an error it also
// returns what the pages before it gave.
func ReadPages(ctx context.Context, m MgmtFunc, req MgmtReq, maxPages int) (MgmtResp, error) {
	what := req.Cmd
	if req.IPCP != "" {
		what += " " + req.IPCP
	}
	all, err := m(ctx, req)
	if err != nil {
		return MgmtResp{}, fmt.Errorf("%s: %w", what, err)
	}
	for next, pages := all.Next, 1; next > 0; pages++ {
		all.Next = 0
		if pages >= maxPages {
			return all, fmt.Errorf("%s: more than %d pages", what, maxPages)
		}
		r := req
		r.Args = maps.Clone(req.Args)
		if r.Args == nil {
			r.Args = map[string]string{}
		}
		r.Args[ArgOffset] = strconv.Itoa(next)
		page, err := m(ctx, r)
		if err != nil {
			return all, fmt.Errorf("%s (page %d, from %d): %w", what, pages+1, next, err)
		}
		if !slices.Equal(page.Table.Columns, all.Table.Columns) {
			return all, fmt.Errorf("%s: page %d has columns %v, the first %v", what, pages+1, page.Table.Columns, all.Table.Columns)
		}
		if page.Next != 0 && page.Next <= next {
			return all, fmt.Errorf("%s: page %d from %d says the next starts at %d", what, pages+1, next, page.Next)
		}
		all.Table.Rows = append(all.Table.Rows, page.Table.Rows...)
		if len(all.Table.Columns) == 0 {
			all.Text += page.Text
		}
		next = page.Next
	}
	all.Next = 0
	return all, nil
}
