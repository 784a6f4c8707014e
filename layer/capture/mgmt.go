package capture

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// Cmd is the management command of every IPCP that has a Point:
//
//	capture op=start [snap=N] [slots=N] [idle=MS] [dir=in|out] [port=N]
//	capture op=read      a page of records (base64 in Text) and the counters
//	capture op=stop      disarm; the answer is the final counters
//
// A read answer always fits one management message (MaxPage bytes of
// records); its table's "pending" row says whether more wait.
const Cmd = "capture"

// Args of Cmd.
const (
	ArgOp    = "op"
	ArgSnap  = "snap"
	ArgSlots = "slots"
	ArgIdle  = "idle"
	ArgDir   = "dir"
	ArgPort  = "port"
)

// Ops of Cmd.
const (
	OpStart = "start"
	OpRead  = "read"
	OpStop  = "stop"
)

// ParseArgs reads a capture's configuration from a start command's
// arguments.
func ParseArgs(args map[string]string) (Config, error) {
	var c Config
	num := func(k string, max uint64) (uint64, bool, error) {
		v, ok := args[k]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > max {
			return 0, false, fmt.Errorf("capture: %s=%q: want a number up to %d: %w", k, v, max, flow.ErrInvalid)
		}
		return n, true, nil
	}
	n, _, err := num(ArgSnap, MaxSnap)
	if err != nil {
		return c, err
	}
	c.Snap = int(n)
	if n, _, err = num(ArgSlots, MaxSlots); err != nil {
		return c, err
	}
	c.Slots = int(n)
	if n, _, err = num(ArgIdle, 3600_000); err != nil {
		return c, err
	}
	c.Idle = time.Duration(n) * time.Millisecond
	if c.Filter.Port, c.Filter.HasPort, err = num(ArgPort, ^uint64(0)); err != nil {
		return c, err
	}
	switch v := args[ArgDir]; v {
	case "", "any", "both":
	case "in":
		c.Filter.Dir, c.Filter.HasDir = In, true
	case "out":
		c.Filter.Dir, c.Filter.HasDir = Out, true
	default:
		return c, fmt.Errorf("capture: dir=%q: want in, out or any: %w", v, flow.ErrInvalid)
	}
	return c, nil
}

// Columns of a capture answer's table.
var counterColumns = []string{"counter", "value"}

func counters(s *Session) ipcp.Table {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return ipcp.Table{Columns: counterColumns, Rows: [][]string{
		{"kept", u(s.Kept.Load())},
		{"dropped", u(s.Dropped.Load())},
		{"filtered", u(s.Filtered.Load())},
		{"pending", strconv.Itoa(s.Pending())},
		{"layer", s.layer.String()},
	}}
}

// Mgmt answers the capture command at p, the point of the IPCP called
// who, of kind l.
func (p *Point) Mgmt(who string, l Layer, args map[string]string) (ipcp.MgmtResp, error) {
	switch op := args[ArgOp]; op {
	case OpStart:
		cfg, err := ParseArgs(args)
		if err != nil {
			return ipcp.MgmtResp{}, err
		}
		s, err := p.Start(l, cfg)
		if err != nil {
			return ipcp.MgmtResp{}, fmt.Errorf("%s: %w", who, err)
		}
		s.read.Store(int64(time.Since(s.epoch)))
		return ipcp.MgmtResp{Table: counters(s)}, nil
	case OpRead:
		s := p.Session()
		if s == nil {
			return ipcp.MgmtResp{}, fmt.Errorf("%s: %w", who, ErrNotRunning)
		}
		page, _ := s.Drain(make([]byte, 0, MaxPage), MaxPage)
		return ipcp.MgmtResp{Table: counters(s), Text: base64.StdEncoding.EncodeToString(page)}, nil
	case OpStop:
		s := p.Stop()
		if s == nil {
			return ipcp.MgmtResp{}, fmt.Errorf("%s: %w", who, ErrNotRunning)
		}
		return ipcp.MgmtResp{Table: counters(s)}, nil
	default:
		return ipcp.MgmtResp{}, fmt.Errorf("%s: capture op=%q: want start, read or stop: %w", who, op, flow.ErrInvalid)
	}
}
