package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
)

// conn is an allocated flow as the measurement commands use it: whole
// SDUs with deadlines. Every flow the tool opens or accepts goes through
// allocFlow and acceptFlow, so what sits under it changes here only.
type conn interface {
	probe.Conn
	Close() error
}

// flowConn adapts a *flow.Flow (net.Conn-style deadlines) to probe.Conn
// (a deadline per call, as flow.Port has). The flow runs FRCT when its
// QoS asks for ordering or reliability (data, voice, video), and passes
// SDUs straight through otherwise (raw, best_effort). Its batch calls
// (flow.Flow's ReadBatch and WriteBatch) let perf and echo move a run of
// SDUs per call; its in-place calls (WriteWith, ReadWith) let ping write
// its pings and read their replies in a hosted node's shared rings.
type flowConn struct{ f *flow.Flow }

var (
	_ conn                = flowConn{}
	_ probe.BatchReader   = flowConn{}
	_ probe.BatchWriter   = flowConn{}
	_ probe.InPlaceWriter = flowConn{}
	_ probe.InPlaceReader = flowConn{}
	_ probe.SDULimiter    = flowConn{}
)

func (c flowConn) Read(p []byte, deadline time.Time) (int, error) {
	c.f.SetReadDeadline(deadline)
	return c.f.Read(p)
}

func (c flowConn) Write(p []byte, deadline time.Time) error {
	c.f.SetWriteDeadline(deadline)
	_, err := c.f.Write(p)
	return err
}

func (c flowConn) ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error) {
	c.f.SetReadDeadline(deadline)
	return c.f.ReadBatch(bufs, sizes)
}

func (c flowConn) WriteBatch(sdus [][]byte, deadline time.Time) (int, error) {
	c.f.SetWriteDeadline(deadline)
	return c.f.WriteBatch(sdus)
}

// WriteWith implements probe.InPlaceWriter: the flow's in-place write
// (over a hosted node's shared rings, the SDU is written into the ring).
func (c flowConn) WriteWith(n int, fill func(sdu []byte), deadline time.Time) error {
	c.f.SetWriteDeadline(deadline)
	return c.f.WriteWith(n, fill)
}

// ReadWith implements probe.InPlaceReader: the flow's in-place read
// (over a hosted node's shared rings, use gets the SDU in the ring).
func (c flowConn) ReadWith(use func(sdu []byte), deadline time.Time) error {
	c.f.SetReadDeadline(deadline)
	return c.f.ReadWith(use)
}

func (c flowConn) Close() error { return c.f.Close() }

// MaxSDU implements probe.SDULimiter: the flow's own limit.
func (c flowConn) MaxSDU() int { return c.f.MaxSDU() }

// newFlow wraps a port the broker handed out.
func newFlow(p flow.Port, info flow.Info) (flowConn, error) {
	f, err := flow.New(p, info)
	if err != nil {
		p.Close()
		return flowConn{}, err
	}
	return flowConn{f}, nil
}

// allocFlow allocates a flow to name with QoS q. maxSDU is the largest
// SDU it carries (less than flow.MaxSDU when FRCT adds its header).
func allocFlow(ctx context.Context, b flow.Broker, name string, q flow.QoS) (c conn, info flow.Info, maxSDU int, err error) {
	p, info, err := b.Alloc(ctx, name, q)
	if err != nil {
		return nil, flow.Info{}, 0, fmt.Errorf("alloc %q: %w", name, err)
	}
	fc, err := newFlow(p, info)
	if err != nil {
		return nil, flow.Info{}, 0, fmt.Errorf("alloc %q: %w", name, err)
	}
	return fc, info, fc.f.MaxSDU(), nil
}

// acceptFlow waits for a flow to one of the names bound on b.
func acceptFlow(ctx context.Context, b flow.Broker) (conn, flow.Info, error) {
	p, info, err := b.Accept(ctx)
	if err != nil {
		return nil, flow.Info{}, err
	}
	fc, err := newFlow(p, info)
	if err != nil {
		return nil, flow.Info{}, err
	}
	return fc, info, nil
}

// qosName names a QoS spec by the cube it maps to (the preset names).
func qosName(q flow.QoS) string { return q.Cube().String() }
