package main

import (
	"context"
	"fmt"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/tools/ouro/internal/probe"
)

// conn is an allocated flow as the measurement commands use it: whole
// SDUs with deadlines. Every flow the tool opens or accepts goes through
// allocFlow and acceptFlow, so what sits under it (the broker's bare Port
// today; a *flow.Flow with FRCT once flow.Client is in the tree) changes
// in this file only.
type conn interface {
	probe.Conn
	Close() error
}

// allocFlow allocates a flow to name with QoS q.
func allocFlow(ctx context.Context, b flow.Broker, name string, q flow.QoS) (conn, flow.Info, error) {
	p, info, err := b.Alloc(ctx, name, q)
	if err != nil {
		return nil, flow.Info{}, fmt.Errorf("alloc %q: %w", name, err)
	}
	return p, info, nil
}

// acceptFlow waits for a flow to one of the names bound on b.
func acceptFlow(ctx context.Context, b flow.Broker) (conn, flow.Info, error) {
	p, info, err := b.Accept(ctx)
	if err != nil {
		return nil, flow.Info{}, err
	}
	return p, info, nil
}

// qosName names a QoS spec by the cube it maps to (the preset names).
func qosName(q flow.QoS) string { return q.Cube().String() }
