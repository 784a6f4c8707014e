// Package ipstacktest gives a test a TCP/IP stack of its own behind an
// IP bridge on a broker (a node's socket, an IRM session): an HTTP
// client whose every packet crosses ouro flows.
package ipstacktest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/images/internal/ipstack"
)

type goRunner struct{}

func (goRunner) Go(f func()) { go f() }

// Client starts a stack with address addr (ADDR/BITS) and a bridge bound
// as name on b with routes, and returns an HTTP client that dials from
// the stack. Both stop when the test ends.
func Client(t testing.TB, b flow.Broker, addr, name string, routes ...ipnet.Route) *http.Client {
	t.Helper()
	st, err := ipstack.New(netip.MustParsePrefix(addr), 1280)
	if err != nil {
		t.Fatal(err)
	}
	br, err := ipnet.New(ipnet.Config{Broker: b, Dev: st, Runner: goRunner{}, Name: name, Routes: routes})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return st.Dial(ctx, netip.MustParseAddrPort(addr))
		},
	}}
	t.Cleanup(func() {
		cancel()
		st.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("ipstacktest: bridge %s: %v", name, err)
		}
	})
	return client
}
