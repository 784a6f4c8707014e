package netstack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/shim/eth"
)

// fakeNIC is a Waker device fed by the test: rx frames in, tx frames out.
type fakeNIC struct {
	rx     chan []byte
	tx     chan []byte
	wake   chan struct{}
	closed chan struct{}
}

var (
	_ eth.Device = (*fakeNIC)(nil)
	_ Waker      = (*fakeNIC)(nil)
)

func newFakeNIC() *fakeNIC {
	return &fakeNIC{rx: make(chan []byte, 16), tx: make(chan []byte, 16), wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (d *fakeNIC) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-d.rx:
		return copy(b, f), nil
	case <-d.wake:
		return 0, ErrWoken
	case <-d.closed:
		return 0, net.ErrClosed
	}
}

func (d *fakeNIC) WriteFrame(b []byte) error {
	d.tx <- append([]byte(nil), b...)
	return nil
}

func (d *fakeNIC) MAC() net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, 9} }
func (d *fakeNIC) MTU() int              { return 1500 }
func (d *fakeNIC) Close() error          { close(d.closed); return nil }
func (d *fakeNIC) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// frame is a 60-byte frame of EtherType et carrying payload.
func frame(et uint16, payload string) []byte {
	f := make([]byte, 60)
	copy(f, eth.Broadcast[:])
	f[12], f[13] = byte(et>>8), byte(et)
	copy(f[14:], payload)
	return f
}

// run runs m.Run in a goroutine standing for the driver component; stop
// cancels it, wakes the device and returns Run's result.
func run(m *Mux) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return func() error {
		cancel()
		m.Wake()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("Run did not return 5s after cancel and Wake")
		}
	}
}

func readPort(t *testing.T, p *MuxPort) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 2048)
		n, err := p.ReadFrame(b)
		if err != nil {
			got <- nil
			return
		}
		got <- b[:n]
	}()
	select {
	case b := <-got:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no frame on the port in 5s")
		return nil
	}
}

// TestMuxRunAgain: Run ends on cancel (woken out of a blocked read), runs
// again, and the ports' handles carry on across the gap: the driver's
// restart is invisible to the shims but for frames lost meanwhile.
func TestMuxRunAgain(t *testing.T) {
	d := newFakeNIC()
	m := NewMux(d)
	defer m.Close()
	shim, err := m.Open(PortShim)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := m.Open(PortIP)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		stop := run(m)
		d.rx <- frame(eth.EtherType, "shim")
		d.rx <- frame(0x0800, "ip")
		if got := readPort(t, shim); !bytes.Contains(got, []byte("shim")) {
			t.Fatalf("run %d: shim port got %q", i, got)
		}
		if got := readPort(t, ip); !bytes.Contains(got, []byte("ip")) {
			t.Fatalf("run %d: IP port got %q", i, got)
		}
		if err := stop(); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if err := shim.WriteFrame(frame(eth.EtherType, "out")); err != nil {
		t.Fatal(err)
	}
	if got := <-d.tx; !bytes.Contains(got, []byte("out")) {
		t.Fatalf("device wrote %q", got)
	}
	if s := m.Stats(); s.Runs != 3 || s.RxFrames != 6 {
		t.Fatalf("got %+v, want 3 runs, 6 frames", s)
	}
}

// TestMuxOpen: one handle per port at a time; closing a handle frees the
// port and leaves the device open; Close ends the device for the ports.
func TestMuxOpen(t *testing.T) {
	d := newFakeNIC()
	m := NewMux(d)
	stop := run(m)
	p, err := m.Open(PortShim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Open(PortShim); err == nil {
		t.Fatal("a second Open of an open port succeeded")
	}
	if _, err := m.Open(2); err == nil {
		t.Fatal("Open(2) succeeded")
	}
	p.Close()
	if _, err := p.ReadFrame(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed handle: %v, want net.ErrClosed", err)
	}
	select {
	case <-d.closed:
		t.Fatal("closing a handle closed the device")
	default:
	}
	p2, err := m.Open(PortShim)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	d.rx <- frame(eth.EtherType, "again")
	if got := readPort(t, p2); !bytes.Contains(got, []byte("again")) {
		t.Fatalf("reopened port got %q", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := p2.ReadFrame(make([]byte, 100)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after Close: %v, want io.EOF", err)
	}
}

// TestMuxDeviceEnds: Run returns an error once the device ends, and the
// ports see io.EOF.
func TestMuxDeviceEnds(t *testing.T) {
	d := newFakeNIC()
	m := NewMux(d)
	p, _ := m.Open(PortIP)
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	d.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Run: %v, want the device's end", err)
	}
	if _, err := p.ReadFrame(make([]byte, 100)); !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v, want io.EOF", err)
	}
}

// TestMuxWriteFrames: a device that is not a BatchWriter gets the frames
// one by one, in order; after Close none.
func TestMuxWriteFrames(t *testing.T) {
	d := newFakeNIC()
	m := NewMux(d)
	n, err := m.WriteFrames([][]byte{frame(eth.EtherType, "one"), frame(eth.EtherType, "two")})
	if n != 2 || err != nil {
		t.Fatalf("WriteFrames: %d, %v; want 2, nil", n, err)
	}
	for _, want := range []string{"one", "two"} {
		if got := <-d.tx; !bytes.Contains(got, []byte(want)) {
			t.Fatalf("device got %q, want %q", got, want)
		}
	}
	m.Close()
	if n, err := m.WriteFrames([][]byte{frame(eth.EtherType, "late")}); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("WriteFrames after Close: %d, %v; want 0, io.EOF", n, err)
	}
}
