package node

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer/unicast"
)

// Config is a node's configuration, as read from TOML (see docs/config.md).
type Config struct {
	Node   NodeConfig    `toml:"node"`
	Kernel KernelConfig  `toml:"kernel"` // isolation.go
	IRM    IRMConfig     `toml:"irm"`
	IPCPs  []IPCPConfig  `toml:"ipcp"`
	Apps   []AppConfig   `toml:"app"`   // in-node applications (apps.go)
	IPNets []IPNetConfig `toml:"ipnet"` // IP bridges (ipnet.go)

	// Identity and Measurement, set by the image rather than the file:
	// the node's key (a board's, derived from its hardware unique key)
	// and what the image measured of itself. identity.go.
	Identity    *identity.Identity   `toml:"-"`
	Measurement identity.Measurement `toml:"-"`
	Board       string               `toml:"-"`

	md   toml.MetaData // for decoding each IPCP's kind-specific table
	mdMu sync.Mutex    // PrimitiveDecode writes md: IPCP components decode concurrently
}

// NodeConfig holds node-wide settings.
type NodeConfig struct {
	// Name is the node's name; on boards it defaults to the hardware name.
	Name string `toml:"name"`
	// Socket is the Unix socket where hosted programs reach the node.
	Socket string `toml:"socket"`
	// Log is the level of the node's log: "debug", "info", "warn",
	// "error" or "off" (the default); true means "info", false "off"
	// (what the key meant when it was a bool). The router's -log flag
	// overrides it. Hosted nodes log on standard error, boards on the
	// console.
	Log LogLevel `toml:"log"`
	// LogFormat is "text" (the default: slog's key=value lines) or
	// "json" (one JSON object a line).
	LogFormat string `toml:"log_format"`
	// SocketGroup, SocketPublic, SessionBufs and MaxSessions: who may use
	// the socket, and each program's budget (isolation.go).
	SocketGroup  string `toml:"socket_group"`
	SocketPublic bool   `toml:"socket_public"`
	SessionBufs  int    `toml:"session_bufs"`
	MaxSessions  int    `toml:"max_sessions"`
	// Key is the file holding the node's ed25519 identity key (PEM),
	// created (mode 0600) on first start. Empty: hosted nodes make an
	// ephemeral key per start; boards derive theirs from the hardware
	// unique key (Config.Identity). See identity.go.
	Key string `toml:"key"`
	// Metrics is the host:port where a hosted node serves its metrics in
	// the Prometheus text format over HTTP, at /metrics
	// (docs/observability.md); empty: none. A loopback address unless
	// MetricsPublic: the metrics are served to whoever connects.
	Metrics string `toml:"metrics"`
	// MetricsPublic allows Metrics on an address other hosts can reach.
	MetricsPublic bool `toml:"metrics_public"`
	// Procs is how many processors a hosted node's Go scheduler uses
	// (GOMAXPROCS): 0, the default, adapts (one while the node is
	// quiet, all it may use once it is busy: images/internal/procs); a
	// number fixes it. $GOMAXPROCS, when set, fixes it too.
	Procs int `toml:"procs"`
}

// IRMConfig tunes the IRM.
type IRMConfig struct {
	RingSize      int      `toml:"ring_size"`
	AcceptTimeout duration `toml:"accept_timeout"`
	QueryTimeout  duration `toml:"query_timeout"`
	Backlog       int      `toml:"backlog"`
	// AutoRegister registers a name in every layer when a program binds
	// it. Default true.
	AutoRegister *bool `toml:"auto_register"`
	// CallTimeout and the restart back-off (isolation.go).
	CallTimeout   duration `toml:"call_timeout"`
	RestartMin    duration `toml:"restart_min"`
	RestartMax    duration `toml:"restart_max"`
	RestartStable duration `toml:"restart_stable"`
}

// IPCPConfig declares one IPCP: its kind selects the kind-specific table
// of the same name ([ipcp.udp], [ipcp.eth], ...).
type IPCPConfig struct {
	Name  string `toml:"name"`
	Kind  string `toml:"kind"`
	Layer string `toml:"layer"`
	// Bufs is the IPCP component's packet-buffer budget.
	Bufs int `toml:"bufs"`

	UDP       toml.Primitive `toml:"udp"`
	Eth       toml.Primitive `toml:"eth"`
	Local     toml.Primitive `toml:"local"`
	Unicast   toml.Primitive `toml:"unicast"`
	Broadcast toml.Primitive `toml:"broadcast"`
	Serial    toml.Primitive `toml:"serial"`
	Diode     toml.Primitive `toml:"diode"`   // intermittent.go
	Carrier   toml.Primitive `toml:"carrier"` // intermittent.go
}

// duration is a time.Duration written as a string ("250ms"). The
// configuration check refuses a negative one.
type duration struct{ time.Duration }

// offDuration is a duration whose negative value ("-1s") turns what it
// times off ("never"): the keys documented so (idle_timeout,
// seal_ticket_life, announce).
type offDuration struct{ duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// validName reports whether s is a name the configuration accepts for a
// node, IPCP, layer, app or bridge: a letter or digit, then up to 63
// letters, digits, '.', '_' and '-' (the regular expression
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$, written out so that board images do
// not link package regexp: FuzzValidName compares the two).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ParseConfig decodes and checks a TOML configuration (docs/config.md).
// It refuses unknown keys and tables, values of the wrong type or outside
// their accepted set, missing required keys and kind-specific tables of
// another kind, before anything starts: the error is a ConfigErrors, one
// ConfigError per mistake with its line and a hint.
func ParseConfig(data []byte) (*Config, error) { return parseConfig(data, true) }

// parseConfig is ParseConfig; standalone is false for the one-IPCP
// document of an IPCP created at run time, whose lower layers are the
// running node's.
func parseConfig(data []byte, standalone bool) (*Config, error) {
	doc := string(data)
	var raw map[string]any
	if _, err := toml.Decode(doc, &raw); err != nil {
		return nil, syntaxError(err)
	}
	k := newChecker(doc)
	k.structure(raw)
	k.structural = len(k.errs) > 0
	var c Config
	md, err := toml.Decode(doc, &c)
	if err != nil {
		if len(k.errs) == 0 { // the structure check should have said why
			k.errs = append(k.errs, syntaxError(err)...)
		}
		return nil, k.sorted()
	}
	c.md = md
	c.defaults()
	k.values(&c, standalone)
	if len(k.errs) == 0 {
		// Everything is decoded now (the kind tables by values): a key
		// left over is one the checks above do not know.
		for _, key := range c.md.Undecoded() {
			k.errs = append(k.errs, &ConfigError{Key: key.String(), Msg: fmt.Sprintf("unknown key %q", key.String())})
		}
	}
	if len(k.errs) > 0 {
		return nil, k.sorted()
	}
	return &c, nil
}

// parseCreated parses the document NewIPCP builds for "ouro create": a
// generated header, then the user's --config text after the first
// "[ipcp.<kind>]" line. Mistakes in that text are reported by its own
// line numbers ("--config:2: ..."), others without a line.
func parseCreated(doc []byte) (*Config, error) {
	c, err := parseConfig(doc, false)
	var es ConfigErrors
	if err == nil || !errors.As(err, &es) {
		return c, err
	}
	header := 0
	for i, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "[ipcp.") {
			header = i + 1
			break
		}
	}
	for _, e := range es {
		if header > 0 && e.Line > header {
			e.File, e.Line = "--config", e.Line-header
		} else {
			e.Line = 0
		}
	}
	return nil, es
}

// LoadConfig reads and parses the configuration file at path; every
// mistake names the file and line.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, inFile(err, path)
	}
	return c, nil
}

// unicastPoolBufs is how many packet buffers a unicast IPCP's data path
// may make (unicast.Config.Bufs) from its component's budget: at most
// 1/unicastPoolDiv of it, charged as they are made; the rest is for the
// buffers it pushes into its flows' rings.
func unicastPoolBufs(p IPCPConfig) int { return max(p.Bufs/unicastPoolDiv, 1) }

const unicastPoolDiv = 2

// defaultBufs is an IPCP's packet-buffer budget when its bufs is unset
// (a unicast IPCP's is what gives its data path unicast.DeliveryBufs).
const defaultBufs = 4096

// defaults fills the node name (the host name) and each IPCP's name
// (<node>.<kind>), layer (the kind) and buffer budget (defaultBufs; a
// unicast IPCP's enough for unicast.DeliveryBufs in its data path).
func (c *Config) defaults() {
	if c.Node.Name == "" {
		h, _ := os.Hostname()
		c.Node.Name = h
	}
	for i := range c.IPCPs {
		p := &c.IPCPs[i]
		if p.Name == "" {
			p.Name = c.Node.Name + "." + p.Kind
		}
		if p.Layer == "" {
			p.Layer = p.Kind
		}
		if p.Bufs == 0 {
			p.Bufs = defaultBufs
			if p.Kind == "unicast" {
				// Its data path makes its buffers from half of
				// it (unicastPoolBufs): room for one flow's
				// whole delivery queue.
				p.Bufs = max(defaultBufs, unicastPoolDiv*unicast.DeliveryBufs)
			}
		}
	}
}

// decode decodes the kind-specific table prim into v.
func (c *Config) decode(prim toml.Primitive, v any) error {
	c.mdMu.Lock()
	defer c.mdMu.Unlock()
	return c.md.PrimitiveDecode(prim, v)
}
