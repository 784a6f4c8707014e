package flowtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// TestHTTP serves net/http on name through server.Listen and, with an
// http.Client whose transport dials through client.Dial, fetches a 1 MB
// body and uploads one: both must cross intact. It runs the same over the
// fake Broker and over real nodes. It stops the server and closes idle
// connections before returning; the Clients stay open.
func TestHTTP(t *testing.T, client, server *flow.Client, name string) {
	t.Helper()
	body := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{2}).Read(body)
	sum := sha256.Sum256(body)

	l, err := server.Listen(name)
	if err != nil {
		t.Fatalf("Listen(%q): %v", name, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	mux.HandleFunc("POST /sum", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		io.Copy(h, r.Body)
		w.Write(h.Sum(nil))
	})
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return client.Dial(ctx, host)
		},
	}
	defer func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("http.Server.Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("http.Server.Serve = %v, want ErrServerClosed", err)
		}
	}()
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	resp, err := hc.Get("http://" + name + "/blob")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %v, status %d", err, resp.StatusCode)
	}
	if sha256.Sum256(got) != sum {
		t.Fatalf("GET body: %d bytes, not the 1 MB served", len(got))
	}

	resp, err = hc.Post("http://"+name+"/sum", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	got, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, sum[:]) {
		t.Fatalf("POST: the server saw a different body (%v)", err)
	}
}
