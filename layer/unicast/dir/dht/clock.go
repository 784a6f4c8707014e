package dht

import "time"

// Clock is the DHT's time: expiry, refresh and republication schedules
// and RPC timeouts all read it, so a simulation can drive hours of DHT
// life in milliseconds (dirtest.Clock). Safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or the clock's) once d has
	// passed, unless the returned Timer is stopped first. f must not block.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether
	// it did.
	Stop() bool
}

// SystemClock is the wall clock (package time).
type SystemClock struct{}

var _ Clock = SystemClock{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc implements Clock with time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
