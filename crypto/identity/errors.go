package identity

import "errors"

// Errors of the trust objects (documents, certificates, revocation
// lists), wrapped with context. Layers that refuse a peer wrap them again
// and count them by sentinel; test with errors.Is.
var (
	ErrMalformed    = errors.New("identity: malformed")                     // does not decode, breaks a limit, or is not in deterministic encoding
	ErrBadSignature = errors.New("identity: bad signature")                 // the signature does not verify
	ErrUnknownKey   = errors.New("identity: unknown key")                   // a key that is not trusted here (not listed, not the authority, not the subject)
	ErrExpired      = errors.New("identity: expired")                       // a certificate past its NotAfter
	ErrNotYetValid  = errors.New("identity: not yet valid")                 // a certificate before its NotBefore
	ErrRevoked      = errors.New("identity: revoked")                       // listed in the authority's revocation list
	ErrMeasurement  = errors.New("identity: image measurement not allowed") // the node runs an image nobody allowed
	ErrReplay       = errors.New("identity: replayed")                      // an old message again (stale sequence number, reused nonce)
)
