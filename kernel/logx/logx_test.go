package logx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestOrNilDiscards(t *testing.T) {
	if Or(nil) == nil || Or(nil).Enabled(t.Context(), slog.LevelError) {
		t.Fatal("Or(nil) must be a logger that discards")
	}
	l := slog.Default()
	if Or(l) != l {
		t.Fatal("Or(l) must be l")
	}
}

func TestLevelSwitch(t *testing.T) {
	for _, tc := range []struct {
		level      string
		debug, inf bool
		warn       bool
	}{
		{"debug", true, true, true},
		{"info", false, true, true},
		{"warn", false, false, true},
		{"error", false, false, false},
		{"off", false, false, false},
	} {
		lv, err := ParseLevel(tc.level)
		if err != nil {
			t.Fatal(err)
		}
		if LevelName(lv) != tc.level {
			t.Errorf("LevelName(ParseLevel(%q)) = %q", tc.level, LevelName(lv))
		}
		var b bytes.Buffer
		l, err := New(&b, lv, "text")
		if err != nil {
			t.Fatal(err)
		}
		l.Debug("d-line")
		l.Info("i-line")
		l.Warn("w-line")
		got := b.String()
		for _, c := range []struct {
			msg  string
			want bool
		}{{"msg=d-line", tc.debug}, {"msg=i-line", tc.inf}, {"msg=w-line", tc.warn}} {
			if strings.Contains(got, c.msg) != c.want {
				t.Errorf("level %s: %s shown = %v, want %v; output:\n%s", tc.level, c.msg, !c.want, c.want, got)
			}
		}
	}
}

func TestJSONFormat(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, slog.LevelInfo, "json")
	if err != nil {
		t.Fatal(err)
	}
	l.With("component", "ipcp.a").Warn("component faulted", "incarnation", 2)
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b.String())
	}
	if m["level"] != "WARN" || m["msg"] != "component faulted" || m["component"] != "ipcp.a" || m["incarnation"] != 2.0 {
		t.Fatalf("fields: %v", m)
	}
}

func TestBadValuesNamed(t *testing.T) {
	if _, err := ParseLevel("verbose"); err == nil || !strings.Contains(err.Error(), `"verbose"`) {
		t.Fatalf("ParseLevel(verbose) = %v, want an error naming the value", err)
	}
	if _, err := New(nil, slog.LevelInfo, "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("New(xml) = %v, want an error naming the value", err)
	}
}

// TestBufferConcurrent: goroutines write a Buffer while it is read (the
// race detector checks the locking); every write is kept, whole.
func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("line\n"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(string(b.Bytes()), "line\n"); got != 800 {
		t.Fatalf("%d lines kept, want 800", got)
	}
}
