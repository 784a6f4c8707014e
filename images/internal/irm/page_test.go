package irm

import (
	"context"
	"errors"
	"fmt"
	"github.com/ouronet/ouro/layer/ipcp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

// fetch pages through a listing as the ouro tool does, checking that
// every page fits in a kernel message.
func fetch(t *testing.T, args map[string]string, answer func(ipcp.MgmtReq) (ipcp.MgmtResp, error)) (ipcp.MgmtResp, int) {
	t.Helper()
	codec := flow.NewCodec()
	var all ipcp.MgmtResp
	pages := 0
	for next := 0; ; {
		req := ipcp.MgmtReq{Cmd: "x", Args: map[string]string{ipcp.ArgOffset: strconv.Itoa(next)}}
		for k, v := range args {
			req.Args[k] = v
		}
		r, err := answer(req)
		if err != nil {
			t.Fatalf("page from %d: %v", next, err)
		}
		pages++
		b, err := codec.Marshal(r)
		if err != nil || len(b) > kernel.MaxPayload {
			t.Fatalf("page from %d: %d bytes (limit %d), %v", next, len(b), kernel.MaxPayload, err)
		}
		all.Table.Columns = r.Table.Columns
		all.Table.Rows = append(all.Table.Rows, r.Table.Rows...)
		all.Text += r.Text
		all.Total = r.Total
		if r.Next == 0 {
			return all, pages
		}
		if r.Next <= next {
			t.Fatalf("page from %d: next %d", next, r.Next)
		}
		next = r.Next
	}
}

func TestPagerRows(t *testing.T) {
	var rows [][]string
	for i := range 5000 {
		rows = append(rows, []string{strconv.Itoa(i), strings.Repeat("é", i%97), fmt.Sprint(i * i)})
	}
	whole := ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"id", "name", "sq"}, Rows: rows}, Text: "a note"}
	answer := func(req ipcp.MgmtReq) (ipcp.MgmtResp, error) { return pageAnswer(whole, req) }
	got, pages := fetch(t, nil, answer)
	if !slices.EqualFunc(got.Table.Rows, rows, slices.Equal) || got.Total != len(rows) || got.Text != "a note" {
		t.Fatalf("joined pages: %d rows, total %d, text %q; want %d rows", len(got.Table.Rows), got.Total, got.Text, len(rows))
	}
	if pages < 50 {
		t.Errorf("%d pages for %d rows: are pages bounded by the message size?", pages, len(rows))
	}
	t.Logf("%d rows in %d pages", len(rows), pages)

	// A limit bounds the rows of a page.
	r, err := pageAnswer(whole, ipcp.MgmtReq{Args: map[string]string{ipcp.ArgOffset: "10", ipcp.ArgLimit: "3"}})
	if err != nil || len(r.Table.Rows) != 3 || r.Table.Rows[0][0] != "10" || r.Next != 13 || r.Text != "" {
		t.Fatalf("offset 10 limit 3: %+v, %v", r, err)
	}
	// Past the end: an empty last page.
	r, err = pageAnswer(whole, ipcp.MgmtReq{Args: map[string]string{ipcp.ArgOffset: "9999"}})
	if err != nil || len(r.Table.Rows) != 0 || r.Next != 0 || r.Total != len(rows) {
		t.Fatalf("offset past the end: %+v, %v", r, err)
	}
	// A small answer is one page, unchanged.
	small := ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"a"}, Rows: [][]string{{"1"}}}}
	if r, err := pageAnswer(small, ipcp.MgmtReq{}); err != nil || r.Next != 0 || len(r.Table.Rows) != 1 {
		t.Fatalf("one row: %+v, %v", r, err)
	}
}

func TestPagerText(t *testing.T) {
	text := strings.Repeat("0123456789€ü\n", 800) // 2-, 3-byte characters across page boundaries
	answer := func(req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		r, err := pageAnswer(ipcp.MgmtResp{Text: text}, req)
		if err == nil && !utf8.ValidString(r.Text) {
			t.Fatalf("page from %s cut a character", req.Args[ipcp.ArgOffset])
		}
		return r, err
	}
	got, pages := fetch(t, nil, answer)
	if got.Text != text || got.Total != len(text) || pages < 5 {
		t.Fatalf("joined text: %d bytes in %d pages, want %d bytes", len(got.Text), pages, len(text))
	}
}

func TestPagerErrors(t *testing.T) {
	for _, v := range []string{"-1", "x", "99999999999"} {
		if _, err := pageAnswer(ipcp.MgmtResp{Text: "t"}, ipcp.MgmtReq{Args: map[string]string{ipcp.ArgOffset: v}}); !errors.Is(err, flow.ErrInvalid) {
			t.Errorf("offset %q: %v, want ErrInvalid", v, err)
		}
	}
	huge := ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"a"}, Rows: [][]string{{strings.Repeat("x", kernel.MaxPayload)}}}}
	if _, err := pageAnswer(huge, ipcp.MgmtReq{}); !errors.Is(err, flow.ErrTooBig) {
		t.Errorf("a row larger than a message: %v, want ErrTooBig", err)
	}
}

// TestReadAll checks the client side of paging: every page of a table or
// a text fetched and joined, the request's own arguments kept on every
// page, and a node whose pages do not follow each other refused.
func TestReadAll(t *testing.T) {
	ctx := t.Context()
	var rows [][]string
	for i := range 3000 {
		rows = append(rows, []string{strconv.Itoa(i), strings.Repeat("x", i%50)})
	}
	whole := ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"id", "pad"}, Rows: rows}}
	calls := 0
	m := func(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		calls++
		if req.Args["keep"] != "me" {
			t.Fatalf("page %d lost the request's own argument: %v", calls, req.Args)
		}
		return pageAnswer(whole, req)
	}
	got, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: "x", Args: map[string]string{"keep": "me"}})
	if err != nil || !slices.EqualFunc(got.Table.Rows, rows, slices.Equal) || got.Next != 0 || calls < 10 {
		t.Fatalf("ReadAll: %d rows in %d calls, next %d, %v; want %d rows", len(got.Table.Rows), calls, got.Next, err, len(rows))
	}

	text := strings.Repeat("0123456789€\n", 900)
	got, err = ipcp.ReadAll(ctx, func(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		return pageAnswer(ipcp.MgmtResp{Text: text}, req)
	}, ipcp.MgmtReq{Cmd: "x"})
	if err != nil || got.Text != text {
		t.Fatalf("ReadAll text: %d bytes, %v; want %d", len(got.Text), err, len(text))
	}

	for _, tc := range []struct {
		name string
		page func(off int) ipcp.MgmtResp
		want string
	}{
		{"backwards", func(off int) ipcp.MgmtResp {
			return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"a"}, Rows: [][]string{{"1"}}}, Next: 1}
		}, "says the next starts at 1"},
		{"other columns", func(off int) ipcp.MgmtResp {
			if off == 0 {
				return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"a"}}, Next: 5}
			}
			return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"b"}}}
		}, "has columns"},
	} {
		_, err := ipcp.ReadAll(ctx, func(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
			off, _ := strconv.Atoi(req.Args[ipcp.ArgOffset])
			return tc.page(off), nil
		}, ipcp.MgmtReq{Cmd: "x"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	boom := errors.New("boom")
	if _, err := ipcp.ReadAll(ctx, func(context.Context, ipcp.MgmtReq) (ipcp.MgmtResp, error) { return ipcp.MgmtResp{}, boom }, ipcp.MgmtReq{Cmd: "x", IPCP: "a.uni"}); !errors.Is(err, boom) || !strings.Contains(err.Error(), "x a.uni") {
		t.Errorf("a failed call: %v, want boom, naming the command", err)
	}
}
