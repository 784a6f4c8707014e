//go:build race

package dir_test

const raceEnabled = true
