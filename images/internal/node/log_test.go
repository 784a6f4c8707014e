package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/ouronet/ouro/flow"
)

func parseLogConfig(t *testing.T, node string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte("[node]\nname = \"a\"\n" + node + "[[ipcp]]\nkind = \"local\"\n"))
	if err != nil {
		t.Fatalf("%q: %v", node, err)
	}
	return c
}

// TestLogSwitch checks [node] log as a level: debug shows a Debug line,
// warn hides an Info one, off and the default show nothing, and the bools
// it once was still mean info (true) and off (false).
func TestLogSwitch(t *testing.T) {
	for _, tc := range []struct {
		node        string
		debug, info bool
		warn        bool
	}{
		{"", false, false, false},
		{"log = \"debug\"\n", true, true, true},
		{"log = \"info\"\n", false, true, true},
		{"log = \"warn\"\n", false, false, true},
		{"log = \"error\"\n", false, false, false},
		{"log = \"off\"\n", false, false, false},
		{"log = true\n", false, true, true},
		{"log = false\n", false, false, false},
	} {
		c := parseLogConfig(t, tc.node)
		var b bytes.Buffer
		l, err := NewLogger(c, &b)
		if err != nil {
			t.Fatal(err)
		}
		l.Debug("d-line")
		l.Info("i-line")
		l.Warn("w-line")
		out := b.String()
		for _, w := range []struct {
			line string
			want bool
		}{{"level=DEBUG msg=d-line", tc.debug}, {"level=INFO msg=i-line", tc.info}, {"level=WARN msg=w-line", tc.warn}} {
			if strings.Contains(out, w.line) != w.want {
				t.Errorf("%q: %q shown = %v, want %v; log:\n%s", tc.node, w.line, !w.want, w.want, out)
			}
		}
		if tc.warn && !strings.Contains(out, "node=a") {
			t.Errorf("%q: lines lack the node's name: %s", tc.node, out)
		}
	}
}

// TestLogJSON checks log_format = "json": each line is a JSON object
// with the level, the message, the node and the record's attributes.
func TestLogJSON(t *testing.T) {
	c := parseLogConfig(t, "log = \"info\"\nlog_format = \"json\"\n")
	var b bytes.Buffer
	l, err := NewLogger(c, &b)
	if err != nil {
		t.Fatal(err)
	}
	l.With("component", "ipcp.x").Warn("component faulted", "reason", "boom")
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b.String())
	}
	for k, v := range map[string]any{"level": "WARN", "msg": "component faulted", "node": "a", "component": "ipcp.x", "reason": "boom"} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, m[k], v, b.String())
		}
	}
}

// TestLogBadValues checks that a bad level or format is refused with its
// line and the accepted values.
func TestLogBadValues(t *testing.T) {
	for node, want := range map[string]string{
		"log = \"verbose\"\n":    `^line 3: \[node\]: log = "verbose" is not accepted.*\(accepted values: debug, info, warn, error, off, true, false\)$`,
		"log = \"infoo\"\n":      `^line 3: \[node\]: log = "infoo" is not accepted; did you mean "info"\?`,
		"log = 3\n":              `^line 3: \[node\]: log = 3: want a level`,
		"log_format = \"xml\"\n": `^line 3: \[node\]: log_format = "xml" is not accepted.*\(accepted values: text, json\)$`,
	} {
		_, err := ParseConfig([]byte("[node]\nname = \"a\"\n" + node + "[[ipcp]]\nkind = \"local\"\n"))
		if err == nil {
			t.Errorf("%q accepted", node)
			continue
		}
		if !errors.Is(err, flow.ErrInvalid) || !regexp.MustCompile(want).MatchString(err.Error()) {
			t.Errorf("%q: %v, want /%s/", node, err, want)
		}
	}
}
