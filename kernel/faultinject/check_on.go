//go:build faultinject

package faultinject

import "bytes"

// Enabled reports whether the package was built with the tag faultinject.
const Enabled = true

// Check panics if b contains Poison, naming site (for example
// "udp/input"). It allocates nothing unless it panics.
func Check(site string, b []byte) {
	for i := 0; len(b)-i >= len(Poison); i++ {
		j := bytes.IndexByte(b[i:len(b)-len(Poison)+1], Poison[0])
		if j < 0 {
			return
		}
		i += j
		if string(b[i:i+len(Poison)]) == Poison {
			panic("faultinject: poison at " + site)
		}
	}
}
