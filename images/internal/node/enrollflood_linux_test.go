package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/connmgr"
	"github.com/ouronet/ouro/layer/unicast/enroll"
)

// The enrollment flood between processes (issue 10: "an enrollment flood
// from an unauthorised node leaves honest allocations within 2x their
// normal time"). The in-process TestEnrollmentFlood (layer/unicast) puts
// the attacker on the same Go runtime as its victim, so the attacker's
// own signing and checking compete with the victim for the scheduler;
// here the attacker is another process, and with two or more CPUs and
// taskset(1) each side has a CPU of its own, as if it were another
// machine: the victim's nodes on CPU 0 in both the quiet and the flooded
// phase, the attacker on CPU 1.
//
// The roles run as this test binary re-executed: OURO_FLOOD_ROLE=victim
// (three nodes b - a - c in a layer that admits their keys only; b
// allocates flows to c's echo across a, 30 quiet, then 30 while the
// attacker floods a) and OURO_FLOOD_ROLE=attacker (a node x with an
// unlisted key whose 8 goroutines enroll at a without pause through its
// UDP shim).

const (
	floodRoleEnv = "OURO_FLOOD_ROLE"
	floodAddrEnv = "OURO_FLOOD_ADDR" // the attacker's target: a's UDP address
	floodForEnv  = "OURO_FLOOD_FOR"  // how long the attacker floods
	floodPinEnv  = "OURO_FLOOD_PIN"  // "1": the victim runs on CPU 0, the attacker goes on CPU 1
	// each phase allocates for floodPhase, at least floodAllocs times
	floodAllocs = 30
	floodPhase  = 3 * time.Second
)

// TestEnrollmentFloodAcrossProcesses runs the victim role (pinned to CPU
// 0 where it can be) and shows what it measured. Timings are figures,
// not checks: the test fails only if an attacker's enrollment succeeded,
// an honest allocation failed, or the flood never reached a.
func TestEnrollmentFloodAcrossProcesses(t *testing.T) {
	if os.Getenv(floodRoleEnv) != "" {
		t.Skip("a role's process runs only its role")
	}
	if testing.Short() {
		t.Skip("starts two processes and floods for seconds")
	}
	args := []string{os.Args[0], "-test.run", "^TestEnrollFloodVictim$", "-test.v", "-test.count=1"}
	env := append(os.Environ(), floodRoleEnv+"=victim")
	if pin := pinTo(0); pin != nil {
		args = append(pin, args...)
		env = append(env, floodPinEnv+"=1")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(l)
	}
	if err != nil {
		t.Fatalf("victim: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestEnrollFloodVictim") {
		t.Fatal("the victim's test did not run")
	}
}

// pinTo is the taskset prefix that runs a command on cpu, or nil where
// that cannot be done (one CPU, no taskset).
func pinTo(cpu int) []string {
	if runtime.NumCPU() < 2 {
		return nil
	}
	p, err := exec.LookPath("taskset")
	if err != nil {
		return nil
	}
	return []string{p, "-c", strconv.Itoa(cpu)}
}

func TestEnrollFloodVictim(t *testing.T) {
	if os.Getenv(floodRoleEnv) != "victim" {
		t.Skip("only as TestEnrollmentFloodAcrossProcesses's victim process")
	}
	ids := map[string]*identity.Identity{"a": newIdentity(t), "b": newIdentity(t), "c": newIdentity(t)}
	ports := map[string]int{"a": freeUDPPort(t), "b": freeUDPPort(t), "c": freeUDPPort(t)}
	policy := "allow"
	for _, n := range []string{"a", "b", "c"} {
		policy += " key=" + hex.EncodeToString(ids[n].Public())
	}
	cfg := func(name, uni, apps string) string {
		return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "a.uni" = "127.0.0.1:%d" }
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
%s
%s`, name, ports[name], ports["a"], name, uni, apps)
	}
	mgmtA, brA := mgmtApp("mgmt")
	startNodeApps(t, ids["a"], cfg("a", fmt.Sprintf("bootstrap = true\nadmission = %q", policy), ""), mgmtA)
	a := <-brA
	startNodeApps(t, ids["c"], cfg("c", `enroll = "a.uni"`, "[[app]]\nkind = \"echo\"\nname = \"echo\"\n"))
	appB, brB := app("client")
	startNodeApps(t, ids["b"], cfg("b", `enroll = "a.uni"`, ""), appB)
	b := <-brB

	alloc := func(ctx context.Context) (time.Duration, error) {
		start := time.Now()
		p, _, err := b.Alloc(ctx, "echo", flow.BestEffort())
		if err != nil {
			return 0, err
		}
		d := time.Since(start)
		p.Close()
		return d, nil
	}
	// the layer is up and c's name is known when an allocation succeeds
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := alloc(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never reached c's echo across a: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	median := func() time.Duration {
		var times []time.Duration
		for end := time.Now().Add(floodPhase); len(times) < floodAllocs || time.Now().Before(end); {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			d, err := alloc(ctx)
			cancel()
			if err != nil {
				t.Fatalf("honest allocation: %v", err)
			}
			times = append(times, d)
		}
		slices.Sort(times)
		return times[len(times)/2]
	}
	quiet := median()
	refusedBefore := refusals(t, a, "a.uni")

	// the attacker, on its own CPU
	args := []string{os.Args[0], "-test.run", "^TestEnrollFloodAttacker$", "-test.v", "-test.count=1"}
	pinned := os.Getenv(floodPinEnv) == "1"
	if pinned {
		args = append(pinTo(1), args...)
	}
	atk := exec.Command(args[0], args[1:]...)
	atk.Env = append(os.Environ(), floodRoleEnv+"=attacker", fmt.Sprintf("%s=127.0.0.1:%d", floodAddrEnv, ports["a"]), floodForEnv+"=60s")
	stdout, err := atk.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	atk.Stderr = atk.Stdout
	if err := atk.Start(); err != nil {
		t.Fatal(err)
	}
	defer atk.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log []string
	// the flood is on when the attacker says so and a has refused some
	flooding := time.After(30 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the attacker ended before flooding:\n%s", strings.Join(log, "\n"))
			}
			log = append(log, l)
			if strings.HasPrefix(l, "flooding") {
				break wait
			}
		case <-flooding:
			t.Fatalf("the attacker did not start in 30 s:\n%s", strings.Join(log, "\n"))
		}
	}
	time.Sleep(500 * time.Millisecond)
	flooded := median()
	refused := refusals(t, a, "a.uni") - refusedBefore
	atk.Process.Signal(os.Interrupt)
	for l := range lines {
		log = append(log, l)
	}
	atk.Wait()
	var attempts, enrolled string
	for _, l := range log {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "attempts" {
			attempts, enrolled = f[1], f[3]
		}
	}
	where := "pinned: victim CPU 0, attacker CPU 1"
	if !pinned {
		where = "not pinned (one CPU or no taskset)"
	}
	t.Logf("allocation b→c across a, median over %v each: %v quiet, %v during the flood (%.2fx); attacker (another process, %s): %s attempts, %s enrolled; a refused %d",
		floodPhase, quiet.Round(time.Microsecond), flooded.Round(time.Microsecond), float64(flooded)/float64(quiet), where, attempts, enrolled, refused)
	if enrolled != "0" {
		t.Fatalf("the attacker enrolled %s times:\n%s", enrolled, strings.Join(log, "\n"))
	}
	if refused == 0 {
		t.Fatalf("a refused nothing: the flood did not reach it\n%s", strings.Join(log, "\n"))
	}
}

// refusals is the sum of the refused.* counters in ipcp's stats.
func refusals(t *testing.T, b *irm.Broker, ipcp string) uint64 {
	t.Helper()
	var sum uint64
	for k, v := range statsRows(t, b, ipcp) {
		if strings.HasPrefix(k, "refused.") {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("stats %s: %s = %q", ipcp, k, v)
			}
			sum += n
		}
	}
	return sum
}

func TestEnrollFloodAttacker(t *testing.T) {
	if os.Getenv(floodRoleEnv) != "attacker" {
		t.Skip("only as TestEnrollFloodVictim's attacker process")
	}
	target := os.Getenv(floodAddrEnv)
	dur, err := time.ParseDuration(os.Getenv(floodForEnv))
	if err != nil || target == "" {
		t.Fatalf("%s=%q %s=%q", floodAddrEnv, target, floodForEnv, os.Getenv(floodForEnv))
	}
	idx := newIdentity(t)
	appX, brX := app("attacker")
	startNodeID(t, idx, fmt.Sprintf(`
[node]
name = "x"
[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "a.uni" = %q }
`, freeUDPPort(t), target), appX)
	br := <-brX
	doc, err := identity.NewDocument(idx, "x", "", identity.Measurement{}, time.Now()).Sign(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()
	go func() { // the victim ends the flood with SIGINT
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		select {
		case <-sig:
			stop()
		case <-ctx.Done():
		}
	}()
	var attempts, enrolled atomic.Uint64
	var wg sync.WaitGroup
	fmt.Println("flooding")
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				attempts.Add(1)
				dctx, cancel := context.WithTimeout(ctx, time.Second)
				port, _, err := connmgr.Dial(dctx, br, "a.uni", flow.Raw(), connmgr.Open{Purpose: connmgr.PurposeEnroll, Layer: "uni", Name: "x.uni"})
				if err == nil {
					if _, err := enroll.Enroll(dctx, port, enroll.Req{Name: "x.uni", Layer: "uni"}, enroll.Credentials{Signer: idx, Doc: doc},
						func(enroll.Config, enroll.Members) (layer.Addr, error) { return 7, nil }); err == nil {
						enrolled.Add(1)
					}
					port.Close()
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("attempts %d enrolled %d\n", attempts.Load(), enrolled.Load())
}

// startNodeApps starts a node from cfg with identity id, its in-node
// apps ([[app]]) and extras.
func startNodeApps(t *testing.T, id *identity.Identity, cfg string, extras ...Extra) *Node {
	t.Helper()
	c := parse(t, cfg)
	c.Identity = id
	return startParsedApps(t, c, AppEnv{}, extras...)
}
