package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ouronet/ouro/layer/ipcp"
)

// TestManagementPages: a listing the node answers a page at a time is
// fetched whole and printed as one table; a paged text (the system
// description as JSON) is joined and printed as JSON objects.
func TestManagementPages(t *testing.T) {
	const rows, per = 1000, 7
	sys := `{"components":[{"name":"irm","budget":{"bufs":64},"caps":[{"name":"irm","object":"irm.ep","rights":"RWGC"}]}],"endpoints":[{"name":"irm.ep"}]}`
	tn := newTestNet()
	tn.mgmt.answer = func(r ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		off, _ := strconv.Atoi(r.Args[ipcp.ArgOffset])
		switch r.Cmd {
		case "flows":
			resp := ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"id", "local"}}, Total: rows}
			for i := off; i < min(off+per, rows); i++ {
				resp.Table.Rows = append(resp.Table.Rows, []string{strconv.Itoa(i), fmt.Sprintf("prog%d", i)})
			}
			if off+per < rows {
				resp.Next = off + per
			}
			return resp, nil
		case "system":
			if r.Args["format"] != "json" {
				return ipcp.MgmtResp{}, fmt.Errorf("format %q", r.Args["format"])
			}
			end := min(off+50, len(sys))
			resp := ipcp.MgmtResp{Text: sys[off:end], Total: len(sys)}
			if end < len(sys) {
				resp.Next = end
			}
			return resp, nil
		case "loop":
			return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"x"}}, Next: 3}, nil
		}
		return ipcp.MgmtResp{}, nil
	}
	code, out, errs := tn.ouro(context.Background(), "flows")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != rows+1 {
		t.Fatalf("flows: exit %d, %d lines, stderr %s", code, len(lines), errs)
	}
	for i, l := range lines[1:] {
		if f := strings.Fields(l); f[0] != strconv.Itoa(i) || f[1] != fmt.Sprintf("prog%d", i) {
			t.Fatalf("flows line %d = %q", i+1, l)
		}
	}
	tn.mgmt.mu.Lock()
	n := len(tn.mgmt.reqs)
	tn.mgmt.mu.Unlock()
	if want := (rows + per - 1) / per; n != want {
		t.Errorf("%d requests, want %d (one per page)", n, want)
	}

	code, out, errs = tn.ouro(context.Background(), "--json", "system")
	var got struct {
		Components []struct {
			Name string `json:"name"`
			Caps []struct {
				Rights string `json:"rights"`
			} `json:"caps"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.Components) != 1 || got.Components[0].Caps[0].Rights != "RWGC" {
		t.Fatalf("system --json: exit %d, %v, stderr %s:\n%s", code, err, errs, out)
	}

	code, _, errs = tn.ouro(context.Background(), "ipcp", "loop", "x")
	if code != 1 || !strings.Contains(errs, "says the next starts at 3") {
		t.Errorf("a node paging in circles: exit %d, stderr %s", code, errs)
	}
}
