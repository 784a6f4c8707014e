// Command udprelay is the baseline of tools/bench/chain3.sh: a plain UDP
// relay, the least a middle node forwarding datagrams can do. It listens
// on -listen and sends what arrives to -to, and what comes back from -to
// to the last other sender (so a request/report exchange, such as
// `ouro perf --udp`'s, crosses it both ways). One socket, one read and
// one write per datagram, no batching. On SIGINT or SIGTERM it prints
// "forwarded N" (datagrams relayed towards -to) and exits.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3531", "address to receive on")
	to := flag.String("to", "127.0.0.1:3532", "address to relay to")
	flag.Parse()
	dst, err := netip.ParseAddrPort(*to)
	if err != nil {
		fmt.Fprintf(os.Stderr, "udprelay: -to %q: %v\n", *to, err)
		os.Exit(2)
	}
	la, err := netip.ParseAddrPort(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "udprelay: -listen %q: %v\n", *listen, err)
		os.Exit(2)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(la))
	if err != nil {
		fmt.Fprintf(os.Stderr, "udprelay: %v\n", err)
		os.Exit(1)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	var fwd atomic.Uint64
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Printf("forwarded %d\n", fwd.Load())
		os.Exit(0)
	}()
	var back netip.AddrPort
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "udprelay: %v\n", err)
			os.Exit(1)
		}
		if from == dst {
			if back.IsValid() {
				_, _ = c.WriteToUDPAddrPort(buf[:n], back)
			}
			continue
		}
		back = from
		if _, err := c.WriteToUDPAddrPort(buf[:n], dst); err == nil {
			fwd.Add(1)
		}
	}
}
