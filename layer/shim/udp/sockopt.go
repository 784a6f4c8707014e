package udp

// DefaultSocketBuffer is the receive buffer the shim asks of its socket
// when Config.RecvBuffer is zero. Linux's default
// (net.core.rmem_default, 208 KiB) holds about 150 full datagrams: a
// burst of one flow at loopback speed overflows it before any queue the
// layer above owns grows, and the kernel drops silently (counted in
// Stats().Drops.SocketOverflow). 4 MiB holds about 3000; without
// CAP_NET_ADMIN the kernel caps it at net.core.rmem_max / wmem_max.
const DefaultSocketBuffer = 4 << 20

// bufSizes is what the kernel granted (it reports twice what was asked).
type bufSizes struct{ Recv, Send int }

// The send buffer stays the kernel's unless Config.SendBuffer asks for
// one: a datagram counts against it until the interface has sent it, so
// a sender at a rate-limited qdisc (tbf) blocks when its queue is the
// kernel default's depth; with 4 MiB the qdisc queue overflowed first and
// dropped 94-96% of a flood with nothing slowing the sender
// (tools/bench/fair.sh). On loopback a datagram leaves the send buffer as
// it is delivered, so the default costs a flood nothing there.

// bufSize maps Config.RecvBuffer to the size to ask: 0 is the default,
// negative leaves the kernel's own.
func bufSize(n int) int {
	switch {
	case n == 0:
		return DefaultSocketBuffer
	case n < 0:
		return 0
	}
	return n
}
