package netstack

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/eth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// streamPair returns two Ethernet devices joined by a QEMU socket stream
// on 127.0.0.1, as a VM and a hosted node would be.
func streamPair(t *testing.T) (a, b eth.Device) {
	t.Helper()
	l, err := eth.ListenQEMU("127.0.0.1:0", net.HardwareAddr{2, 0, 0, 0, 10, 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := eth.DialQEMU(ctx, l.Addr().String(), net.HardwareAddr{2, 0, 0, 0, 10, 2})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	return l, d
}

func newStack(t *testing.T, dev eth.Device, addrs ...string) *Stack {
	t.Helper()
	cfg := Config{Runner: layertest.Runner{}}
	for _, a := range addrs {
		cfg.Addrs = append(cfg.Addrs, netip.MustParsePrefix(a))
	}
	s, err := New(dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func listen(t *testing.T, s *Stack, addr string) *UDPConn {
	t.Helper()
	c, err := s.ListenUDP(netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestUDPOverStream exchanges UDP datagrams of every size between two
// stacks in 127.0.10.0/24 over a QEMU socket stream (ARP included).
func TestUDPOverStream(t *testing.T) {
	da, db := streamPair(t)
	sa := newStack(t, da, "127.0.10.1/24")
	sb := newStack(t, db, "127.0.10.2/24")
	ca := listen(t, sa, "127.0.10.1:3435")
	cb := listen(t, sb, "0.0.0.0:3436")
	if got := cb.LocalAddr().(*net.UDPAddr).Port; got != 3436 {
		t.Fatalf("local port = %d, want 3436", got)
	}

	to := netip.MustParseAddrPort("127.0.10.2:3436")
	buf := make([]byte, 2048)
	// Frames the stacks send on their own at start-up (IPv6 DAD, router
	// solicitations) may be dropped before the stream's peer connected,
	// and on a loaded machine they go out late: the drops are counted
	// from after the first round trip (the stream is up both ways then),
	// and the rest of the exchange must not drop any.
	var before Stats
	for i, size := range []int{0, 1, 100, 1400, 1472} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := ca.WriteToUDPAddrPort(msg, to); err != nil {
			t.Fatalf("write %d bytes: %v", size, err)
		}
		n, from, err := readTimeout(cb, buf, 5*time.Second)
		if err != nil {
			t.Fatalf("read %d bytes: %v", size, err)
		}
		if !bytes.Equal(buf[:n], msg) || from != netip.MustParseAddrPort("127.0.10.1:3435") {
			t.Fatalf("got %d bytes from %v, want %d from 127.0.10.1:3435", n, from, size)
		}
		// and back
		if _, err := cb.WriteToUDPAddrPort(buf[:n], from); err != nil {
			t.Fatal(err)
		}
		if n, _, err = readTimeout(ca, buf, 5*time.Second); err != nil || n != size {
			t.Fatalf("reply: %d bytes, %v; want %d", n, err, size)
		}
		if i == 0 {
			before = sa.Stats()
		}
	}
	if st := sa.Stats(); st.TxFrames == 0 || st.RxFrames == 0 || st.TxDrops != before.TxDrops {
		t.Errorf("stats %+v (before the exchange: %+v): want frames both ways and no drops during it", st, before)
	}
}

// readTimeout reads with a deadline by closing the socket when it passes.
func readTimeout(c *UDPConn, b []byte, d time.Duration) (int, netip.AddrPort, error) {
	t := time.AfterFunc(d, func() { c.Close() })
	defer t.Stop()
	return c.ReadFromUDPAddrPort(b)
}

// TestCloseUnblocks checks that Close ends a blocked read with
// net.ErrClosed and that Stop closes the device.
func TestCloseUnblocks(t *testing.T) {
	da, db := streamPair(t)
	defer db.Close()
	s := newStack(t, da, "127.0.10.1/24")
	c := listen(t, s, "127.0.10.1:0")
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFromUDPAddrPort(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
	s.Stop()
	if err := da.WriteFrame(make([]byte, 60)); err == nil {
		t.Fatal("device still open after Stop")
	}
}

// TestMux runs a stack and an Ethernet-shim-like reader on one device:
// IP frames reach the stack, other EtherTypes the shim port.
func TestMux(t *testing.T) {
	da, db := streamPair(t)
	m := NewMux(da)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		m.Close()
		if err := <-ran; err != nil {
			t.Errorf("Run after cancel and Close: %v", err)
		}
	})
	shim, err := m.Open(PortShim)
	if err != nil {
		t.Fatal(err)
	}
	defer shim.Close()
	ipPort, err := m.Open(PortIP)
	if err != nil {
		t.Fatal(err)
	}
	sa := newStack(t, ipPort, "127.0.10.1/24")
	sb := newStack(t, db, "127.0.10.2/24")
	ca := listen(t, sa, "127.0.10.1:3435")
	cb := listen(t, sb, "127.0.10.2:3435")

	// A shim frame from b's side reaches the shim port only.
	frame := make([]byte, 60)
	copy(frame, eth.Broadcast[:])
	copy(frame[6:], db.MAC())
	frame[12], frame[13] = eth.EtherType>>8, eth.EtherType&0xff
	copy(frame[14:], "hello shim")
	if err := db.WriteFrame(frame); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := shim.ReadFrame(buf)
	if err != nil || !bytes.Equal(buf[:n], frame) {
		t.Fatalf("shim port: %d bytes, %v", n, err)
	}

	// UDP both ways through the IP port.
	if _, err := cb.WriteToUDPAddrPort([]byte("ping"), netip.MustParseAddrPort("127.0.10.1:3435")); err != nil {
		t.Fatal(err)
	}
	n, from, err := readTimeout(ca, buf, 5*time.Second)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("over the mux: %q, %v", buf[:n], err)
	}
	if _, err := ca.WriteToUDPAddrPort([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	if n, _, err = readTimeout(cb, buf, 5*time.Second); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("back over the mux: %q, %v", buf[:n], err)
	}
}
