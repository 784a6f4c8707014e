// Command ouro is the host tool for ouro nodes: management in the spirit of
// Ouroboros' irm (IPCPs, names, flows, registrations, the system
// description, commands passed through to IPCPs), and the measurement
// programs ping, perf and echo, over flows or, as a baseline, plain UDP.
// It talks to a hosted node over its Unix socket. See docs/tools.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/ouronet/ouro/flow"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		socket:    defaultSocket(),
		dial:      dialSocket,
		stderrTTY: isTerminal(os.Stderr),
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// node is what the tool needs of a node: a flow broker and management.
// *flow.SocketBroker is one.
type node interface {
	flow.Broker
	Mgmt(ctx context.Context, req, resp any) error
}

// app is one run of the tool: where output goes, the global flags, and
// how to reach the node (replaced by tests).
type app struct {
	stdout, stderr io.Writer
	socket         string                          // --socket
	json           bool                            // --json
	via            string                          // --via: the management name of a remote node
	dial           func(path string) (node, error) // opens a session with the node
	stderrTTY      bool                            // progress output by default
	captureFlags   func(*flagSet)                  // help: receives a command's flags
}

// command is one subcommand.
type command struct {
	name    string
	args    string // the synopsis after the name
	summary string // one line for the command list
	help    string // further paragraphs for "ouro help CMD"
	group   string
	run     func(a *app, ctx context.Context, cmd *command, args []string) error
}

// commands lists the subcommands in the order help shows them. It is
// built on each call so that no command table is package state.
func commands() []*command {
	pass := func(name, summary string) *command {
		return &command{name: name, args: "IPCP [key=value ...]", group: "management", summary: summary,
			help: "Shortcut for \"ouro ipcp " + name + " IPCP [key=value ...]\".", run: runIPCPShortcut}
	}
	return []*command{
		{name: "ipcps", group: "management", summary: "list the node's IPC processes", run: runTableCmd},
		{name: "names", group: "management", summary: "list names, their bindings and registrations", run: runTableCmd},
		{name: "components", group: "management", summary: "list the node's components: state, restarts, faults, budgets", run: runTableCmd,
			help: "Every component of the node (IRM, IPCPs, drivers, gateway, apps, bridges)\n" +
				"as its kernel sees it: state, incarnations, faults, packet buffers and\n" +
				"objects in use against their budgets, and the IRM's supervision of it\n" +
				"(state and last fault) where it supervises it."},
		{name: "flows", group: "management", summary: "list the flows the node brokered", run: runTableCmd},
		{name: "reg", args: "NAME [--layer L]", group: "management", summary: "register NAME in layer L (default: every layer)", run: runReg},
		{name: "unreg", args: "NAME [--layer L]", group: "management", summary: "unregister NAME from layer L (default: every layer)", run: runReg},
		{name: "create", args: "KIND NAME LAYER [--config TOML] [--bufs N]", group: "management", summary: "create an IPCP in the running node", run: runCreate,
			help: "Creates an IPC process of KIND (udp, eth, local, ...) named NAME in layer\n" +
				"LAYER, configured by --config, the body of its kind's table in the node\n" +
				"configuration (docs/config.md), e.g.\n" +
				"  ouro create udp b.udp2 udp --config 'addr = \"127.0.0.1:3437\"'"},
		{name: "destroy", args: "NAME", group: "management", summary: "stop an IPCP created with create", run: runDestroy},
		{name: "system", args: "[--format table|dot|mermaid|json]", group: "management", summary: "print the node's system description", run: runSystem},
		{name: "graph", args: "IPCP [--format dot|mermaid]", group: "management", summary: "print a unicast layer's topology", run: runGraph,
			help: "Prints the topology of the layer of the unicast IPCP named IPCP, as its\n" +
				"link-state database knows it: every member (name and address) and every\n" +
				"adjacency with its metric; an adjacency only one end announces is dashed."},
		{name: "ipcp", args: "CMD IPCP [key=value ...]", group: "management", summary: "pass command CMD to an IPCP",
			help: "Sends CMD with the key=value arguments to the IPCP named IPCP (an IPCP\n" +
				"name or a layer name) and prints its answer. The keys name= and layer=\n" +
				"also fill the request's name and layer fields. Commands depend on the\n" +
				"IPCP: stats, flows, bootstrap, enroll, connect, members, routes, pff, dir,\n" +
				"ports.",
			run: runIPCP},
		{name: "stats", args: "IPCP [key=value ...]", group: "management", summary: "an IPCP's counters", run: runIPCPShortcut,
			help: "Shortcut for \"ouro ipcp stats IPCP [key=value ...]\"."},
		pass("bootstrap", "bootstrap a layer with its first IPCP"),
		pass("enroll", "enroll an IPCP into a layer via a member"),
		pass("connect", "connect an IPCP's management and data-transfer flows"),
		captureCommand(), topCommand(), statusCommand(), metricsCommand(), // capture.go, top.go, via.go, metrics.go
		{name: "echo", args: "NAME | --udp ADDR", group: "measurement", summary: "serve NAME: echo every SDU back", run: runEcho,
			help: "Binds NAME and echoes every SDU of every flow allocated to it, printing\n" +
				"a line per flow opened and closed. With --udp, echoes UDP datagrams on\n" +
				"ADDR instead (host:port), the baseline for \"ouro ping --udp\"."},
		{name: "ping", args: "NAME | --udp HOST:PORT", group: "measurement", summary: "measure round trips to an echo server", run: runPing,
			help: "Allocates a flow to NAME (served by \"ouro echo NAME\") and sends SDUs\n" +
				"carrying a sequence number and a send time; prints the round-trip time\n" +
				"of every reply and a summary. With --udp, pings a UDP echo server\n" +
				"(\"ouro echo --udp\") with the same code, as a baseline.\n" +
				"Exit code 1 when no reply came back."},
		allocCommand(), // alloc.go
		{name: "perf", args: "NAME | --udp HOST:PORT | --server NAME | --server --udp ADDR", group: "measurement",
			summary: "measure throughput and loss to a perf server", run: runPerf,
			help: "Client: allocates a flow to NAME and sends SDUs for the duration, as fast\n" +
				"as the flow takes them or at --rate; then asks the server for what it\n" +
				"counted and prints both sides' packets/s, bit/s and the loss.\n" +
				"Server (--server): binds NAME and counts. --udp does the same over plain\n" +
				"UDP, as a baseline."},
		ipnetCommand(), // ipnet.go
		{name: "bridges", group: "ip", summary: "list the node's IP bridges ([[ipnet]]) and their counters per route", run: runTableCmd,
			help: "Every IP bridge running inside the node (an [[ipnet]] table of its\n" +
				"configuration) as it answers now: a row per route (PREFIX, the PEER name\n" +
				"it goes to) with the packets and bytes sent, the drops (too_big: larger\n" +
				"than the flow takes; aqm_drops: waited too long, see aqm_target), the\n" +
				"packets marked CE instead (aqm_marks), the TCP super-packets read, the flows allocated and\n" +
				"the allocations that failed; then a row \"in\" for what peers sent the\n" +
				"bridge (flow_errors: accepts that failed), \"no_route\" for packets no\n" +
				"route matched and \"device\" for failed device reads. Routes to one PEER\n" +
				"share its counters. A bridge that does not answer within 2 s has a row\n" +
				"with its ERROR. A bridge run by \"ouro ipnet\" prints its own counters\n" +
				"when it stops. docs/ipnet.md."},
		keygenCommand(), idCommand(), measureCommand(), certCommand(), // identity.go, cert.go
		{name: "crl", args: "IPCP FILE", group: "identity", summary: "give a unicast IPCP a revocation list to adopt and pass on", run: runCRLPush,
			help: "Sends the layer authority's revocation list FILE (ouro cert revoke) to the\n" +
				"unicast IPCP named IPCP, which adopts it if it is newer than the one in use,\n" +
				"passes it to its neighbours (and they to theirs) and ends the adjacencies\n" +
				"of members it revokes."},
		{name: "help", args: "[CMD]", group: "other", summary: "show help for a command", run: runHelp},
	}
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run runs the tool with args (without the program name) and returns the
// exit code: 0, 1 for an error, 2 for a usage error.
func (a *app) run(ctx context.Context, args []string) int {
	// Global flags may come before the command.
	top := a.newFlags(&command{name: "ouro"})
	if err := top.Parse(args); err != nil {
		if errors.Is(err, errHelp) {
			a.usage(a.stdout)
			return 0
		}
		fmt.Fprintf(a.stderr, "ouro: %v\n\n", err)
		a.usage(a.stderr)
		return 2
	}
	args = top.Args()
	if len(args) == 0 {
		a.usage(a.stderr)
		return 2
	}
	cmd := findCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(a.stderr, "ouro: unknown command %q (see \"ouro help\")\n", args[0])
		return 2
	}
	err := cmd.run(a, ctx, cmd, args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		a.commandHelp(a.stdout, cmd)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "ouro: %v\n", err)
		fmt.Fprintf(a.stderr, "usage: ouro %s %s (see \"ouro help %s\")\n", cmd.name, cmd.args, cmd.name)
		return 2
	}
	fmt.Fprintf(a.stderr, "ouro: %v\n", err)
	return 1
}

// usage prints the command list.
func (a *app) usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ouro [--socket PATH] [--via NAME] [--json] COMMAND [ARGS]")
	group := ""
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range commands() {
		if c.group != group && c.group != "" {
			group = c.group
			fmt.Fprintf(tw, "\n%s commands:\n", group)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun \"ouro help COMMAND\" for a command's flags. The node's socket is")
	fmt.Fprintln(w, "--socket, else $OURO_SOCKET, else the first of $XDG_RUNTIME_DIR/ouro/node.sock,")
	fmt.Fprintln(w, "/run/ouro/node.sock and /tmp/ouro-$UID/node.sock where a node listens.")
	fmt.Fprintln(w, "With --via NAME, management commands (read-only ones: listings, stats,")
	fmt.Fprintln(w, "graph, capture, top) go to the remote node whose \"mgmt\" app serves NAME,")
	fmt.Fprintln(w, "over a sealed flow the local node allocates (docs/observability.md).")
}

// commandHelp prints one command's synopsis, help and flags.
func (a *app) commandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: ouro %s [flags] %s\n\n%s.\n", cmd.name, cmd.args, upperFirst(cmd.summary))
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", cmd.help)
	}
	// Run the command's flag definitions only: parse "-h".
	var flags *flagSet
	probe := *a
	probe.dial = nil
	probe.captureFlags = func(fs *flagSet) { flags = fs }
	cmd.run(&probe, context.Background(), cmd, []string{"-h"})
	if flags != nil {
		fmt.Fprintln(w, "\nflags:")
		printFlags(w, flags)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func runHelp(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	args, err := fs.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		a.usage(a.stdout)
		return nil
	}
	c := findCommand(args[0])
	if c == nil {
		return usagef("help: unknown command %q", args[0])
	}
	a.commandHelp(a.stdout, c)
	return nil
}

// connect opens a session with the node the management commands are for:
// the local node, or with --via the remote node over a management flow.
func (a *app) connect() (node, error) {
	if a.via != "" {
		return a.dialVia(context.Background(), a.via)
	}
	return a.connectLocal()
}

// connectFlows opens a session with the local node for commands that use
// flows (echo, ping, perf, ipnet): --via does not apply to them.
func (a *app) connectFlows() (node, error) {
	if a.via != "" {
		return nil, usagef("--via applies to management commands only (a remote node's flows are its own)")
	}
	return a.connectLocal()
}

// connectLocal opens a session with the local node.
func (a *app) connectLocal() (node, error) {
	if a.dial == nil {
		return nil, errors.New("no node to talk to")
	}
	n, err := a.dial(a.socket)
	if err != nil {
		return nil, fmt.Errorf("%w (is the node running? see --socket or $OURO_SOCKET)", err)
	}
	return n, nil
}

// printJSON writes v as indented JSON followed by a newline.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine writes v as one line of JSON (for event streams).
func (a *app) printJSONLine(v any) {
	json.NewEncoder(a.stdout).Encode(v)
}
