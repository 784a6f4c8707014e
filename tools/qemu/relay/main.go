// Command relay joins two TCP listeners on 127.0.0.1 by dialling both and
// copying bytes both ways until either side closes. The microvm echo test
// uses it to connect QEMU (-netdev socket,listen=127.0.0.1:A) to
// tools/qemu/enetpeer (listening on B) only once the guest's virtio-net
// driver is up: QEMU's virtio-net drops frames that arrive before the
// driver sets DRIVER_OK, and enetpeer sends its first window of frames as
// soon as it accepts, then waits for their echoes.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	a := flag.String("a", "", "first address (127.0.0.1:PORT)")
	b := flag.String("b", "", "second address (127.0.0.1:PORT)")
	wait := flag.Duration("timeout", 5*time.Second, "how long to retry dialling")
	free := flag.Bool("freeport", false, "print a free TCP port on 127.0.0.1 and exit")
	flag.Parse()

	if *free {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatalf("relay: %v", err)
		}
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		return
	}

	if err := run(*a, *b, *wait); err != nil {
		log.Printf("relay: %v", err)
		os.Exit(1)
	}
}

func dial(addr string, wait time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		return nil, fmt.Errorf("address %q: only 127.0.0.1 is allowed", addr)
	}
	deadline := time.Now().Add(wait)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(a, b string, wait time.Duration) error {
	ca, err := dial(a, wait)
	if err != nil {
		return err
	}
	defer ca.Close()
	cb, err := dial(b, wait)
	if err != nil {
		return err
	}
	defer cb.Close()

	done := make(chan struct{}, 2)
	go func() { io.Copy(ca, cb); done <- struct{}{} }()
	go func() { io.Copy(cb, ca); done <- struct{}{} }()
	<-done
	return nil
}
