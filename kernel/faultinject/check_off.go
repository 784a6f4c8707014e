//go:build !faultinject

package faultinject

// Enabled reports whether the package was built with the tag faultinject.
const Enabled = false

// Check does nothing without the tag faultinject.
func Check(site string, b []byte) {}
