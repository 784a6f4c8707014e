//go:build race

package dt

const raceEnabled = true
