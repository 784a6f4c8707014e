//go:build !race

package dt

const raceEnabled = false
