package node

import (
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is a node's configuration, as read from TOML (see docs/config.md).
type Config struct {
	Node   NodeConfig   `toml:"node"`
	Kernel KernelConfig `toml:"kernel"` // isolation.go
	IRM    IRMConfig    `toml:"irm"`
	IPCPs  []IPCPConfig `toml:"ipcp"`
	Apps   []AppConfig  `toml:"app"` // in-node applications (apps.go)

	md   toml.MetaData // for decoding each IPCP's kind-specific table
	mdMu sync.Mutex    // PrimitiveDecode writes md: IPCP components decode concurrently
}

// NodeConfig holds node-wide settings.
type NodeConfig struct {
	// Name is the node's name; on boards it defaults to the hardware name.
	Name string `toml:"name"`
	// Socket is the Unix socket where hosted programs reach the node.
	Socket string `toml:"socket"`
	// Log enables event logging on standard error.
	Log bool `toml:"log"`
	// SocketGroup, SocketPublic, SessionBufs and MaxSessions: who may use
	// the socket, and each program's budget (isolation.go).
	SocketGroup  string `toml:"socket_group"`
	SocketPublic bool   `toml:"socket_public"`
	SessionBufs  int    `toml:"session_bufs"`
	MaxSessions  int    `toml:"max_sessions"`
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
}

// duration is a time.Duration written as a string ("250ms").
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseConfig decodes and validates a TOML configuration.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		// Kind-specific tables are decoded later; anything else is a typo.
		for _, k := range und {
			if len(k) >= 2 && k[0] == "ipcp" {
				continue
			}
			return nil, fmt.Errorf("config: unknown key %q", k.String())
		}
	}
	c.md = md
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadConfig reads and parses the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) validate() error {
	if c.Node.Name == "" {
		h, _ := os.Hostname()
		c.Node.Name = h
	}
	if !nameRE.MatchString(c.Node.Name) {
		return fmt.Errorf("config: node name %q: letters, digits, '.', '_' and '-' only, at most 64", c.Node.Name)
	}
	seen := make(map[string]bool)
	for i := range c.IPCPs {
		p := &c.IPCPs[i]
		if p.Kind == "" {
			return fmt.Errorf("config: ipcp #%d: no kind", i+1)
		}
		if p.Name == "" {
			p.Name = c.Node.Name + "." + p.Kind
		}
		if p.Layer == "" {
			p.Layer = p.Kind
		}
		if !nameRE.MatchString(p.Name) || !nameRE.MatchString(p.Layer) {
			return fmt.Errorf("config: ipcp %q in layer %q: bad name", p.Name, p.Layer)
		}
		if seen[p.Name] {
			return fmt.Errorf("config: ipcp %q declared twice", p.Name)
		}
		seen[p.Name] = true
		if p.Bufs == 0 {
			p.Bufs = 4096
		}
		if p.Bufs < 64 {
			return fmt.Errorf("config: ipcp %q: bufs %d is below the minimum of 64", p.Name, p.Bufs)
		}
	}
	return nil
}

// decode decodes the kind-specific table prim into v.
func (c *Config) decode(prim toml.Primitive, v any) error {
	c.mdMu.Lock()
	defer c.mdMu.Unlock()
	return c.md.PrimitiveDecode(prim, v)
}
