// Package logx holds the few helpers every component shares for its
// *slog.Logger: a nil logger means discard (Or), the node's level names
// (ParseLevel) and a handler built from the node's one switch (New).
package logx

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// discard is the logger a component gets when its config's Log is nil.
var discard = slog.New(slog.DiscardHandler)

// Or returns l, or a logger that discards everything when l is nil.
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discard
	}
	return l
}

// Discard returns a logger that writes nothing.
func Discard() *slog.Logger { return discard }

// Off is the level above every record: a handler at Off writes nothing.
const Off = slog.Level(1 << 20)

// Levels are the accepted level names, in order.
var Levels = []string{"debug", "info", "warn", "error", "off"}

// ParseLevel reads a level name ("debug", "info", "warn", "error" or
// "off", any case); the error names the bad value and the accepted ones.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "off":
		return Off, nil
	}
	return 0, fmt.Errorf("log level %q: want one of %s", s, strings.Join(Levels, ", "))
}

// LevelName is the name ParseLevel reads for l.
func LevelName(l slog.Level) string {
	if l >= Off {
		return "off"
	}
	return strings.ToLower(l.String())
}

// Formats are the accepted output formats.
var Formats = []string{"text", "json"}

// New returns a logger writing records at level and above to w, as
// slog's text ("text" or "") or JSON ("json") handler; at Off it is the
// discarding logger.
func New(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	if level >= Off {
		return discard, nil
	}
	o := &slog.HandlerOptions{Level: level}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// Err is err as the "err" attribute, or an empty attribute (which
// handlers leave out) when err is nil.
func Err(err error) slog.Attr {
	if err == nil {
		return slog.Attr{}
	}
	return slog.Any("err", err)
}
