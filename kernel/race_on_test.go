//go:build race

package kernel

// raceEnabled is true when the tests run under the race detector, which
// makes every rendezvous about ten times slower.
const raceEnabled = true
