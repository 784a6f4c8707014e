package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer/ipcp"
)

// defaultMgmtTimeout bounds a management call unless --timeout says
// otherwise; enrollment may take a while, so it is generous.
const defaultMgmtTimeout = 30 * time.Second

// mgmt sends req to the node and returns its answer.
func (a *app) mgmt(ctx context.Context, req ipcp.MgmtReq, timeout time.Duration) (ipcp.MgmtResp, error) {
	n, err := a.connect()
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return ipcp.ReadAll(ctx, nodeMgmt(n), req)
}

// mgmtJSON is the --json shape of every management answer: the table's
// columns in order, its rows as objects keyed by column, and the text.
type mgmtJSON struct {
	Columns []string            `json:"columns"`
	Rows    []map[string]string `json:"rows"`
	Text    string              `json:"text"`
}

// printResp prints a management answer: the table aligned under upper-case
// column headings, then the text; or, with --json, mgmtJSON.
func (a *app) printResp(r ipcp.MgmtResp) error {
	if a.json {
		j := mgmtJSON{Columns: r.Table.Columns, Rows: r.Table.RowMaps(), Text: r.Text}
		if j.Columns == nil {
			j.Columns = []string{}
		}
		return a.printJSON(j)
	}
	if len(r.Table.Columns) > 0 {
		tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(r.Table.Columns, "\t")))
		for _, row := range r.Table.Rows {
			cells := make([]string, len(row))
			for i, c := range row {
				if c == "" {
					c = "-"
				}
				cells[i] = c
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r.Text != "" {
		fmt.Fprint(a.stdout, r.Text)
		if !strings.HasSuffix(r.Text, "\n") {
			fmt.Fprintln(a.stdout)
		}
	}
	return nil
}

// timeoutFlag adds --timeout for a management call.
func timeoutFlag(fs *flagSet, p *time.Duration) {
	fs.durationVar(p, defaultMgmtTimeout, "give up on the node's answer after `D`", "timeout")
}

// runTableCmd runs a management command without arguments: ipcps, names, flows.
func runTableCmd(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var timeout time.Duration
	timeoutFlag(fs, &timeout)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	resp, err := a.mgmt(ctx, ipcp.MgmtReq{Cmd: cmd.name}, timeout)
	if err != nil {
		return err
	}
	return a.printResp(resp)
}

// runReg runs reg and unreg.
func runReg(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		layer   string
		timeout time.Duration
	)
	fs.stringVar(&layer, "", "act in layer `L` (a layer or IPCP name); default every layer", "layer", "l")
	timeoutFlag(fs, &timeout)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	resp, err := a.mgmt(ctx, ipcp.MgmtReq{Cmd: cmd.name, Name: pos[0], Layer: layer}, timeout)
	if err != nil {
		return err
	}
	return a.printResp(resp)
}

// runCreate creates an IPCP: ouro create KIND NAME LAYER [--config TOML].
func runCreate(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		config, bufs string
		timeout      time.Duration
	)
	fs.stringVar(&config, "", "the IPCP's configuration `TOML` (the body of its [ipcp.KIND] table)", "config", "c")
	fs.stringVar(&bufs, "", "the IPCP's packet-buffer budget `N` (default 4096)", "bufs")
	timeoutFlag(fs, &timeout)
	pos, err := fs.parse(args, 3, 3)
	if err != nil {
		return err
	}
	req := ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: pos[1], Layer: pos[2], Args: map[string]string{"kind": pos[0]}}
	if config != "" {
		req.Args["config"] = config
	}
	if bufs != "" {
		req.Args["bufs"] = bufs
	}
	resp, err := a.mgmt(ctx, req, timeout)
	if err != nil {
		return err
	}
	return a.printResp(resp)
}

// runDestroy stops an IPCP created at run time: ouro destroy NAME.
func runDestroy(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var timeout time.Duration
	timeoutFlag(fs, &timeout)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	resp, err := a.mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: pos[0]}, timeout)
	if err != nil {
		return err
	}
	return a.printResp(resp)
}

// runSystem prints the system description.
func runSystem(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		format  string
		timeout time.Duration
	)
	fs.stringVar(&format, "table", "output `FORMAT`: table, dot (Graphviz), mermaid or json (the default with --json)", "format", "f")
	timeoutFlag(fs, &timeout)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	switch format {
	case "table", "dot", "mermaid", "json":
	default:
		return usagef("system: --format %q: want table, dot, mermaid or json", format)
	}
	if a.json && format == "table" {
		format = "json" // the description as data, not a text table
	}
	resp, err := a.mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdSystem, Args: map[string]string{"format": format}}, timeout)
	if err != nil {
		return err
	}
	if format == "json" {
		var sys json.RawMessage
		if err := json.Unmarshal([]byte(resp.Text), &sys); err != nil {
			return fmt.Errorf("system: the node's description is not JSON: %w", err)
		}
		return a.printJSON(sys)
	}
	return a.printResp(resp)
}

// runIPCP passes a command through to an IPCP: ouro ipcp CMD IPCP [k=v...].
func runIPCP(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var timeout time.Duration
	timeoutFlag(fs, &timeout)
	pos, err := fs.parse(args, 2, -1)
	if err != nil {
		return err
	}
	return a.ipcpCmd(ctx, pos[0], pos[1], pos[2:], timeout)
}

// runGraph runs "ouro graph IPCP [--format dot|mermaid]".
func runGraph(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		format  string
		timeout time.Duration
	)
	fs.stringVar(&format, "dot", "output `FORMAT`: dot (Graphviz) or mermaid", "format", "f")
	timeoutFlag(fs, &timeout)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if format != "dot" && format != "mermaid" {
		return usagef("graph: --format %q: want dot or mermaid", format)
	}
	resp, err := a.mgmt(ctx, ipcp.MgmtReq{Cmd: "graph", IPCP: pos[0], Args: map[string]string{"format": format}}, timeout)
	if err != nil {
		return err
	}
	return a.printResp(resp)
}

// runCRLPush runs "ouro crl IPCP FILE": the IPCP's "crl" command with the
// file's bytes.
func runCRLPush(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var timeout time.Duration
	timeoutFlag(fs, &timeout)
	pos, err := fs.parse(args, 2, 2)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(pos[1])
	if err != nil {
		return err
	}
	if _, err := identity.DecodeCRL(b); err != nil {
		return fmt.Errorf("%s: %w", pos[1], err)
	}
	return a.ipcpCmd(ctx, "crl", pos[0], []string{"crl=" + base64.StdEncoding.EncodeToString(b)}, timeout)
}

// runIPCPShortcut runs "ouro CMD IPCP [k=v...]" as "ouro ipcp CMD IPCP ...".
func runIPCPShortcut(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var timeout time.Duration
	timeoutFlag(fs, &timeout)
	pos, err := fs.parse(args, 1, -1)
	if err != nil {
		return err
	}
	return a.ipcpCmd(ctx, cmd.name, pos[0], pos[1:], timeout)
}

func (a *app) ipcpCmd(ctx context.Context, cmd, proc string, kv []string, timeout time.Duration) error {
	m, err := keyValues(kv)
	if err != nil {
		return err
	}
	req := ipcp.MgmtReq{Cmd: cmd, IPCP: proc, Args: m, Name: m["name"], Layer: m["layer"]}
	resp, err := a.mgmt(ctx, req, timeout)
	if err != nil {
		return err
	}
	return a.printResp(resp)
}
