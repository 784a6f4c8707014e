// Command router is the ouro node image: the kernel, the IRM and the
// configured layers. Hosted, it runs as a Linux process and serves
// programs on a Unix socket; on boards it is the same image built with
// the TamaGo toolchain.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/images/internal/metrics"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/images/internal/procs"
)

func main() {
	log.SetFlags(0)
	cfgPath := flag.String("config", "", "node configuration (TOML); required")
	socket := flag.String("socket", "", "Unix socket for programs (default: [node] socket, $OURO_SOCKET, else the first usable of "+
		strings.Join(flow.SocketCandidates(), ", ")+")")
	printSys := flag.String("print-system", "", "print the system description (table, dot or mermaid) and exit")
	check := flag.String("check-config", "", "check the configuration `FILE` (as make image does before building) and exit: 0 if it is valid")
	tags := flag.String("image-tags", "", "print the build tags a board image needs for the configuration `FILE`, comma-separated (make image adds them), and exit")
	logLevel := flag.String("log", "", "log `LEVEL`: debug, info, warn, error or off (overrides [node] log)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: router -config FILE [-socket PATH] [-log LEVEL]\n       router -check-config FILE\n       router -image-tags FILE\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *check != "" {
		os.Exit(checkConfig(*check))
	}
	if *tags != "" {
		cfg, err := node.LoadConfig(*tags)
		if err != nil {
			log.Fatalf("router: %v", err)
		}
		fmt.Println(strings.Join(imageTags(cfg), ","))
		return
	}
	if *cfgPath == "" {
		flag.Usage()
		os.Exit(2)
	}
	cfg, err := node.LoadConfig(*cfgPath)
	if err != nil {
		log.Fatalf("router: %v", err)
	}
	sock := *socket
	if sock == "" {
		sock = cfg.Node.Socket
	}
	if sock == "" {
		if sock, err = node.DefaultSocket(); err != nil {
			log.Fatalf("router: %v", err)
		}
	}
	if *logLevel != "" {
		if err := cfg.Node.Log.UnmarshalTOML(*logLevel); err != nil {
			log.Fatalf("router: -log: %v", err)
		}
	}
	logger, err := node.NewLogger(cfg, os.Stderr)
	if err != nil {
		log.Fatalf("router: %v", err)
	}
	// In-node applications ([[app]]) run as components beside the gateway;
	// a "halt" app is for test benches and stops the process with its code.
	halt := make(chan int, 1)
	apps, err := node.Apps(cfg, node.AppEnv{Log: logger, Halt: func(code int) {
		select {
		case halt <- code:
		default:
		}
	}})
	if err != nil {
		log.Fatalf("router: %v", err)
	}
	// IP bridges ([[ipnet]]), each a component with its TUN interface.
	bridges, err := node.IPNets(cfg, func(name string, mtu int) (node.TUN, error) { return ipnet.OpenTUN(name, mtu) }, logger)
	if err != nil {
		log.Fatalf("router: %v", err)
	}
	extras := append(apps, bridges...)
	// [node] metrics: Prometheus text over HTTP (docs/observability.md).
	var n *node.Node
	var mx *metrics.Server
	if cfg.Node.Metrics != "" {
		mx = metrics.New(metrics.Config{Addr: cfg.Node.Metrics, Log: logger})
		extras = append(extras, mx.Extra())
	}
	// [node] procs: the scheduler's processors, fixed, or adapted to the
	// load by a component of their own (images/internal/procs).
	switch {
	case cfg.Node.Procs > 0:
		runtime.GOMAXPROCS(cfg.Node.Procs)
	case os.Getenv("GOMAXPROCS") == "":
		extras = append(extras, procs.New(runtime.GOMAXPROCS(0), logger).Extra())
	}
	n, err = node.New(cfg, append([]node.Extra{node.GatewayWith(sock, cfg.GatewayOptions(), logger)}, extras...)...)
	if err != nil {
		log.Fatalf("router: %v", err)
	}
	if *printSys != "" {
		sys := n.System()
		switch *printSys {
		case "table":
			fmt.Print(sys.Table())
		case "dot":
			fmt.Print(sys.Dot())
		case "mermaid":
			fmt.Print(sys.Mermaid())
		default:
			log.Fatalf("router: -print-system %q: want table, dot or mermaid", *printSys)
		}
		return
	}
	if err := n.Start(); err != nil {
		log.Fatalf("router: %v", err)
	}

	var layers []string
	for _, p := range cfg.IPCPs {
		layers = append(layers, fmt.Sprintf("%s(%s %s)", p.Layer, p.Kind, p.Name))
	}
	// Tests and scripts wait for this line.
	metricsAt := ""
	if mx != nil {
		metricsAt = ", metrics http://" + mx.Addr().String() + "/metrics"
	}
	fmt.Printf("ouro node %s ready: socket %s, layers %s%s\n", n.Name(), sock, strings.Join(layers, ", "), metricsAt)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	code := 0
	select {
	case <-sig:
	case code = <-halt:
	}
	fmt.Printf("ouro node %s: stopping\n", n.Name())
	n.Stop()
	os.Exit(code)
}

// checkConfig checks the configuration at path and reports: exit code 0
// if it is valid, 1 with every mistake (file:line: ...) if not.
func checkConfig(path string) int {
	cfg, err := node.LoadConfig(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "router: %v\n", err)
		return 1
	}
	var layers []string
	for _, p := range cfg.IPCPs {
		layers = append(layers, fmt.Sprintf("%s(%s %s)", p.Layer, p.Kind, p.Name))
	}
	fmt.Printf("%s: ok: %d IPCPs %s, %d apps\n", path, len(cfg.IPCPs), strings.Join(layers, ", "), len(cfg.Apps))
	return 0
}
