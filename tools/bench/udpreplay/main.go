// Command udpreplay is the load generator of tools/bench/chain3.sh's
// REPLAY mode: it sends again, as fast as the kernel takes them, the
// shim SDUs a UDP shim received, so that a router in the middle of a
// chain is offered more than an ouro node can originate on the same two
// cores.
//
//	udpreplay -pcap FILE -from 127.0.0.1:3521 -to 127.0.0.1:3522 -t 5s
//
// FILE is what `ouro capture R.udp -w FILE in` wrote at the receiving
// shim while a flood crossed it (docs/wire/capture.md): each record an
// SDU as the shim received it, its port the local endpoint id. udpreplay
// keeps the received SDUs of the most common length (the flood's;
// keepalives and control messages are other lengths), puts the 4-byte
// shim header (that endpoint id, docs/wire/shims.md) back in front of
// each and sends them from -from, which must be the address the shim
// knows the original sender by (that sender must be gone: the port is
// bound here), to -to, in UDP GSO sends of -burst datagrams (one
// sendmsg(2) each, as the shim's own sender does), with -rate at most
// that many a second (it waits by spinning on the clock: one core). It
// stops after -t and prints "sent N datagrams in S s = R k/s" (with
// -json, one JSON object).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/ouronet/ouro/flow/probe"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/shim/udp"
)

// maxGSO bounds the payload of one GSO send (a UDP datagram's limit).
const maxGSO = 65000

func main() {
	var (
		file   = flag.String("pcap", "", "pcapng `FILE` written by ouro capture at the receiving UDP shim")
		from   = flag.String("from", "", "send from `ADDR:PORT` (the original sender's address)")
		to     = flag.String("to", "", "send to `ADDR:PORT` (the shim that captured)")
		dur    = flag.Duration("t", 5*time.Second, "send for `D`")
		burst  = flag.Int("burst", 64, "datagrams per GSO send (1 to 64)")
		rate   = flag.Float64("rate", 0, "send at most `PPS` datagrams a second, in bursts (0: as fast as the kernel takes them)")
		asJSON = flag.Bool("json", false, "print the result as JSON")
	)
	flag.Parse()
	if err := run(*file, *from, *to, *dur, *burst, *rate, *asJSON); err != nil {
		fmt.Fprintf(os.Stderr, "udpreplay: %v\n", err)
		os.Exit(1)
	}
}

func run(file, from, to string, dur time.Duration, burst int, rate float64, asJSON bool) error {
	if file == "" || from == "" || to == "" {
		return errors.New("-pcap, -from and -to are needed")
	}
	if burst < 1 || burst > 64 || dur <= 0 || rate < 0 {
		return errors.New("-burst must be 1 to 64, -t positive and -rate not negative")
	}
	src, err := netip.ParseAddrPort(from)
	if err != nil {
		return fmt.Errorf("-from: %w", err)
	}
	dst, err := netip.ParseAddrPort(to)
	if err != nil {
		return fmt.Errorf("-to: %w", err)
	}
	dgrams, err := load(file)
	if err != nil {
		return err
	}
	size := len(dgrams[0])
	if burst*size > maxGSO {
		burst = maxGSO / size
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(src))
	if err != nil {
		return fmt.Errorf("bind -from: %w", err)
	}
	defer c.Close()
	_ = c.SetWriteBuffer(4 << 20)
	dstAddr := net.UDPAddrFromAddrPort(dst)
	// One buffer per starting datagram, so that every send is a run of
	// burst consecutive captured datagrams.
	runs := make([][]byte, len(dgrams))
	for i := range runs {
		b := make([]byte, 0, burst*size)
		for k := range burst {
			b = append(b, dgrams[(i+k)%len(dgrams)]...)
		}
		runs[i] = b
	}
	var oob []byte
	if burst > 1 {
		oob = probe.GSOControl(nil, size)
	}
	var sent, refused uint64
	start := time.Now()
	end := start.Add(dur)
	i := 0
	for now := start; now.Before(end); now = time.Now() {
		if rate > 0 && float64(sent) >= rate*now.Sub(start).Seconds() {
			continue // ahead of the rate: a busy wait, as a timer would oversleep
		}
		n := 64 // sends between clock reads
		if rate > 0 {
			n = 1
		}
		for range n {
			_, _, err := c.WriteMsgUDP(runs[i], oob, dstAddr)
			switch {
			case err == nil:
				sent += uint64(burst)
			case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ECONNREFUSED):
				refused++
			default:
				return fmt.Errorf("send: %w", err)
			}
			i = (i + burst) % len(runs)
		}
	}
	secs := time.Since(start).Seconds()
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{
			"sent": sent, "seconds": secs, "pps": float64(sent) / secs, "datagram_bytes": size,
			"captured": len(dgrams), "burst": burst, "refused_sends": refused, "rate": rate,
		})
	}
	fmt.Printf("sent %d datagrams of %d bytes in %.2f s = %.0f k/s (%d captured SDUs, bursts of %d, %d sends refused)\n",
		sent, size, secs, float64(sent)/secs/1000, len(dgrams), burst, refused)
	return nil
}

// load returns the datagrams to send: the received shim SDUs of the most
// common length in file, each behind its shim header.
func load(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	byLen := map[int][][]byte{}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(data) < capture.HeaderLen {
			continue
		}
		h := capture.Header(data[:capture.HeaderLen])
		sdu := data[capture.HeaderLen:]
		if !h.IsValid() || h.Dir() != capture.In || h.Layer() != capture.LayerUDP || h.Content() != capture.SDU || ci.Length != len(data) || len(sdu) == 0 {
			continue // sent, control, or cut by the snap length
		}
		d := make([]byte, udp.HeaderLen+len(sdu))
		udp.Header(d).SetEID(uint32(h.Port()))
		copy(udp.Header(d).Payload(), sdu)
		byLen[len(d)] = append(byLen[len(d)], d)
	}
	var best [][]byte
	for _, ds := range byLen {
		if len(ds) > len(best) || len(ds) == len(best) && len(best) > 0 && len(ds[0]) > len(best[0]) {
			best = ds
		}
	}
	if len(best) == 0 {
		return nil, fmt.Errorf("%s: no received shim SDU kept whole (capture with `in` and a snap length above the SDU's)", file)
	}
	return best, nil
}
