package kernel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer the kernel's goroutines may write while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestUnsupervisedFaultLogged checks that the fault of a component
// without a fault endpoint is logged at Warn, as JSON carrying the
// component's name, its incarnation and the reason as attributes.
func TestUnsupervisedFaultLogged(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sys := &System{Components: []ComponentSpec{{Name: "lonely"}}}
	k := bootWith(t, Config{Log: log}, sys, map[string]Program{
		"lonely": func(pd *PD) error { return errors.New("lonely gave up") },
	})
	defer k.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range buf.lines() {
			if m["msg"] != "component faulted" {
				continue
			}
			if m["level"] != "WARN" || m["component"] != "lonely" || m["incarnation"] != 1.0 || m["reason"] == nil {
				t.Fatalf("fault line: %v", m)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no fault line logged; log:\n%s", buf.b.String())
}
