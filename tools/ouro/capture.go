package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/capture/pcapng"
	"github.com/ouronet/ouro/layer/ipcp"
)

func captureCommand() *command {
	return &command{name: "capture", args: "IPCP [-w FILE] [-c N] [-t D] [in|out] [port N]", group: "management",
		summary: "record the packets entering and leaving an IPCP or shim", run: runCapture,
		help: "Arms a capture at the IPCP named IPCP (unicast: the PDUs on its N-1\n" +
			"data-transfer flows; broadcast: the packets on its neighbours' flows;\n" +
			"udp and eth shims: every SDU and control message, without the shim\n" +
			"header) and prints a line per packet, or with -w writes\n" +
			"them to a pcapng file (link type USER0, docs/wire/capture.md) for\n" +
			"Wireshark or tshark with tools/wireshark/ouro.lua. It stops after -c\n" +
			"packets, after -t, or when interrupted. The filter keeps one direction\n" +
			"(in, out) and/or one port (unicast: N-1 port id; shims: endpoint id).\n" +
			"The node copies at most --snap bytes of each packet into a ring of\n" +
			"--slots records and counts what it drops when the ring is full."}
}

// captureFilter parses the filter words: in, out, port N (or eid N).
func captureFilter(words []string, args map[string]string) error {
	for i := 0; i < len(words); i++ {
		switch w := words[i]; w {
		case "in", "out":
			if _, ok := args[capture.ArgDir]; ok {
				return usagef("capture: two directions in the filter")
			}
			args[capture.ArgDir] = w
		case "port", "eid", "flow":
			if i+1 == len(words) {
				return usagef("capture: %s needs a number", w)
			}
			if _, err := strconv.ParseUint(words[i+1], 10, 64); err != nil {
				return usagef("capture: %s %q: want a number", w, words[i+1])
			}
			args[capture.ArgPort] = words[i+1]
			i++
		default:
			return usagef("capture: filter word %q: want in, out or port N", w)
		}
	}
	return nil
}

func runCapture(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		file         string
		count        int
		dur          time.Duration
		snap, slots  int
		pollInterval time.Duration
	)
	fs.stringVar(&file, "", "write the packets to the pcapng `FILE` instead of printing them", "w", "write")
	fs.intVar(&count, 0, "stop after `N` packets (0: no limit)", "c", "count")
	fs.durationVar(&dur, 0, "stop after `D` (0: no limit)", "t", "duration")
	fs.intVar(&snap, capture.DefaultSnap, fmt.Sprintf("keep at most `BYTES` of each packet (1 to %d)", capture.MaxSnap), "snap")
	fs.intVar(&slots, capture.DefaultSlots, fmt.Sprintf("the node's ring holds `N` packets (1 to %d)", capture.MaxSlots), "slots")
	fs.durationVar(&pollInterval, 50*time.Millisecond, "ask the node for packets every `D` when it has none", "poll")
	pos, err := fs.parse(args, 1, -1)
	if err != nil {
		return err
	}
	if count < 0 || dur < 0 || snap < 1 || snap > capture.MaxSnap || slots < 1 || slots > capture.MaxSlots || pollInterval <= 0 {
		return usagef("capture: -c, -t, --snap, --slots or --poll out of range")
	}
	proc := pos[0]
	start := map[string]string{capture.ArgOp: capture.OpStart, capture.ArgSnap: strconv.Itoa(snap), capture.ArgSlots: strconv.Itoa(slots)}
	if err := captureFilter(pos[1:], start); err != nil {
		return err
	}
	var w *pcapng.Writer
	if file != "" {
		f, err := os.Create(file)
		if err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		defer f.Close()
		w = pcapng.NewWriter(f, "ouro capture")
		defer w.Flush()
	}
	n, err := a.connect()
	if err != nil {
		return err
	}
	defer n.Close()
	call := func(ctx context.Context, op map[string]string) (ipcp.MgmtResp, error) {
		cctx, cancel := context.WithTimeout(ctx, defaultMgmtTimeout)
		defer cancel()
		var r ipcp.MgmtResp
		err := n.Mgmt(cctx, ipcp.MgmtReq{Cmd: capture.Cmd, IPCP: proc, Args: op}, &r)
		if err != nil {
			err = fmt.Errorf("capture %s: %w", proc, err)
		}
		return r, err
	}
	if _, err := call(ctx, start); err != nil {
		return err
	}
	var (
		got      int
		last     ipcp.MgmtResp
		progress time.Time
	)
	defer func() {
		// Disarm even if ctx is done (interrupted).
		if r, err := call(context.Background(), map[string]string{capture.ArgOp: capture.OpStop}); err == nil {
			last = r
		}
		fmt.Fprintf(a.stderr, "%s%d packets captured at %s; the node dropped %s (ring full)\n",
			map[bool]string{true: "\r", false: ""}[a.stderrTTY && w != nil], got, proc, counterOf(last, "dropped"))
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if dur > 0 {
		ctx, cancel = context.WithTimeout(ctx, dur)
		defer cancel()
	}
	read := map[string]string{capture.ArgOp: capture.OpRead}
	for count == 0 || got < count {
		r, err := call(ctx, read)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		last = r
		page, err := base64.StdEncoding.DecodeString(r.Text)
		if err != nil {
			return fmt.Errorf("capture %s: page: %w", proc, err)
		}
		recs, err := capture.DecodePage(page)
		if err != nil {
			return fmt.Errorf("capture %s: %w", proc, err)
		}
		for _, rec := range recs {
			if count > 0 && got == count {
				break
			}
			got++
			if w != nil {
				if err := w.Write(proc, rec); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintln(a.stdout, formatRecord(rec))
		}
		if w != nil && a.stderrTTY && time.Since(progress) > 500*time.Millisecond {
			progress = time.Now()
			fmt.Fprintf(a.stderr, "\r%d packets, %s dropped by the node", got, counterOf(r, "dropped"))
		}
		if len(recs) == 0 || counterOf(r, "pending") == "0" {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pollInterval):
			}
		}
	}
	return nil
}

// counterOf reads a row of a capture answer's counter table.
func counterOf(r ipcp.MgmtResp, name string) string {
	for _, row := range r.Table.Rows {
		if len(row) == 2 && row[0] == name {
			return row[1]
		}
	}
	return "?"
}

// formatRecord is a packet's line: time, direction, where, length and
// the first header's fields.
func formatRecord(r capture.Record) string {
	h := r.Header
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-3s %s ", r.Time.Format("15:04:05.000000"), h.Dir(), h.Layer())
	d := r.Data
	switch h.Content() {
	case capture.PDU:
		fmt.Fprintf(&b, "port %d len %d", h.Port(), r.Len)
		if len(d) >= 19 {
			fmt.Fprintf(&b, " dst %d cube %d ttl %d ecn %d eid %d", binary.BigEndian.Uint64(d), d[8], d[9], d[10], binary.BigEndian.Uint64(d[11:]))
		}
	case capture.SDU:
		fmt.Fprintf(&b, "eid %d sdu len %d", h.Port(), r.Len)
	case capture.Bcast:
		fmt.Fprintf(&b, "port %d len %d", h.Port(), r.Len)
		if len(d) >= 16 {
			fmt.Fprintf(&b, " ttl %d seq %d origin %x", d[1], binary.BigEndian.Uint32(d[4:]), d[8:16])
		}
	case capture.ShimCtl:
		fmt.Fprintf(&b, "control len %d", r.Len)
		if len(d) >= 2 && d[0] == 0x87 {
			fmt.Fprintf(&b, " type %d", d[1])
		}
	default:
		fmt.Fprintf(&b, "content %d len %d", h.Content(), r.Len)
	}
	return b.String()
}
