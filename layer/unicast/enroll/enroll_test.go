package enroll_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/addr"
	"github.com/ouronet/ouro/layer/unicast/enroll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type member struct {
	cfg     enroll.Config
	mu      sync.Mutex
	members map[layer.Addr]string
	cred    *enroll.Credentials // nil: a fresh identity per exchange
	protect bool                // addresses are their keys' (cred must be set)
}

func (m *member) creds(t testing.TB) enroll.Credentials {
	if m.cred != nil {
		return *m.cred
	}
	_, c := creds(t, "m")
	return c
}

func (m *member) Admit(req enroll.Req, doc identity.Document) error {
	pol := m.cfg.Admission
	pol.Layer = m.cfg.Layer
	return pol.Admit(doc, req.Cert, nil, time.Now())
}

// openConfig is the default configuration of an open layer.
func openConfig(layerName string) enroll.Config {
	c := enroll.DefaultConfig(layerName)
	c.Admission = admission.Policy{Mode: admission.ModeOpen}
	return c
}

// creds returns a fresh identity and its credentials.
func creds(t testing.TB, name string) (*identity.Identity, enroll.Credentials) {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := identity.NewDocument(id, name, "test", identity.Measurement{}, time.Now()).Sign(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return id, enroll.Credentials{Signer: id, Doc: doc}
}

func (m *member) Offer(req enroll.Req) enroll.Resp {
	if req.Layer != m.cfg.Layer {
		return enroll.Resp{Result: enroll.Refused, Msg: "wrong layer"}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var as []layer.Addr
	for a := range m.members {
		as = append(as, a)
	}
	self := layer.Addr(1)
	if m.protect {
		self = addr.FromKey(m.cfg.Layer, int(m.cfg.AddrWidth), m.cred.Signer.Public())
	}
	return enroll.Resp{Result: enroll.OK, Config: m.cfg, Members: as, Name: "m", Addr: self}
}

func (m *member) Claim(req enroll.Req, a layer.Addr) bool {
	if m.protect && a != addr.FromKey(m.cfg.Layer, int(m.cfg.AddrWidth), req.PubKey) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.members[a]; ok {
		return false
	}
	m.members[a] = req.Name
	return true
}

func run(t *testing.T, m *member, req enroll.Req, assign enroll.AssignFunc) (enroll.Result, error, error) {
	t.Helper()
	_, nc := creds(t, req.Name)
	return runWith(t, m, req, nc, assign)
}

func runWith(t *testing.T, m *member, req enroll.Req, nc enroll.Credentials, assign enroll.AssignFunc) (enroll.Result, error, error) {
	t.Helper()
	mc := m.creds(t)
	a, b := flowtest.Pipe(4)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv := make(chan error, 1)
	go func() {
		buf := make([]byte, flow.MaxSDU)
		n, err := b.Read(buf, time.Now().Add(5*time.Second))
		if err != nil {
			srv <- err
			return
		}
		_, _, err = enroll.Serve(ctx, b, buf[:n], m, mc)
		srv <- err
	}()
	res, err := enroll.Enroll(ctx, a, req, nc, assign)
	return res, err, <-srv
}

func TestEnroll(t *testing.T) {
	cfg := openConfig("uni")
	tests := []struct {
		name    string
		layer   string
		taken   []layer.Addr
		draws   []layer.Addr
		want    layer.Addr
		wantErr error
	}{
		{"first choice", "uni", nil, []layer.Addr{7}, 7, nil},
		{"avoids listed members", "uni", []layer.Addr{7}, []layer.Addr{7, 9}, 9, nil},
		{"wrong layer", "other", nil, []layer.Addr{7}, 0, flow.ErrRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &member{cfg: cfg, members: map[layer.Addr]string{1: "m"}}
			for _, a := range tc.taken {
				m.members[a] = "x"
			}
			i := 0
			assign := func(_ enroll.Config, ms enroll.Members) (layer.Addr, error) {
				for ; i < len(tc.draws); i++ {
					if !ms.Has(tc.draws[i]) {
						i++
						return tc.draws[i-1], nil
					}
				}
				return 0, errors.New("exhausted")
			}
			res, err, _ := run(t, m, enroll.Req{Name: "new", Layer: tc.layer, PubKey: make([]byte, 32)}, assign)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Enroll err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if res.Addr != tc.want || !sameConfig(t, res.Config, cfg) || res.MemberAddr != 1 {
				t.Fatalf("got addr %d config %+v member %d, want %d %+v 1", res.Addr, res.Config, res.MemberAddr, tc.want, cfg)
			}
		})
	}
}

// sameConfig compares configurations by their encoding (a decoded
// policy has empty lists where the original has nil ones).
func sameConfig(t *testing.T, a, b enroll.Config) bool {
	t.Helper()
	ea, err := enroll.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := enroll.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ea, eb)
}

func TestCollisionRetries(t *testing.T) {
	// The member claims 5 behind the new member's back (a concurrent
	// enrollment): the first Done collides, the second succeeds.
	m := &member{cfg: openConfig("uni"), members: map[layer.Addr]string{1: "m", 5: "other"}}
	draws := []layer.Addr{5, 6}
	i := 0
	assign := func(enroll.Config, enroll.Members) (layer.Addr, error) { i++; return draws[i-1], nil } // ignores the list on purpose
	res, err, serr := run(t, m, enroll.Req{Name: "new", Layer: "uni"}, assign)
	if err != nil || serr != nil {
		t.Fatalf("Enroll: %v, Serve: %v", err, serr)
	}
	if res.Addr != 6 {
		t.Fatalf("got address %d, want 6", res.Addr)
	}
}

func TestConfigValidate(t *testing.T) {
	good := openConfig("uni")
	if err := good.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := []func(c *enroll.Config){
		func(c *enroll.Config) { c.Layer = "" },
		func(c *enroll.Config) { c.AddrWidth = 3 },
		func(c *enroll.Config) { c.Routing = "ospf" },
		func(c *enroll.Config) { c.CA = "reno" },
		func(c *enroll.Config) { c.Dir = "" },
		func(c *enroll.Config) { c.Hello = 0 },
		func(c *enroll.Config) { c.Dead = 1 },
		func(c *enroll.Config) { c.Admission = admission.Policy{} },
		func(c *enroll.Config) { c.Admission.Layer = "other" },
	}
	for i, f := range bad {
		c := good
		f(&c)
		if err := c.Validate(); !errors.Is(err, flow.ErrInvalid) {
			t.Errorf("bad config #%d: err %v, want ErrInvalid", i, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, v := range []any{
		enroll.Req{Version: enroll.Version, Name: "a", Layer: "l", PubKey: make([]byte, 32), Nonce: make([]byte, enroll.NonceLen), Doc: []byte{1}},
		enroll.Challenge{Name: "m", Nonce: make([]byte, enroll.NonceLen), Doc: []byte{1}, Sig: make([]byte, 64)},
		enroll.Proof{Sig: make([]byte, 64)},
		enroll.Resp{Config: openConfig("l"), Members: []layer.Addr{1, 2}, Name: "m", Addr: 1},
		enroll.Done{Addr: 3}, enroll.Ack{Result: 2, Msg: "x"},
	} {
		b, err := enroll.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := enroll.UnmarshalReq(b); err == nil {
			if _, err := enroll.Marshal(r); err != nil {
				t.Fatalf("re-encode %+v: %v", r, err)
			}
		}
		if r, err := enroll.UnmarshalResp(b); err == nil && r.Result == enroll.OK {
			if err := r.Config.Validate(); err != nil {
				t.Fatalf("accepted an invalid config: %v", err)
			}
		}
		enroll.UnmarshalChallenge(b)
		enroll.UnmarshalProof(b)
		enroll.UnmarshalDone(b)
		enroll.UnmarshalAck(b)
	})
}
