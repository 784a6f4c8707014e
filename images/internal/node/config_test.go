package node

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/enroll"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// udpNode is a valid node with a UDP shim and a unicast layer over it;
// the mistakes below are edits of it (line numbers as in this text,
// counting from the first line after the backquote).
const udpNode = `[node]
name = "a"

[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:3435"
dir = { "b.uni" = "127.0.0.1:3436" }

[[ipcp]]
name = "a.uni"
kind = "unicast"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
bootstrap = true
admission = "open"
`

// TestConfigMistakes feeds each mistake a new user made (issue: the first
// hour) and more, and checks the message: the file's line, the table, the
// key and a hint.
func TestConfigMistakes(t *testing.T) {
	if _, err := ParseConfig([]byte(udpNode)); err != nil {
		t.Fatalf("the base configuration: %v", err)
	}
	for _, tc := range []struct {
		name string
		doc  string
		want []string // one regexp per mistake, in line order
	}{
		{"adr in [ipcp.udp]",
			strings.Replace(udpNode, `addr = "127.0.0.1:3435"`, `adr = "127.0.0.1:3435"`, 1),
			[]string{`^line 8: \[ipcp\.udp\] of \[\[ipcp\]\] #1: unknown key "adr"; did you mean "addr"\? \(accepted: addr, dir, hash, idle_timeout, max_flows_per_peer, max_pending_per_peer, max_sdu, recv_buffer, seal, seal_aead, seal_peers, seal_ticket_life, send_buffer, \[ipcp\.udp\.impair\], \[ipcp\.udp\.netstack\]\)$`}},
		{"max_sdu too small",
			strings.Replace(udpNode, `addr = "127.0.0.1:3435"`, "addr = \"127.0.0.1:3435\"\nmax_sdu = 100", 1),
			[]string{`\[ipcp\.udp\] of \[\[ipcp\]\] #1.*max_sdu = 100: want 576 to 65000 \(0: 1400\)`}},
		{"[ipcp.upd]",
			strings.Replace(udpNode, `[ipcp.udp]`, `[ipcp.upd]`, 1),
			[]string{`^line 7: \[\[ipcp\]\] #1: unknown table \[ipcp\.upd\]; did you mean \[ipcp\.udp\]\?`}},
		{"layr",
			strings.Replace(udpNode, `layer = "udp"`, `layr = "udp"`, 1),
			// and the unicast layer's lower layer "udp" no longer exists
			[]string{`^line 6: \[\[ipcp\]\] #1: unknown key "layr"; did you mean "layer"\? \(accepted: bufs, kind, layer, name, \[ipcp\.udp\]\)$`}},
		{"buffs",
			strings.Replace(udpNode, `layer = "udp"`, "layer = \"udp\"\nbuffs = 8192", 1),
			[]string{`^line 7: \[\[ipcp\]\] #1: unknown key "buffs"; did you mean "bufs"\?`}},
		{"los in impair",
			udpNode + "[ipcp.udp.impair]\nlos = 5\n",
			// an [ipcp.udp.impair] after [[ipcp]] #2 belongs to #2, a unicast IPCP
			[]string{`^line 19: \[\[ipcp\]\] #2 "a\.uni": table \[ipcp\.udp\] does not apply to kind "unicast"; its table is \[ipcp\.unicast\]$`}},
		{"los in impair of the udp shim",
			strings.Replace(udpNode, `dir = {`, "[ipcp.udp.impair]\nlos = 5\n[ipcp.udp.x]\ndir = {", 1),
			[]string{
				`^line 10: \[ipcp\.udp\.impair\] of \[\[ipcp\]\] #1: unknown key "los"; did you mean "loss"\? \(accepted: delay, duplicate, jitter, limit, loss, reorder, reorder_delay, seed\)$`,
				`^line 11: \[ipcp\.udp\] of \[\[ipcp\]\] #1: unknown table \[ipcp\.udp\.x\]`,
			}},
		{"bootstap",
			strings.Replace(udpNode, `bootstrap = true`, `bootstap = true`, 1),
			[]string{`^line 17: \[ipcp\.unicast\] of \[\[ipcp\]\] #2 "a\.uni": unknown key "bootstap"; did you mean "bootstrap"\?`}},
		{"ca none",
			udpNode + "ca = \"none\"\n",
			[]string{`^line 19: \[ipcp\.unicast\] of \[\[ipcp\]\] #2 "a\.uni": ca = "none" is not accepted; did you mean "nop"\? \(accepted values: mb-ecn, mb-ecn-local, nop\)$`}},
		{"kidn",
			strings.Replace(udpNode, `kind = "udp"`, `kidn = "udp"`, 1),
			// only the misspelling: not also "missing kind"
			[]string{`^line 5: \[\[ipcp\]\] #1: unknown key "kidn"; did you mean "kind"\?`}},
		{"no kind",
			strings.Replace(udpNode, "kind = \"udp\"\n", "", 1),
			[]string{`^line 4: \[\[ipcp\]\] #1: missing required key "kind" \(accepted values: broadcast, carrier, diode, eth, local, serial, udp, unicast\)$`}},
		{"unknown kind",
			strings.Replace(udpNode, `kind = "udp"`, `kind = "upd"`, 1),
			[]string{`^line 5: \[\[ipcp\]\] #1: kind = "upd" is not accepted; did you mean "udp"\?`}},
		{"routing, dir, sched, hash",
			udpNode + "routing = \"alternat\"\ndir = \"dth\"\nsched = \"fifo\"\nhash = \"sha-256\"\n",
			[]string{
				`^line 19: .*routing = "alternat" is not accepted; did you mean "alternate"\? \(accepted values: simple, alternate, multipath\)$`,
				`^line 20: .*dir = "dth" is not accepted; did you mean "dht"\? \(accepted values: dht, flood\)$`,
				`^line 21: .*sched = "fifo" is not accepted \(accepted values: strict, wrr\)$`,
				`^line 22: .*hash = "sha-256" is not accepted; did you mean "sha256"\?`,
			}},
		{"addr_width, hello, dead",
			udpNode + "addr_width = 6\nhello = 70000\ndead = 1\n",
			[]string{
				`^line 19: .*addr_width = 6 is not accepted \(accepted values: 4, 8\)$`,
				`^line 20: .*hello = 70000: want a period in ms from 1 to 60000`,
				`^line 21: .*dead = 1: want 2 to 100 hello periods`,
			}},
		{"ipnet",
			udpNode + "[[ipnet]]\nname = \"ip.a\"\ntun = \"ouro0\"\nroutes = [\"10.0.0.0/8=ip.b\", \"nonsense\"]\nrout = 1\n",
			[]string{`^line 19: \[\[ipnet\]\] #1: ipnet: route "nonsense": want PREFIX=NAME`, `^line 23: \[\[ipnet\]\] #1: unknown key "rout"; did you mean "routes"\?`}},
		{"seal_peers",
			udpNode + "seal = true\nseal_peers = [\"bogus\"]\n",
			[]string{`^line 15: .*seal_peers: "bogus" is not a node id`}},
		{"seal_aead",
			udpNode + "seal_aead = \"aes128gcm\"\n",
			[]string{`^line 15: .*seal_aead: "aes128gcm" \(want chacha20poly1305 or aes256gcm\)`}},
		{"bootstrap and enroll",
			udpNode + "enroll = \"b.uni\"\n",
			[]string{`^line 19: .*bootstrap and enroll are exclusive`}},
		{"lower layer typo",
			strings.Replace(udpNode, `lower = ["udp"]`, `lower = ["upd"]`, 1),
			[]string{`^line 16: .*lower layer "upd" is not a layer of this node; did you mean "udp"\? \(layers: udp, uni\)$`}},
		{"[ipcp.udp] under kind eth",
			"[[ipcp]]\nkind = \"eth\"\n[ipcp.udp]\naddr = \"127.0.0.1:1\"\n",
			[]string{
				`^line 1: \[ipcp\.eth\] of \[\[ipcp\]\] #1 ".*\.eth": missing the device: \[ipcp\.eth\] needs one of board, interface, qemu_connect, qemu_listen$`,
				`^line 3: \[\[ipcp\]\] #1: table \[ipcp\.udp\] does not apply to kind "eth"; its table is \[ipcp\.eth\]$`,
			}},
		{"two eth devices",
			"[[ipcp]]\nkind = \"eth\"\n[ipcp.eth]\ninterface = \"veth0\"\nboard = true\n",
			[]string{`^line 5: .*board and interface are exclusive`}},
		{"board value",
			"[[ipcp]]\nkind = \"eth\"\n[ipcp.eth]\nboard = \"usbb\"\n",
			[]string{`^line 4: .*board = "usbb" is not accepted; did you mean "usb"\?`}},
		{"bad addresses",
			strings.Replace(udpNode, `"127.0.0.1:3436"`, `"localhost:3436"`, 1) + "[ipcp.unicast.x]\n",
			[]string{
				`^line 9: \[ipcp\.udp\] of \[\[ipcp\]\] #1 "a\.udp": dir entry "b\.uni" = "localhost:3436": want host:port with an IP address`,
				`^line 19: \[ipcp\.unicast\] of \[\[ipcp\]\] #2 "a\.uni": unknown table \[ipcp\.unicast\.x\]`,
			}},
		{"types",
			strings.Replace(udpNode, `bootstrap = true`, "bootstrap = \"yes\"\nneighbours = \"b.uni\"", 1) + "[irm]\naccept_timeout = 5\nbacklog = 1.5\n",
			[]string{
				`^line 17: .*bootstrap = "yes": want true or false$`,
				`^line 18: .*neighbours = "b\.uni": want an array of strings`,
				`^line 21: \[irm\]: accept_timeout = 5: want a duration in quotes`,
				`^line 22: \[irm\]: backlog = 1\.5: want an integer$`,
			}},
		{"unknown top-level table",
			"[nodes]\nname = \"a\"\n",
			[]string{`^line 1: unknown table \[nodes\]; did you mean \[node\]\? \(accepted: \[\[app\]\], \[\[ipcp\]\], \[\[ipnet\]\], \[irm\], \[kernel\], \[node\]\)$`}},
		{"app",
			"[[app]]\nkind = \"ehco\"\n[[app]]\nname = \"x\"\n[[app]]\nkind = \"echo\"\nnmae = \"y\"\n",
			[]string{
				`^line 2: \[\[app\]\] #1: kind = "ehco" is not accepted; did you mean "echo"\? \(accepted values: echo, perf, halt, mgmt\)$`,
				`^line 3: \[\[app\]\] #2: missing required key "kind"`,
				`^line 7: \[\[app\]\] #3: unknown key "nmae"; did you mean "name"\?`,
			}},
		{"duplicate IPCP names",
			"[[ipcp]]\nkind = \"local\"\nname = \"x\"\n[[ipcp]]\nkind = \"local\"\nname = \"x\"\n",
			[]string{`^line 4: \[\[ipcp\]\] #2 "x": IPCP name "x" is already used by \[\[ipcp\]\] #1`}},
		{"bufs below minimum",
			"[[ipcp]]\nkind = \"local\"\nbufs = 10\n",
			[]string{`^line 3: .*bufs = 10 is below the minimum of 64$`}},
		{"syntax",
			"[node\nname = \"a\"\n",
			[]string{`^line 2: TOML syntax: expected '\.' or '\]' to end table name`}},
		{"negative procs",
			"[node]\nprocs = -1\n",
			[]string{`^line 2: \[node\]: procs = -1: 0 \(adapt to the load\) or how many processors`}},
		{"metrics on every interface",
			"[node]\nmetrics = \":9464\"\n",
			[]string{`^line 2: \[node\]: metrics = ":9464": not a loopback address: .* set metrics_public = true`}},
		{"metrics on a LAN address",
			"[node]\nmetrics = \"192.0.2.1:9464\"\n",
			[]string{`^line 2: \[node\]: metrics = "192.0.2.1:9464": not a loopback address`}},
		{"metrics without a port",
			"[node]\nmetrics = \"127.0.0.1\"\n",
			[]string{`^line 2: \[node\]: metrics = "127.0.0.1": want host:port`}},
		{"metrics host name",
			"[node]\nmetrics = \"example.org:9464\"\n",
			[]string{`^line 2: \[node\]: metrics = "example.org:9464": host "example.org": want an IP address or localhost`}},
		{"[ipcp.local] takes no keys",
			"[[ipcp]]\nkind = \"local\"\n[ipcp.local]\nx = 1\n",
			[]string{`^line 4: \[ipcp\.local\] of \[\[ipcp\]\] #1: unknown key "x" \(this table takes no keys\)$`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			if !errors.Is(err, flow.ErrInvalid) {
				t.Errorf("error %v does not wrap flow.ErrInvalid", err)
			}
			var es ConfigErrors
			if !errors.As(err, &es) {
				t.Fatalf("error %T %v is not a ConfigErrors", err, err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d mistakes, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(got[i]) {
					t.Errorf("mistake %d:\n got %s\nwant %s", i+1, got[i], w)
				}
			}
		})
	}
}

// TestNegativeDurations: the keys documented to turn off with a negative
// duration (idle_timeout, seal_ticket_life, announce: "-1s", never) take
// one, and reach their IPCP's table negative; other durations refuse one.
func TestNegativeDurations(t *testing.T) {
	doc := strings.Replace(udpNode, `dir = { "b.uni" = "127.0.0.1:3436" }`,
		"dir = { \"b.uni\" = \"127.0.0.1:3436\" }\nidle_timeout = \"-1s\"\nseal_ticket_life = \"-1s\"", 1) +
		"seal_ticket_life = \"-1m\"\n" +
		"[[ipcp]]\nkind = \"eth\"\n[ipcp.eth]\ninterface = \"veth0\"\nannounce = \"-1s\"\nidle_timeout = \"-2s\"\nseal_ticket_life = \"-1s\"\n"
	c, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatalf("negative durations where documented: %v", err)
	}
	var u udpConfig
	if err := c.decode(c.IPCPs[0].UDP, &u); err != nil {
		t.Fatal(err)
	}
	var e ethConfig
	if err := c.decode(c.IPCPs[2].Eth, &e); err != nil {
		t.Fatal(err)
	}
	if u.IdleTimeout.Duration != -time.Second || u.SealTicket.Duration != -time.Second ||
		e.Announce.Duration != -time.Second || e.IdleTimeout.Duration != -2*time.Second || e.SealTicket.Duration != -time.Second {
		t.Errorf("decoded udp %+v, eth %+v: want the negative durations", u, e)
	}
	_, err = ParseConfig([]byte(udpNode + "keepalive = \"-1s\"\n"))
	if err == nil || !strings.Contains(err.Error(), `keepalive = "-1s": want a duration like "250ms" or "10s" (not negative)`) {
		t.Errorf("a negative keepalive: %v", err)
	}
}

// TestMetricsAddrAccepted checks the [node] metrics addresses a node
// takes: loopback ones, and any with metrics_public.
func TestMetricsAddrAccepted(t *testing.T) {
	for _, doc := range []string{
		"[node]\nmetrics = \"127.0.0.1:9464\"\n",
		"[node]\nmetrics = \"[::1]:9464\"\n",
		"[node]\nmetrics = \"localhost:9464\"\n",
		"[node]\nmetrics = \":9464\"\nmetrics_public = true\n",
		"[node]\nmetrics = \"192.0.2.1:9464\"\nmetrics_public = true\n",
	} {
		if _, err := ParseConfig([]byte(doc)); err != nil {
			t.Errorf("refused %q: %v", doc, err)
		}
	}
}

// TestLoadConfigNamesFile checks that LoadConfig's mistakes carry the
// file name, as a compiler's do.
func TestLoadConfigNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.toml")
	doc := strings.Replace(udpNode, `bootstrap = true`, `bootstap = true`, 1)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	want := p + `:17: [ipcp.unicast] of [[ipcp]] #2 "a.uni": unknown key "bootstap"; did you mean "bootstrap"?`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("LoadConfig: %v\nwant prefix %s", err, want)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadConfig of a missing file: %v", err)
	}
}

// TestCreatedIPCPMistakes checks the lines of "ouro create --config"
// mistakes: those of the --config text itself.
func TestCreatedIPCPMistakes(t *testing.T) {
	n := ipcpFactory{node: "a", log: logx.Discard, devices: boardDevices{}}
	_, _, _, _, err := n.NewIPCP(irmCreate("udp", "a.udp2", "net", "addr = \"127.0.0.1:1\"\nadr = \"x\""))
	if err == nil || !strings.HasPrefix(err.Error(), `--config:2: [ipcp.udp] of [[ipcp]] #1 "a.udp2": unknown key "adr"`) {
		t.Fatalf("create with a misspelt key: %v", err)
	}
	_, _, _, _, err = n.NewIPCP(irmCreate("upd", "a.udp2", "net", ""))
	if err == nil || !strings.HasPrefix(err.Error(), `[[ipcp]] #1 "a.udp2": kind = "upd" is not accepted; did you mean "udp"?`) {
		t.Fatalf("create of an unknown kind: %v", err)
	}
	// A unicast IPCP created at run time names lower layers of the running
	// node, not of its own one-IPCP document.
	if _, _, _, _, err = n.NewIPCP(irmCreate("unicast", "a.uni2", "uni2", `lower = ["udp"]`)); err != nil {
		t.Fatalf("create unicast over the node's layers: %v", err)
	}
}

// TestChoicesMatchParsers keeps the accepted values that hints list in
// step with the parsers that use them.
func TestChoicesMatchParsers(t *testing.T) {
	for _, v := range append(hashChoice.values, hashChoice.aliases...) {
		if _, err := layer.ParseHashAlgo(v); err != nil {
			t.Errorf("hash %q listed but refused: %v", v, err)
		}
	}
	if _, err := layer.ParseHashAlgo("md5"); err == nil {
		t.Error("ParseHashAlgo accepts md5: the hash list is out of date")
	}
	for _, v := range append(routingChoice.values, routingChoice.aliases...) {
		if _, err := pff.ParseKind(v); err != nil {
			t.Errorf("routing %q listed but refused: %v", v, err)
		}
	}
	base := enroll.DefaultConfig("l")
	base.Admission = admission.Policy{Mode: admission.ModeOpen}
	for _, v := range caChoice.values {
		c := base
		c.CA = v
		if err := c.Validate(); err != nil {
			t.Errorf("ca %q listed but refused: %v", v, err)
		}
	}
	c := base
	c.CA = "none"
	if c.Validate() == nil {
		t.Error(`enroll accepts ca "none": the ca list is out of date`)
	}
	for _, w := range widthChoice.values {
		c := base
		c.AddrWidth = uint8(w[0] - '0')
		if err := c.Validate(); err != nil {
			t.Errorf("addr_width %s listed but refused: %v", w, err)
		}
	}
	for _, v := range append(schedChoice.values, dirChoice.values...) {
		u := unicastConfig{Sched: "strict", Dir: "dht", Bootstrap: true, Admission: "open"}
		if v == "strict" || v == "wrr" {
			u.Sched = v
		} else {
			u.Dir = v
		}
		if _, err := u.config(IPCPConfig{Name: "a", Layer: "l"}); err != nil {
			t.Errorf("%q listed but refused: %v", v, err)
		}
	}
}

// TestSuggest checks the "did you mean" distance.
func TestSuggest(t *testing.T) {
	keys := []string{"addr", "dir", "hash", "bootstrap", "kind", "layer", "bufs", "loss"}
	for in, want := range map[string]string{
		"adr": "addr", "bootstap": "bootstrap", "kidn": "kind", "layr": "layer", "buffs": "bufs",
		"los": "loss", "Kind": "kind", "xyz": "", "neighbours": "", "h": "",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDocumentedConfigs parses every TOML example of the documentation
// and every example file: what the docs show must be accepted.
func TestDocumentedConfigs(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	mds, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	mds = append(mds, filepath.Join(root, "README.md"))
	block := regexp.MustCompile("(?s)```toml\n(.*?)```")
	n := 0
	for _, md := range mds {
		b, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllSubmatch(b, -1) {
			n++
			// Examples may be parts of a node: their lower layers may be
			// in another example.
			if _, err := parseConfig(m[1], false); err != nil {
				t.Errorf("%s, TOML example %d: %v", md, i+1, err)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "docs", "examples", "*.toml"))
	for _, f := range files {
		n++
		if _, err := LoadConfig(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	if n < 8 {
		t.Errorf("found %d examples: is the documentation where this test looks?", n)
	}
}

// irmCreate is the request of "ouro create KIND NAME LAYER --config CONFIG".
func irmCreate(kind, name, layer, config string) ipcp.MgmtReq {
	req := ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: name, Layer: layer, Args: map[string]string{"kind": kind}}
	if config != "" {
		req.Args["config"] = config
	}
	return req
}

// TestKeyLines checks the line index on the TOML forms that may hide a
// key's line: multi-line strings and arrays, inline tables, quoted and
// dotted keys, comments and arrays of tables.
func TestKeyLines(t *testing.T) {
	doc := `# [[ipcp]] in a comment
a = """
[not = a table]
"""
b = [ 1,
  2, # ]
  3 ]
"q.k" = { x = 1, "y.z" = { w = 'lit]' } }
d.e = 1

[[ipcp]]
kind = "udp"
[[ipcp]]
kind = "eth"
[ipcp.eth.impair]
loss = 1
[[ipcp]]
[ipcp.udp]
s = '''
multi'''
t = 1
arr = [ { p = 1 },
  { p = 2 } ]
`
	lines := scanKeyLines(doc)
	for _, tc := range []struct {
		path []any
		want int
	}{
		{[]any{"a"}, 2},
		{[]any{"b"}, 5},
		{[]any{"q.k"}, 8},
		{[]any{"q.k", "x"}, 8},
		{[]any{"q.k", "y.z", "w"}, 8},
		{[]any{"d", "e"}, 9},
		{[]any{"ipcp", 0}, 11},
		{[]any{"ipcp", 0, "kind"}, 12},
		{[]any{"ipcp", 1, "kind"}, 14},
		{[]any{"ipcp", 1, "eth"}, 15},
		{[]any{"ipcp", 1, "eth", "impair", "loss"}, 16},
		{[]any{"ipcp", 2}, 17},
		{[]any{"ipcp", 2, "udp", "t"}, 21},
		{[]any{"ipcp", 2, "udp", "arr", 1, "p"}, 23},
		{[]any{"ipcp", 2, "udp", "nothing"}, 18}, // falls back to its table
	} {
		if got := lines.line(tc.path); got != tc.want {
			t.Errorf("line of %v = %d, want %d", tc.path, got, tc.want)
		}
	}
}

// FuzzParseConfig: any input is accepted or refused with ConfigErrors,
// never a panic or a hang.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(udpNode))
	f.Add([]byte("[[ipcp]]\nkind = \"eth\"\n[ipcp.eth]\nboard = \"usb\"\n[ipcp.eth.impair]\nloss = 1.5\n"))
	f.Add([]byte("a = { b = [ { c = '''x''' } ] }\n[[x.y]]\n[x.y.z]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseConfig(b)
		var es ConfigErrors
		if err != nil && !errors.As(err, &es) {
			t.Fatalf("error %T: %v", err, err)
		}
		scanKeyLines(string(b))
	})
}

// TestUnicastBufsHoldADeliveryQueue: by default a unicast IPCP's data
// path has room for one flow's whole delivery queue beside what forwarding
// keeps (unicast.DeliveryBufs), whether configured or created at run
// time; other kinds keep defaultBufs, and a bufs set is kept. With the
// budget of every other kind, the pool held 2,048 buffers, of which the
// delivery queues could take 512: less than one queue.
func TestUnicastBufsHoldADeliveryQueue(t *testing.T) {
	cfg, err := ParseConfig([]byte(udpNode))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range cfg.IPCPs {
		switch p.Kind {
		case "unicast":
			if got := unicastPoolBufs(p); got < unicast.DeliveryBufs {
				t.Errorf("%s: its data path makes %d buffers, want at least %d", p.Name, got, unicast.DeliveryBufs)
			}
		default:
			if p.Bufs != defaultBufs {
				t.Errorf("%s (%s): bufs %d, want %d", p.Name, p.Kind, p.Bufs, defaultBufs)
			}
		}
	}
	created, err := parseCreated([]byte("[node]\nname = \"a\"\n[[ipcp]]\nkind = \"unicast\"\nname = \"x\"\nlayer = \"uni\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := unicastPoolBufs(created.IPCPs[0]); got < unicast.DeliveryBufs {
		t.Errorf("created at run time: its data path makes %d buffers, want at least %d", got, unicast.DeliveryBufs)
	}
	set, err := ParseConfig([]byte(strings.Replace(udpNode, "kind = \"unicast\"\n", "kind = \"unicast\"\nbufs = 512\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.IPCPs {
		if p.Kind == "unicast" && p.Bufs != 512 {
			t.Errorf("bufs = 512 set: got %d", p.Bufs)
		}
	}
}

// TestKernelBufSize: a node's packet buffers hold the largest SDU its UDP
// shims are configured for (max_sdu) and a sealed SDU's tag; the
// kernel's default where none asks for more than flow.MaxSDU.
func TestKernelBufSize(t *testing.T) {
	for _, c := range []struct {
		extra string
		want  int
	}{{"", kernel.BufSize}, {"max_sdu = 1400", kernel.BufSize}, {"max_sdu = 8000", 8000 + bufSlack}, {"max_sdu = 65000", 65000 + bufSlack}} {
		doc := strings.Replace(udpNode, `addr = "127.0.0.1:3435"`, "addr = \"127.0.0.1:3435\"\n"+c.extra, 1)
		cfg, err := ParseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		if got := (&Node{cfg: cfg}).kernelBufSize(); got != c.want {
			t.Errorf("%q: buffers of %d bytes, want %d", c.extra, got, c.want)
		}
	}
}
