// Package testnet builds and runs hosted ouro nodes as real processes,
// for integration tests and the demo: it writes their configurations,
// starts them (optionally inside a network namespace), waits until they
// are ready, runs the ouro tool against them and cleans up. It is not
// used by any node.
package testnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ouronet/ouro/kernel/logx"
)

// Net is a set of node processes sharing a work directory.
type Net struct {
	Dir       string       // configs, sockets and logs
	RouterBin string       // path of the router binary
	OuroBin   string       // path of the ouro binary
	Log       *slog.Logger // the harness's own events (nodes started); New discards them

	mu    sync.Mutex // guards procs and sp; held while a process starts
	procs []*Proc
	sp    *spawner // started with the first process, ended by Close
}

// Build compiles the router image and the ouro tool from the module at
// root (the directory holding go.mod) into dir/bin.
func Build(ctx context.Context, root, dir string) (router, ouro string, err error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", "", err
	}
	router = filepath.Join(bin, "router")
	ouro = filepath.Join(bin, "ouro")
	for _, b := range []struct{ out, pkg string }{{router, "./images/router"}, {ouro, "./tools/ouro"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("testnet: go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return router, ouro, nil
}

// ModuleRoot returns the directory of the main module's go.mod, found by
// walking up from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testnet: no go.mod above the working directory")
		}
		dir = parent
	}
}

// New returns a Net working in dir with the given binaries.
func New(dir, router, ouro string) *Net {
	return &Net{Dir: dir, RouterBin: router, OuroBin: ouro, Log: logx.Discard()}
}

// Node is a running node process.
type Node struct {
	*Proc
	Name   string
	Socket string
	Netns  string
}

// NodeOpts are optional settings for StartNode.
type NodeOpts struct {
	Netns string        // run inside this network namespace (ip netns exec)
	Ready time.Duration // how long to wait for readiness (default 20s)
	Args  []string      // more router arguments (e.g. -log debug)
}

// StartNode writes config (TOML; its socket is set here) for the node
// called name, starts it and waits for its ready line.
func (n *Net) StartNode(name, config string, opts NodeOpts) (*Node, error) {
	sock := filepath.Join(n.Dir, name+".sock")
	cfgPath := filepath.Join(n.Dir, name+".toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	args := append([]string{"-config", cfgPath, "-socket", sock}, opts.Args...)
	p, err := n.start(name, opts.Netns, n.RouterBin, args...)
	if err != nil {
		return nil, err
	}
	wait := opts.Ready
	if wait == 0 {
		wait = 20 * time.Second
	}
	if err := p.WaitFor(" ready:", wait); err != nil {
		p.Stop()
		return nil, fmt.Errorf("testnet: node %s: %w\n%s", name, err, p.Output())
	}
	return &Node{Proc: p, Name: name, Socket: sock, Netns: opts.Netns}, nil
}

// Restart stops the node and starts it again with the same arguments.
func (n *Net) Restart(nd *Node) error {
	nd.Stop()
	p, err := n.start(nd.Name, nd.Netns, n.RouterBin, nd.args...)
	if err != nil {
		return err
	}
	if err := p.WaitFor(" ready:", 20*time.Second); err != nil {
		p.Stop()
		return fmt.Errorf("testnet: node %s restart: %w\n%s", nd.Name, err, p.Output())
	}
	nd.Proc = p
	return nil
}

// Ouro runs the ouro tool against node and returns its standard output.
func (n *Net) Ouro(ctx context.Context, nd *Node, args ...string) (string, error) {
	full := append([]string{"--socket", nd.Socket}, args...)
	cmd := exec.CommandContext(ctx, n.OuroBin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("testnet: ouro %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// StartOuro starts the ouro tool against node in the background (a
// server such as echo or perf --server).
func (n *Net) StartOuro(nd *Node, args ...string) (*Proc, error) {
	full := append([]string{"--socket", nd.Socket}, args...)
	return n.start("ouro-"+nd.Name, "", n.OuroBin, full...)
}

// StartOuroInNetns is StartOuro inside the node's network namespace (if
// it has one): for commands that make interfaces there (ouro ipnet).
func (n *Net) StartOuroInNetns(nd *Node, args ...string) (*Proc, error) {
	full := append([]string{"--socket", nd.Socket}, args...)
	return n.start("ouro-"+nd.Name, nd.Netns, n.OuroBin, full...)
}

// Close stops every process the Net started.
func (n *Net) Close() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	n.mu.Lock()
	sp := n.sp
	n.sp = nil
	n.mu.Unlock()
	if sp != nil {
		sp.stop()
	}
}

// spawner starts a Net's processes from one OS thread that lives until
// Close. Each process gets Pdeathsig (SIGKILL when its parent dies, so
// that no node outlives a test that crashed), and Linux sends it when
// the thread that forked the child ends, not the process (prctl(2); Go
// issue 27505). The Go runtime ends a thread whenever a goroutine that
// locked it exits, as the tests' setns helpers do: a node forked from
// such a thread was killed without a word (TestIPNet lost its middle
// node, or an `ouro ipnet` program, once in some 20 runs).
type spawner struct {
	reqs chan *exec.Cmd
	errs chan error
	done chan struct{}
}

func newSpawner() *spawner {
	sp := &spawner{reqs: make(chan *exec.Cmd), errs: make(chan error), done: make(chan struct{})}
	go func() {
		// Never unlocked: at stop the thread ends, and with it (by
		// Pdeathsig) any process Close could not stop.
		runtime.LockOSThread()
		defer close(sp.done)
		for cmd := range sp.reqs {
			sp.errs <- cmd.Start()
		}
	}()
	return sp
}

// start starts cmd on the spawner's thread.
func (sp *spawner) start(cmd *exec.Cmd) error {
	sp.reqs <- cmd
	return <-sp.errs
}

func (sp *spawner) stop() {
	close(sp.reqs)
	<-sp.done
}

func (n *Net) start(name, netns, bin string, args ...string) (*Proc, error) {
	argv := append([]string{bin}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logPath := filepath.Join(n.Dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &Proc{name: name, cmd: cmd, args: args, log: logFile, lines: make(chan string, 1024), done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(pw, logFile)
	cmd.Stderr = io.MultiWriter(&p.out, logFile)
	n.mu.Lock()
	if n.sp == nil {
		n.sp = newSpawner()
	}
	err = n.sp.start(cmd)
	n.mu.Unlock()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("testnet: start %s: %w", name, err)
	}
	n.Log.Info("node started", "node", name, "pid", cmd.Process.Pid, "argv", strings.Join(argv, " "))
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			p.out.Write([]byte(line + "\n"))
			select {
			case p.lines <- line:
			default: // nobody is waiting for lines: keep the output only
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		// Wait returns once the last output was written into the pipe,
		// which the scanner may not have turned into lines yet: done
		// (and so Wait and Output) only after it has. Without this a
		// process's last lines (ping's summary) were missing now and
		// then from Output.
		<-scanned
		logFile.Close()
		close(p.done)
	}()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return p, nil
}

// Proc is a process started by a Net.
type Proc struct {
	name  string
	cmd   *exec.Cmd
	args  []string
	log   *os.File
	out   logx.Buffer
	lines chan string
	done  chan struct{}
	err   error
}

// WaitFor waits until a line of standard output contains substr.
func (p *Proc) WaitFor(substr string, timeout time.Duration) error {
	return p.WaitForLine(func(l string) bool { return strings.Contains(l, substr) }, strconv.Quote(substr), timeout)
}

// WaitForLine waits until match accepts a line of standard output; what
// describes the line for the error.
func (p *Proc) WaitForLine(match func(line string) bool, what string, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line := <-p.lines:
			if match(line) {
				return nil
			}
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before printing %s", p.name, p.err, what)
		case <-t.C:
			return fmt.Errorf("%s: no %s within %v", p.name, what, timeout)
		}
	}
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has exited, and how (Wait's
// error): a test that needs its nodes through a run checks they are
// still there.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM, waits up to 5 s, then kills the process group.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill kills the process group at once (a crash, for tests).
func (p *Proc) Kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Wait waits for the process to exit and returns its error.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.name, timeout)
	}
}

// Ports hands out UDP ports that were free a moment ago, never the same
// one twice: a port is free again once the socket that found it closes,
// and the kernel may give it to the next bind of port 0, which would
// give two nodes of one test the same port ("bind: address already in
// use" in one of them). Another process may still take a port before
// the node binds it; that is rare, not prevented. The zero value is
// ready; safe for concurrent use.
type Ports struct {
	mu    sync.Mutex
	given map[int]bool
}

// UDP returns a port on host (an IP address) not handed out before.
func (p *Ports) UDP(host string) (int, error) {
	ps, err := p.UDPs(host, 1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// UDPs returns n distinct ports on host (an IP address) not handed out
// before. It holds every socket it binds until it has them all.
func (p *Ports) UDPs(host string, n int) ([]int, error) {
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("testnet: free UDP ports: %q is not an IP address", host)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.given == nil {
		p.given = make(map[int]bool)
	}
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100*n {
			return nil, fmt.Errorf("testnet: free UDP ports on %s: %d tries found only %d not given before", host, tries, len(ports))
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			return nil, fmt.Errorf("testnet: free UDP ports on %s: %w", host, err)
		}
		held = append(held, c)
		if port := c.LocalAddr().(*net.UDPAddr).Port; !p.given[port] {
			p.given[port] = true
			ports = append(ports, port)
		}
	}
	return ports, nil
}
