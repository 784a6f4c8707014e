package serial

import (
	"testing"
	"time"
)

// tcpPair returns a listening and a dialling device on 127.0.0.1.
func tcpPair(t testing.TB) (srv, cli *TCPDevice) {
	t.Helper()
	srv, err := ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cli, err = DialTCP(srv.Addr().String())
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	return srv, cli
}

// TestTCP runs two shims over a TCP stream (a QEMU chardev socket's
// wiring), then breaks the connection: the dialling side reconnects, the
// framing resynchronises and the session carries on.
func TestTCP(t *testing.T) {
	srv, cli := tcpPair(t)
	a, b := pairOn(t, cli, srv, Config{DeadTime: 2 * time.Second})
	exchange(t, a, b)
	client, server := dial(t, a, b, "srv")
	roundTrip(t, client, server, []byte("before"))

	cli.wmu.Lock()
	cli.wc.Close() // the cable is pulled for a moment
	cli.wmu.Unlock()
	waitFor(t, 3*time.Second, cli.Connected)
	deadline := time.Now().Add(3 * time.Second)
	for { // SDUs written during the reconnection may be lost
		if err := client.Write([]byte("after"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, err := server.Read(buf, time.Now().Add(100*time.Millisecond))
		if err == nil && string(buf[:n]) == "after" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing after the reconnection: %v", err)
		}
	}
	if l := a.ipcp.Link(); l.Ups != 1 {
		t.Errorf("link a %+v: want one session across the reconnection", l)
	}
}

// TestTCPPeerGone closes the listening side: the dialler keeps retrying,
// its link is found dead.
func TestTCPPeerGone(t *testing.T) {
	srv, cli := tcpPair(t)
	a := start(t, "a", cli, Config{})
	b := start(t, "b", srv, Config{})
	waitUp(t, a, b)
	b.ipcp.Stop()
	waitFor(t, 3*time.Second, func() bool { return a.ipcp.Link().State == "down" })
	waitFor(t, 3*time.Second, func() bool { return !cli.Connected() }) // the dialler saw the end of the stream
	if _, err := cli.Write([]byte{0}); err == nil {
		t.Error("write without a peer succeeded")
	}
}
