package kernel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"github.com/ouronet/ouro/kernel/logx"
	"log/slog"
	"testing"
	"time"
)

// jsonLines returns the JSON records logged into b.
func jsonLines(b *logx.Buffer) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
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
	var buf logx.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sys := &System{Components: []ComponentSpec{{Name: "lonely"}}}
	k := bootWith(t, Config{Log: log}, sys, map[string]Program{
		"lonely": func(pd *PD) error { return errors.New("lonely gave up") },
	})
	defer k.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range jsonLines(&buf) {
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
	t.Fatalf("no fault line logged; log:\n%s", buf.String())
}
