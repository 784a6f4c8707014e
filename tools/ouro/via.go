package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ouronet/ouro/images/mgmtflow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// viaNode is a node reached over a management flow: the local node
// allocated a sealed flow to the remote node's management application
// ([[app]] kind = "mgmt", images/mgmtflow), and every management command
// goes over it. The remote node answers read-only commands only.
type viaNode struct {
	node // the local node, which carries the flow
	flowMgmt
}

// flowMgmt asks management commands over one management flow.
type flowMgmt struct {
	c    *mgmtflow.Client
	name string // the management name
}

// Mgmt sends req over the flow.
func (v flowMgmt) Mgmt(ctx context.Context, req, resp any) error {
	r, ok := req.(ipcp.MgmtReq)
	out, isResp := resp.(*ipcp.MgmtResp)
	if !ok || !isResp {
		return fmt.Errorf("via %s: request %T, answer %T: want ipcp.MgmtReq and *ipcp.MgmtResp", v.name, req, resp)
	}
	got, err := v.c.Mgmt(ctx, r)
	if err != nil {
		return fmt.Errorf("via %s: %w", v.name, err)
	}
	*out = got
	return nil
}

// Mgmt implements node: req over the flow.
func (v *viaNode) Mgmt(ctx context.Context, req, resp any) error {
	return v.flowMgmt.Mgmt(ctx, req, resp)
}

// Close ends the management flow and the session with the local node.
func (v *viaNode) Close() error {
	return errors.Join(v.c.Close(), v.node.Close())
}

// dialVia opens a session with the local node and a management flow
// from it to name.
func (a *app) dialVia(ctx context.Context, name string) (node, error) {
	n, err := a.connectLocal()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, defaultMgmtTimeout)
	defer cancel()
	c, err := mgmtflow.Dial(ctx, n, name)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("%w (is a \"mgmt\" app serving %s there, with this node's id among its peers?)", err, name)
	}
	return &viaNode{node: n, flowMgmt: flowMgmt{c: c, name: name}}, nil
}

func statusCommand() *command {
	return &command{name: "status", group: "management", summary: "print a remote node's status page as JSON (with --via)", run: runStatus,
		help: "Asks the \"mgmt\" app serving --via NAME for its node's status page\n" +
			"(identity, IPCPs, names, flows, every IPCP's counters) as JSON. A\n" +
			"hosted node serves the same page over HTTP ([node] metrics)."}
}

func runStatus(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var timeout time.Duration
	timeoutFlag(fs, &timeout)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	if a.via == "" {
		return usagef("status: needs --via NAME (a hosted node serves its status page over HTTP: [node] metrics)")
	}
	resp, err := a.mgmt(ctx, ipcp.MgmtReq{Cmd: mgmtflow.CmdStatus, Args: map[string]string{"format": "json"}}, timeout)
	if err != nil {
		return err
	}
	var page json.RawMessage
	if err := json.Unmarshal([]byte(resp.Text), &page); err != nil {
		return fmt.Errorf("status: the node's page is not JSON: %w", err)
	}
	return a.printJSON(page)
}
