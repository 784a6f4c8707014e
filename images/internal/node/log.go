package node

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
)

// LogLevel is [node] log: a level name, or a bool as the key once was
// (true: "info", false: "off"). The zero value is "off".
type LogLevel string

// UnmarshalTOML reads a level name or a bool.
func (l *LogLevel) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		*l = "off"
		if v {
			*l = "info"
		}
		return nil
	case string:
		lv, err := logx.ParseLevel(v)
		if err != nil {
			return fmt.Errorf("log = %q: %w: %w", v, err, flow.ErrInvalid)
		}
		*l = LogLevel(logx.LevelName(lv))
		return nil
	}
	return fmt.Errorf("log = %v: want a level or true/false: %w", v, flow.ErrInvalid)
}

// Level is l as a slog level; "" is off.
func (l LogLevel) Level() (slog.Level, error) {
	if l == "" {
		return logx.Off, nil
	}
	return logx.ParseLevel(string(l))
}

// NewLogger returns the logger [node] log and log_format ask for,
// writing to w, with the node's name as "node" on every record.
func NewLogger(cfg *Config, w io.Writer) (*slog.Logger, error) {
	lv, err := cfg.Node.Log.Level()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	l, err := logx.New(w, lv, cfg.Node.LogFormat)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if cfg.Node.Name != "" {
		l = l.With("node", cfg.Node.Name)
	}
	return l, nil
}
