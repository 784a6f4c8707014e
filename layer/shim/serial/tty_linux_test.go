package serial

import "testing"

// TestPTY runs two shims over a real pseudo-terminal pair, in raw mode:
// the line discipline must pass every byte value through unchanged.
func TestPTY(t *testing.T) {
	m, s := openPTY(t)
	a, b := pairOn(t, m, s, Config{})
	exchange(t, a, b)
	if l := b.ipcp.Link(); l.BadCRC+l.BadCOBS+l.Short+l.TooLong != 0 {
		t.Errorf("damaged frames over a pty: %+v", l)
	}
}

func TestOpenTTYErrors(t *testing.T) {
	if _, err := OpenTTY("/dev/null", 12345); err == nil {
		t.Error("baud 12345 accepted")
	}
	if _, err := OpenTTY("/nonexistent/tty", 0); err == nil {
		t.Error("missing device opened")
	}
	f, err := OpenTTY("/dev/null", 0) // not a tty: no termios
	if err == nil {
		f.Close()
		t.Error("/dev/null accepted as a tty")
	}
}
