//go:build !linux && !tamago

package probe

import "net"

// Without Linux the plain-UDP baseline sends and receives one datagram
// per message (no GSO or GRO).

func (p *UDPPort) writeGSO([][]byte) (bool, error) { return false, nil }

func enableGRO(*net.UDPConn) bool { return false }

var groOOB = 0

func groSegment([]byte) int { return 0 }
