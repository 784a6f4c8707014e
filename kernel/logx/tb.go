package logx

import (
	"bytes"
	"log/slog"
	"sync"
)

// TB is the part of testing.TB that Test uses.
type TB interface {
	Helper()
	Log(args ...any)
	Cleanup(func())
}

// Test returns a debug-level text logger writing each record through
// t.Log, for tests that show their components' logs; records arriving
// after the test ends are dropped (t.Log would panic).
func Test(t TB) *slog.Logger {
	w := &tbWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct {
	mu   sync.Mutex
	t    TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}
