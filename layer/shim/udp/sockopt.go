package udp

// DefaultSocketBuffer is the receive and send buffer the shim asks of its
// socket when Config.RecvBuffer / SendBuffer are zero. Linux's default
// (net.core.rmem_default, 208 KiB) holds about 150 full datagrams: a
// burst of one flow at loopback speed overflows it before any queue the
// layer above owns grows, and the kernel drops silently (counted in
// Stats().Drops.SocketOverflow). 4 MiB holds about 3000; without
// CAP_NET_ADMIN the kernel caps it at net.core.rmem_max / wmem_max.
const DefaultSocketBuffer = 4 << 20

// bufSizes is what the kernel granted (it reports twice what was asked).
type bufSizes struct{ Recv, Send int }

// bufSize maps a Config buffer field to the size to ask: 0 is the
// default, negative leaves the kernel's own.
func bufSize(n int) int {
	switch {
	case n == 0:
		return DefaultSocketBuffer
	case n < 0:
		return 0
	}
	return n
}
