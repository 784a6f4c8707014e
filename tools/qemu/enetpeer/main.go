// Command enetpeer is a host-side Ethernet peer for a QEMU guest NIC on the
// socket network back end: it listens on 127.0.0.1, accepts QEMU's
// connection (-nic socket,model=imx.enet,connect=127.0.0.1:PORT,mac=MAC),
// and speaks QEMU's stream framing (a 4-byte big-endian length, then the
// frame). It drives the echo mode of images/boottest: sends frames of every
// interesting size to the guest, checks each echo byte for byte, checks that
// frames for another station are not echoed, then sends the quit frame.
//
// It exits 0 when every frame came back intact, 1 otherwise, and prints
// round-trip and throughput figures.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

// echoType is the EtherType the guest's echo mode recognises (IEEE 802
// local experimental EtherType 2).
const echoType = 0x88b6

const (
	maxFrame = 1518
	minFrame = 60
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (127.0.0.1 only; port 0 picks one)")
	portFile := flag.String("portfile", "", "write the listening port to this file once listening")
	guestMAC := flag.String("guest", "02:00:00:00:00:01", "the guest NIC's MAC address")
	count := flag.Int("n", 2000, "frames to echo")
	window := flag.Int("window", 32, "frames in flight")
	wait := flag.Duration("timeout", 60*time.Second, "overall deadline")
	flag.Parse()

	if err := run(*listen, *portFile, *guestMAC, *count, *window, *wait); err != nil {
		log.Printf("enetpeer: FAIL: %v", err)
		os.Exit(1)
	}
}

func run(listen, portFile, guest string, count, window int, wait time.Duration) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		return fmt.Errorf("listen address %q: only 127.0.0.1 is allowed", listen)
	}

	dst, err := net.ParseMAC(guest)
	if err != nil {
		return err
	}
	src := net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	log.Printf("enetpeer: listening on %s", ln.Addr())

	if portFile != "" {
		port := ln.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(portFile, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			return err
		}
	}

	deadline := time.Now().Add(wait)
	ln.(*net.TCPListener).SetDeadline(deadline)

	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	c.SetDeadline(deadline)

	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)

	// frames for another station first: the guest must filter them, so no
	// echo of them may ever arrive (checked by sequence below)
	for i := 0; i < 8; i++ {
		if err := send(w, frame(other, src, 1<<31|uint32(i), 100)); err != nil {
			return err
		}
	}

	sizes := []int{14, 15, 59, 60, 61, 63, 64, 65, 100, 127, 128, 513, 1000, 1499, 1500, 1513, 1514, 1515, 1517, 1518}

	sent, recvd := 0, 0
	start := time.Time{}
	var rttSum time.Duration
	sentAt := map[uint32]time.Time{}

	for recvd < count {
		for sent < count && sent-recvd < window {
			size := sizes[sent%len(sizes)]
			if sent >= len(sizes) && sent%3 == 0 {
				size = 14 + sent%(maxFrame-13)
			}
			sentAt[uint32(sent)] = time.Now()
			if err := send(w, frame(dst, src, uint32(sent), size)); err != nil {
				return err
			}
			sent++
		}
		if err := w.Flush(); err != nil {
			return err
		}

		f, err := recv(r)
		if err != nil {
			return fmt.Errorf("after %d echoes: %w", recvd, err)
		}
		if start.IsZero() {
			start = time.Now()
		}

		seq, err := check(f, dst, src, recvd, sizes)
		if err != nil {
			return err
		}
		rttSum += time.Since(sentAt[seq])
		delete(sentAt, seq)
		recvd++
	}

	elapsed := time.Since(start)

	if err := send(w, quitFrame(dst, src)); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}

	var bytes int
	for i := 0; i < count; i++ {
		size := sizes[i%len(sizes)]
		if i >= len(sizes) && i%3 == 0 {
			size = 14 + i%(maxFrame-13)
		}
		bytes += max(size, minFrame)
	}

	log.Printf("enetpeer: PASS: %d frames echoed intact (sizes 14..1518), 8 foreign frames filtered; "+
		"mean RTT %v (window %d), %.0f frames/s, %.2f Mbit/s each way",
		count, (rttSum / time.Duration(count)).Round(time.Microsecond), window,
		float64(count-1)/elapsed.Seconds(), float64(bytes*8)/elapsed.Seconds()/1e6)

	// drain until QEMU closes the connection (the guest exited)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, r)

	return nil
}

// frame builds dst|src|echoType|seq|pattern, size bytes long (at least 14;
// shorter than 18 bytes carries a truncated sequence number).
func frame(dst, src net.HardwareAddr, seq uint32, size int) []byte {
	f := make([]byte, size)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], echoType)
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], seq)
	copy(f[14:], s[:])
	for i := 18; i < size; i++ {
		f[i] = byte(int(seq) + i)
	}
	return f
}

func quitFrame(dst, src net.HardwareAddr) []byte {
	f := frame(dst, src, 0, minFrame)
	copy(f[14:], "quit")
	return f
}

// check verifies echo number n: the guest swapped the addresses, kept every
// byte, and padded to minFrame. Short frames (under 18 bytes) cannot carry
// a full sequence number, so echoes must come back in order.
func check(f []byte, guest, peer net.HardwareAddr, n int, sizes []int) (uint32, error) {
	size := sizes[n%len(sizes)]
	if n >= len(sizes) && n%3 == 0 {
		size = 14 + n%(maxFrame-13)
	}
	want := frame(peer, guest, uint32(n), size)

	if len(f) != max(size, minFrame) {
		return 0, fmt.Errorf("echo %d: length %d, want %d (frame of %d padded to %d)", n, len(f), max(size, minFrame), size, minFrame)
	}
	for i := range want {
		if f[i] != want[i] {
			return 0, fmt.Errorf("echo %d (size %d): byte %d is %#x, want %#x", n, size, i, f[i], want[i])
		}
	}
	for i := size; i < len(f); i++ {
		if f[i] != 0 {
			return 0, fmt.Errorf("echo %d: padding byte %d is %#x", n, i, f[i])
		}
	}
	return uint32(n), nil
}

func send(w io.Writer, f []byte) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(f)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(f)
	return err
}

func recv(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > 65536 {
		return nil, errors.New("frame length out of range")
	}
	f := make([]byte, n)
	_, err := io.ReadFull(r, f)
	return f, err
}
