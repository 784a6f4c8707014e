package node

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/ouronet/ouro/flow"
)

// fakeNIC returns its queued frames in batches of up to batch frames.
type fakeNIC struct {
	queue [][]byte
	batch int
	sent  [][]byte
}

func (f *fakeNIC) Receive(frames [][]byte, sizes []int) (int, error) {
	if len(f.queue) == 0 {
		return 0, errors.New("empty")
	}
	n := 0
	for n < len(frames) && n < f.batch && len(f.queue) > 0 {
		sizes[n] = copy(frames[n], f.queue[0])
		f.queue = f.queue[1:]
		n++
	}
	return n, nil
}

func (f *fakeNIC) Transmit(frames [][]byte) (int, error) {
	for _, fr := range frames {
		f.sent = append(f.sent, append([]byte(nil), fr...))
	}
	return len(frames), nil
}

func (f *fakeNIC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, 1} }
func (f *fakeNIC) Close() error                   { return nil }

func TestNICDevice(t *testing.T) {
	frames := [][]byte{bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, 1514), bytes.Repeat([]byte{3}, 100)}
	nic := &fakeNIC{queue: append([][]byte(nil), frames...), batch: 2}
	d := newNICDevice("fake", nic, 1518, 1500)
	buf := make([]byte, 2048)
	for i, want := range frames {
		n, err := d.ReadFrame(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("frame %d: got %d bytes, %v; want %d bytes", i, n, err, len(want))
		}
	}
	if _, err := d.ReadFrame(buf); err == nil {
		t.Error("read past the last frame: got no error")
	}
	nic.queue = [][]byte{make([]byte, 200)}
	if _, err := d.ReadFrame(make([]byte, 100)); !errors.Is(err, flow.ErrTruncated) {
		t.Errorf("frame larger than the buffer: got %v, want ErrTruncated", err)
	}
	if err := d.WriteFrame([]byte("frame")); err != nil || len(nic.sent) != 1 || string(nic.sent[0]) != "frame" {
		t.Errorf("write: %v, sent %q", err, nic.sent)
	}
	if d.MTU() != 1500 || d.MAC().String() != "02:00:00:00:00:01" {
		t.Errorf("MTU %d, MAC %v", d.MTU(), d.MAC())
	}
}
