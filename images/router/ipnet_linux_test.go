package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/tools/testnet"
)

// TestIPNet carries unchanged TCP/IP programs across an ouro network:
// three network namespaces in a line (h1 – h2 – h3) with no IP
// connectivity between them, a unicast layer over the Ethernet shim,
// and two pairs of IP bridges at h1 and h3: in the nodes ([[ipnet]],
// TUN ouro1, 10.79.0.0/24, sealed flows, an MTU of 1400 above the
// flows' 1357: TCP learns the path MTU from the bridge's ICMP "too big",
// else curl stalls) and in hosted programs (ouro ipnet, TUN
// ouro0, 10.77.0.0/24). ping crosses both; curl (a file served by
// net/http in h3's namespace, hash-checked) the in-node pair; iperf3 TCP
// and UDP both, where iperf3 is installed, beside the same iperf3 over
// plain IP routed through h2 on the same veths.
func TestIPNet(t *testing.T) {
	needNetns(t)
	for _, tool := range []string{"ping", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: needs %s (apt-get install iputils-ping curl)", tool)
		}
	}
	topo := testnet.Line(3)
	ns := buildNetns(t, topo)
	// OURO_IPNET_MTU=9000 (a benchmark, docs/benchmarks.md): the veths
	// take jumbo frames, both for the plain-IP baseline and the Ethernet
	// shims, whose nodes then carry SDUs that large; the in-node bridges'
	// TUN gets an MTU that leaves room for the shim's, the unicast
	// layer's and the seal's headers.
	bridgeMTU, mss := 1400, 1200 // iperf3's TCP MSS: what a 1,300-byte TUN takes too
	if v := os.Getenv("OURO_IPNET_MTU"); v != "" {
		mtu, err := strconv.Atoi(v)
		if err != nil || mtu < 1500 {
			t.Fatalf("OURO_IPNET_MTU=%q: want a link MTU of 1500 or more", v)
		}
		for _, e := range [][2]string{{"h1", "h2"}, {"h2", "h1"}, {"h2", "h3"}, {"h3", "h2"}} {
			if out, err := exec.Command("ip", "-n", ns.Name(e[0]), "link", "set", "dev", ns.Iface(e[0], e[1]), "mtu", v).CombinedOutput(); err != nil {
				t.Fatalf("veth mtu %s: %v\n%s", v, err, out)
			}
		}
		bridgeMTU = mtu - 100
		mss = min(bridgeMTU-100, 9000) // iperf3 takes an MSS up to 9,216
	}
	// TCP's congestion control, the same in every namespace for the
	// baseline and the bridges: OURO_IPNET_CC (default cubic, the
	// kernel's and Debian's default). It matters: on this project's
	// machine, whose default is bbr, plain IP through h2 carried 17–19
	// Gbit/s under bbr and 65 under cubic (docs/benchmarks.md, "IP over
	// flows: the baseline's congestion control").
	cc := cmp.Or(os.Getenv("OURO_IPNET_CC"), "cubic")
	for _, h := range []string{"h1", "h2", "h3"} {
		if out, err := exec.Command("ip", "netns", "exec", ns.Name(h), "sysctl", "-qw", "net.ipv4.tcp_congestion_control="+cc).CombinedOutput(); err != nil {
			t.Fatalf("OURO_IPNET_CC=%s in %s: %v\n%s", cc, h, err, out)
		}
	}
	// OURO_IPNET_RATE (a tc rate, "1gbit") shapes every veth's egress
	// with tbf, so that the baseline and the bridges share links of that
	// rate: what a link slower than the bridges' ceiling looks like.
	rate := os.Getenv("OURO_IPNET_RATE")
	if rate != "" {
		for _, e := range [][2]string{{"h1", "h2"}, {"h2", "h1"}, {"h2", "h3"}, {"h3", "h2"}} {
			// The bucket holds several of the largest (GSO) packets.
			if out, err := exec.Command("ip", "netns", "exec", ns.Name(e[0]), "tc", "qdisc", "replace", "dev", ns.Iface(e[0], e[1]), "root",
				"tbf", "rate", rate, "burst", "1mb", "latency", "20ms").CombinedOutput(); err != nil {
				t.Fatalf("OURO_IPNET_RATE=%s: tbf on %s: %v\n%s", rate, e[0], err, out)
			}
		}
	}
	// OURO_IPNET_AQM sets the bridges' aqm_target (--aqm-target); "off"
	// turns their CoDel off.
	aqm, aqmFlag := cmp.Or(os.Getenv("OURO_IPNET_AQM"), ipnet.DefaultAQMTarget.String()), ""
	if aqm == "off" {
		aqm, aqmFlag = "-1s", "0s"
	}
	aqmFlag = cmp.Or(aqmFlag, aqm)
	t.Logf("TCP congestion control %s; links %s; the bridges' AQM target %s", cc, cmp.Or(rate, "unshaped"), aqm)
	inNode := func(h, peer string) string {
		return fmt.Sprintf("\n[[ipnet]]\nname = \"ipn.%s\"\ntun = \"ouro1\"\nmtu = %d\nsealed = true\naqm_target = %q\nroutes = [\"10.79.0.0/24=ipn.%s\"]\n", h, bridgeMTU, aqm, peer)
	}
	l := startLayer(t, topo, ns, ns.EthShim, testnet.UnicastOpts{
		NodeKeys: "log = true", HostKeys: os.Getenv("OURO_IPNET_HOSTKEYS"), Extra: map[string]string{"h1": inNode("h1", "h3"), "h3": inNode("h3", "h1")}})
	l.converge()
	ipn := func(h string, args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns.Name(h)}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", ns.Name(h), strings.Join(args, " "), err, out)
		}
	}
	addr := map[string]string{"h1": "10.77.0.1", "h3": "10.77.0.3"}
	peer := map[string]string{"h1": "h3", "h3": "h1"}
	var bridges []*testnet.Proc
	for _, h := range []string{"h1", "h3"} {
		p, err := l.n.StartOuroInNetns(l.nodes[h], "ipnet", "ipnet."+h, "--tun", "ouro0", "--mtu", fmt.Sprint(min(1300, bridgeMTU)+max(0, bridgeMTU-1400)),
			"--route", addr[peer[h]]+"=ipnet."+peer[h], "--aqm-target", aqmFlag)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor("ready", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		bridges = append(bridges, p)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = l.n.Ouro(ctx, l.nodes[h], "reg", "ipnet."+h, "--layer", "uni")
		if err == nil { // the in-node bridge's name (these nodes do not register bound names everywhere)
			_, err = l.n.Ouro(ctx, l.nodes[h], "reg", "ipn."+h, "--layer", "uni")
		}
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ipn(h, "addr", "add", addr[h]+"/24", "dev", "ouro0")
		ipn(h, "addr", "add", strings.Replace(addr[h], ".77.", ".79.", 1)+"/24", "dev", "ouro1")
	}
	// alive fails the test if a node or a bridge program has exited: each
	// must last the whole test (a node killed by the thread that forked
	// it ending showed only as a curl timeout or a hung iperf3: testnet's
	// spawner).
	alive := func(when string) {
		t.Helper()
		for _, h := range []string{"h1", "h2", "h3"} {
			if gone, err := l.nodes[h].Exited(); gone {
				t.Fatalf("%s: node %s exited: %v", when, h, err)
			}
		}
		for i, p := range bridges {
			if gone, err := p.Exited(); gone {
				t.Fatalf("%s: the ouro ipnet program of %s exited: %v\n%s", when, []string{"h1", "h3"}[i], err, p.Output())
			}
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range bridges { // stopped, they print their counters
				p.Stop()
				t.Logf("ipnet output:\n%s", p.Output())
			}
			// Every node's names and IPCP counters, then its goroutines
			// (SIGQUIT: the runtime prints every stack and exits), so
			// that a node that stopped answering shows where it waits.
			for _, h := range []string{"h1", "h2", "h3"} {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				out, err := l.n.Ouro(ctx, l.nodes[h], "names")
				t.Logf("node %s's names: %s %v", h, out, err)
				ipcps, _ := l.n.Ouro(ctx, l.nodes[h], "ipcps")
				for _, line := range strings.Split(ipcps, "\n")[1:] {
					if f := strings.Fields(line); len(f) > 0 {
						st, err := l.n.Ouro(ctx, l.nodes[h], "stats", f[0])
						t.Logf("node %s's stats of %s (%v):\n%s", h, f[0], err, st)
					}
				}
				cancel()
				syscall.Kill(l.nodes[h].Pid(), syscall.SIGQUIT)
			}
			time.Sleep(time.Second)
			for _, h := range []string{"h1", "h2", "h3"} {
				t.Logf("node %s's log, then its goroutines:\n%s", h, l.nodes[h].Output())
			}
		}
	})
	inNS := func(h string, name string, args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns.Name(h), name}, args...)...)
	}

	// ping: the first packets may wait for the names to be found.
	far := map[string]string{"in the nodes": "10.79.0.3", "in ouro ipnet programs": addr["h3"]}
	for _, what := range []string{"in the nodes", "in ouro ipnet programs"} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, err := inNS("h1", "ping", "-c", "3", "-W", "2", "-i", "0.2", far[what]).CombinedOutput()
			if err == nil && strings.Contains(string(out), " 0% packet loss") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ping h1 → h3 through bridges %s: %v\n%s", what, err, out)
			}
		}
		out, err := inNS("h1", "ping", "-c", "20", "-i", "0.05", "-q", far[what]).CombinedOutput()
		if err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
		t.Logf("ping h1 → h3, bridges %s (uni over eth, 2 hops): %s", what, lastLine(string(out)))
	}

	// curl: 100 MB from net/http listening in h3's namespace.
	data := make([]byte, 100<<20)
	for i := range data {
		data[i] = byte(i*31 + i>>11)
	}
	ln := listenIn(t, ns.Name("h3"), far["in the nodes"]+":8080")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	file := filepath.Join(t.TempDir(), "blob")
	start := time.Now()
	out, err := inNS("h1", "curl", "-sS", "--max-time", "120", "-o", file, "-w", "%{speed_download}", "http://"+far["in the nodes"]+":8080/blob").CombinedOutput()
	alive("after curl")
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("curl got %d bytes, not what was served (%d)", len(got), len(data))
	}
	t.Logf("curl h1 ← h3: 100 MB hash-identical in %v (%s B/s by curl)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	// The in-node pair's flows are sealed: each node logged its peer.
	for h, p := range peer {
		if log := l.nodes[h].Output(); !strings.Contains(log, `sealed_with="`+p) {
			t.Errorf("node %s's bridge flows are not sealed with %s:\n%s", h, p, log)
		}
	}

	// The in-node bridges' counters while they run (ouro bridges): h3's
	// sent the 100 MB on its route to ipn.h1, and both received.
	for _, h := range []string{"h1", "h3"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := l.n.Ouro(ctx, l.nodes[h], "--json", "bridges")
		cancel()
		var j struct{ Rows []map[string]string }
		if err != nil || json.Unmarshal([]byte(out), &j) != nil {
			t.Fatalf("ouro bridges at %s: %v\n%s", h, err, out)
		}
		rows := map[string]map[string]string{}
		for _, r := range j.Rows {
			rows[r["prefix"]] = r
		}
		route, in := rows["10.79.0.0/24"], rows["in"]
		num := func(r map[string]string, col string) int64 { n, _ := strconv.ParseInt(r[col], 10, 64); return n }
		if route["bridge"] != "ipn."+h || route["peer"] != "ipn."+peer[h] || route["error"] != "-" || num(route, "packets") == 0 || num(route, "flows") == 0 || num(in, "packets") == 0 {
			t.Errorf("ouro bridges at %s: no traffic counted on its route and in:\n%s", h, out)
		}
		if h == "h3" && num(route, "bytes") < int64(len(data)) {
			t.Errorf("ouro bridges at h3: %d bytes sent on its route, want at least the %d curl fetched:\n%s", num(route, "bytes"), len(data), out)
		}
	}

	sshAcross(t, inNS, far["in the nodes"])
	alive("after ssh")

	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Log("SKIP: iperf3 not installed: no throughput figures (apt-get install iperf3)")
		return
	}
	// The baseline: plain IP routed through h2 on the same veths.
	ipn("h1", "addr", "add", "10.78.1.1/24", "dev", ns.Iface("h1", "h2"))
	ipn("h2", "addr", "add", "10.78.1.2/24", "dev", ns.Iface("h2", "h1"))
	ipn("h2", "addr", "add", "10.78.2.2/24", "dev", ns.Iface("h2", "h3"))
	ipn("h3", "addr", "add", "10.78.2.3/24", "dev", ns.Iface("h3", "h2"))
	ipn("h1", "route", "add", "10.78.2.0/24", "via", "10.78.1.2")
	ipn("h3", "route", "add", "10.78.1.0/24", "via", "10.78.2.2")
	if out, err := inNS("h2", "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v %s", err, out)
	}
	if out, err := inNS("h1", "ping", "-c", "20", "-i", "0.05", "-q", "10.78.2.3").CombinedOutput(); err == nil {
		t.Logf("ping h1 → h3 over plain IP routed through h2: %s", lastLine(string(out)))
	} else {
		t.Fatalf("ping over plain IP: %v\n%s", err, out)
	}
	// look logs where packets went: each namespace's interface counters
	// (the TUNs' and veths' drops), its TCP retransmission and ECN
	// counters, and each node's IPCPs' counters (ouro top, ouro stats).
	// OURO_IPNET_DIAG=1 runs it after each bridged TCP run (diag): the
	// breakdown in docs/benchmarks.md; a hanging iperf3 always does.
	look := func(label string) {
		t.Helper()
		for _, h := range []string{"h1", "h2", "h3"} {
			out, _ := inNS(h, "ip", "-s", "link").CombinedOutput()
			t.Logf("DIAG %s: %s links:\n%s", label, h, out)
			out, _ = inNS(h, "nstat", "-az", "TcpRetransSegs", "TcpExtTCPLostRetransmit", "IpExtInCEPkts", "IpExtInECT0Pkts", "TcpExtTCPSackRecovery", "TcpExtTCPOFOQueue").CombinedOutput()
			t.Logf("DIAG %s: %s nstat:\n%s", label, h, out)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			top, err := l.n.Ouro(ctx, l.nodes[h], "top", "-n", "1")
			cancel()
			t.Logf("DIAG %s: %s top (%v):\n%s", label, h, err, top)
			ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			ipcps, _ := l.n.Ouro(ctx, l.nodes[h], "ipcps")
			for _, line := range strings.Split(ipcps, "\n")[1:] {
				if f := strings.Fields(line); len(f) > 0 {
					st, err := l.n.Ouro(ctx, l.nodes[h], "stats", f[0])
					t.Logf("DIAG %s: %s stats %s (%v):\n%s", label, h, f[0], err, st)
				}
			}
			cancel()
		}
	}
	diagOn := os.Getenv("OURO_IPNET_DIAG") != ""
	diag := func(string) {}
	if diagOn {
		diag = look
	}
	// pingBeside starts pings from h1 to dst 1.2 s from now (after the
	// TCP run's first second, which iperf3 leaves out) until before its
	// end, and returns what waits for them and logs their summary (with
	// OURO_IPNET_DIAG, every round trip as a series).
	pingBeside := func(dst string) func() {
		quiet := "-q"
		if diagOn {
			quiet = "-n"
		}
		var pings bytes.Buffer
		loaded := inNS("h1", "ping", "-c", "40", "-i", "0.05", quiet, dst)
		loaded.Stdout = &pings
		started := make(chan error, 1)
		time.AfterFunc(1200*time.Millisecond, func() { started <- loaded.Start() })
		return func() {
			if err := <-started; err != nil {
				t.Logf("ping during iperf3 TCP: %v", err)
				return
			}
			loaded.Wait()
			t.Logf("ping h1 → %s during iperf3 TCP: %s", dst, lastLine(pings.String()))
			if diagOn {
				var rtts []string
				for _, line := range strings.Split(pings.String(), "\n") {
					if _, rtt, ok := strings.Cut(line, "time="); ok {
						rtts = append(rtts, strings.TrimSuffix(rtt, " ms"))
					}
				}
				t.Logf("DIAG ping h1 → %s during iperf3 TCP, ms: %s", dst, strings.Join(rtts, " "))
			}
		}
	}
	iperf := func(dst string, udp bool) float64 {
		t.Helper()
		srv := inNS("h3", "iperf3", "-s", "-1", "-B", dst)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		// A client that failed leaves the one-shot server waiting for
		// it: kill it, or the test hangs until go test's timeout (CI ran
		// 10 minutes into one). After a run it has exited already.
		defer func() { srv.Process.Kill(); srv.Wait() }()
		time.Sleep(300 * time.Millisecond)
		// TCP: 3 s measured after 1 s left out (-O), which a flow's
		// congestion control spends ramping up from its initial rate
		// (docs/benchmarks.md, "TCP super-packets"): the first second
		// is logged apart.
		args := []string{"-c", dst, "-t", "3", "-O", "1", "-J", "-M", fmt.Sprint(mss)}
		if udp {
			args = []string{"-c", dst, "-t", "3", "-J", "-u", "-b", "200M", "-l", "1200"}
		}
		// A run that carries nothing hangs about two minutes (TCP's
		// connect timeout): one still going after 20 s is looked at
		// while it hangs (sockets, links, the bridges' and nodes'
		// counters and logs, whether they still run), then ended, and
		// the test fails.
		cmd := inNS("h1", "iperf3", args...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		// The round trip under load: pings beside the TCP run, from
		// after its first second (left out) to before its end, show the
		// queue TCP builds on the path (in the bridges' and the layer's
		// queues, or in the veths' for plain IP).
		if !udp {
			defer pingBeside(dst)()
			if diagOn && dst != "10.78.2.3" {
				// Plain IP's path beside it, over the same veths and
				// their tbf: a spike in both is the machine (or the
				// veths' queues), in the bridges' alone ouro's.
				defer pingBeside("10.78.2.3")()
			}
		}
		var err error
		select {
		case err = <-waited:
		case <-time.After(20 * time.Second):
			t.Errorf("iperf3 %v still running after 20 s; what the path looks like now:", args)
			for _, h := range []string{"h1", "h3"} {
				out, _ := inNS(h, "ss", "-tinu").CombinedOutput()
				t.Logf("HANG %s ss -tinu:\n%s", h, out)
			}
			look("iperf3 hanging")
			for _, p := range bridges {
				t.Logf("HANG ouro ipnet output so far:\n%s", p.Output())
			}
			for _, h := range []string{"h1", "h3"} { // what the nodes said
				if b, err := os.ReadFile(filepath.Join(l.n.Dir, h+".log")); err == nil {
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					var keep []string
					for _, line := range lines {
						if !strings.Contains(line, "level=INFO") || strings.Contains(line, "session") || strings.Contains(line, "fault") || strings.Contains(line, "restart") {
							keep = append(keep, line)
						}
					}
					t.Logf("HANG %s node log, all but routine INFO lines (%d of %d):\n%s", h, len(keep), len(lines), strings.Join(keep[max(0, len(keep)-80):], "\n"))
				}
			}
			cmd.Process.Kill()
			<-waited
			alive("iperf3 hanging")
			return 0
		}
		out := stdout.Bytes()
		if err != nil {
			t.Fatalf("iperf3 %v: %v\n%s", args, err, out)
		}
		var r struct {
			Intervals []struct {
				Sum struct {
					BPS     float64 `json:"bits_per_second"`
					Omitted bool    `json:"omitted"`
				} `json:"sum"`
			} `json:"intervals"`
			End struct {
				SumReceived struct {
					BPS float64 `json:"bits_per_second"`
				} `json:"sum_received"`
				SumSent struct {
					Retransmits int `json:"retransmits"`
				} `json:"sum_sent"`
				Sum struct {
					BPS  float64 `json:"bits_per_second"`
					Lost float64 `json:"lost_percent"`
				} `json:"sum"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("iperf3 output: %v", err)
		}
		if udp {
			return r.End.Sum.BPS * (1 - r.End.Sum.Lost/100)
		}
		var first []string
		for _, iv := range r.Intervals {
			if iv.Sum.Omitted {
				first = append(first, fmt.Sprintf("%.0f", iv.Sum.BPS/1e6))
			}
		}
		t.Logf("iperf3 TCP to %s: %d retransmits; the first second, left out: %s Mbit/s", dst, r.End.SumSent.Retransmits, strings.Join(first, ", "))
		return r.End.SumReceived.BPS
	}
	tcpBase := iperf("10.78.2.3", false)
	for _, what := range []string{"in the nodes", "in ouro ipnet programs"} {
		tcp := iperf(far[what], false)
		diag("after TCP " + what)
		udp := iperf(far[what], true)
		alive("after iperf3 " + what)
		t.Logf("iperf3 h1 → h3, bridges %s: TCP (MSS %d) %.1f Mbit/s, plain IP routed through h2 %.1f Mbit/s (%.3f); UDP at 200 Mbit/s offered: %.1f Mbit/s received",
			what, mss, tcp/1e6, tcpBase/1e6, tcp/tcpBase, udp/1e6)
		if what == "in ouro ipnet programs" && diagOn {
			for _, p := range bridges { // their counters, printed as they stop
				p.Stop()
				t.Logf("DIAG: ouro ipnet output:\n%s", p.Output())
			}
		}
		if tcp == 0 || udp == 0 {
			t.Fatalf("iperf3 carried nothing over the bridges %s", what)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// listenIn opens a TCP listener inside the network namespace ns: the
// socket belongs to the namespace it was made in.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type res struct {
		ln  net.Listener
		err error
	}
	ch := make(chan res)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- res{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ln
}

// sshAcross starts sshd (a host key and an authorized key of its own, no
// system configuration) in h3's namespace on addr:2222 and runs a
// command there with ssh from h1's: the "ssh runs a command" of the IP
// issue. Skipped without openssh-server and openssh-client.
func sshAcross(t *testing.T, inNS func(h, name string, args ...string) *exec.Cmd, addr string) {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		t.Log("SKIP: no sshd (apt-get install openssh-server): ssh not run")
		return
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Log("SKIP: no ssh (apt-get install openssh-client): ssh not run")
		return
	}
	dir := t.TempDir()
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "user.pub"))
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation directory
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("ListenAddress %s:2222\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n",
		addr, filepath.Join(dir, "host"), auth, filepath.Join(dir, "sshd.pid"))), 0o600); err != nil {
		t.Fatal(err)
	}
	d := inNS("h3", sshd, "-D", "-e", "-f", conf)
	var logb bytes.Buffer
	d.Stderr = &logb
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	var out []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err = inNS("h1", "ssh", "-p", "2222", "-i", filepath.Join(dir, "user"), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@"+addr, "echo", "hello from", "$(hostname)", "over", "ouro").CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !strings.Contains(string(out), "hello from") {
		t.Fatalf("ssh: %v\n%s\nsshd: %s", err, out, logb.String())
	}
	t.Logf("ssh h1 → h3 ran a command: %s", lastLine(string(out)))
}
