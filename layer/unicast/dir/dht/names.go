package dht

import (
	"crypto/ed25519"
	"slices"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
)

// NamesPolicy makes the DHT enforce the application names membership
// certificates list (identity.Cert.Names): see dir.NamesPolicy. Holders
// apply it when storing; askers apply it to the records a lookup
// returns, so a holder that kept a squatter's record does not make the
// asker use it. Refused records count as Stats.CertNames.
type NamesPolicy = dir.NamesPolicy

// MaxCertCache bounds the verified certificates a DHT remembers.
const MaxCertCache = 256

// certCache remembers certificates already checked (by the hash of
// their encoding), failures too, so a record's check costs one signature
// verification (its own), not two. Bounded (MaxCertCache,
// identity.Memo); askers use it without d.mu.
type certCache struct {
	memo identity.Memo[certEntry]
}

// certEntry is a verified certificate (ok) or one that failed (!ok).
type certEntry struct {
	ok    bool
	cert  identity.Cert
	names []layer.Hash // the hashes of cert.Names
}

// entry returns the verification of b, verifying it if not cached.
// Validity in time and revocation are checked by the caller each time.
func (cc *certCache) entry(p *NamesPolicy, b []byte) certEntry {
	k := identity.MemoKey(b)
	if e, hit := cc.memo.Get(k); hit {
		return e
	}
	var e certEntry
	if c, err := identity.DecodeCert(b); err == nil && slices.ContainsFunc(p.Authorities, func(k ed25519.PublicKey) bool { return k.Equal(c.Issuer) }) {
		e = certEntry{ok: true, cert: c, names: make([]layer.Hash, len(c.Names))}
		for i, n := range c.Names {
			e.names[i] = layer.HashName(p.Hash, n)
		}
	}
	cc.memo.Put(k, e, MaxCertCache)
	return e
}

// certifies reports whether r's certificate certifies r for name h at
// now under d's policy (false without a policy).
func (d *DHT) certifies(r *Record, h layer.Hash, now time.Time) bool {
	p := d.cfg.Names
	if p == nil || len(r.Cert) == 0 {
		return false
	}
	e := d.certs.entry(p, r.Cert)
	if !e.ok || !e.cert.Subject.Equal(ed25519.PublicKey(r.Key)) || !slices.Contains(e.names, h) {
		return false
	}
	if e.cert.ValidAt(now) != nil {
		return false
	}
	return p.Revoked == nil || !p.Revoked(e.cert)
}

// certFilter applies the policy to the verified records of h a lookup
// returned: under Certified, only certified records stay; otherwise, if
// one is certified, only its key's records stay. It counts and logs the
// others (from src).
func (d *DHT) certFilter(src layer.Addr, h layer.Hash, recs []Record, now time.Time) []Record {
	p := d.cfg.Names
	if p == nil || len(recs) == 0 {
		return recs
	}
	var owner ed25519.PublicKey
	cert := make([]bool, len(recs))
	for i := range recs {
		if cert[i] = d.certifies(&recs[i], h, now); cert[i] && owner == nil {
			owner = recs[i].Key
		}
	}
	out := recs[:0:0]
	var bad []refused
	for i, r := range recs {
		keep := cert[i] || !p.Certified && (owner == nil || owner.Equal(ed25519.PublicKey(r.Key)))
		if keep {
			out = append(out, r)
		} else {
			bad = append(bad, refused{why: refCertName, src: src, addr: r.Addr, key: r.Key})
		}
	}
	d.count(refCertName, uint64(len(bad)))
	d.logRefused(h, bad)
	return out
}
