// Package wireshark checks tools/wireshark/ouro.lua, the Wireshark
// dissector of ouro captures, by running tshark over captures the tests
// make. The tests skip when tshark is not installed.
package wireshark

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/capture/pcapng"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/serial"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/connmgr"
	"github.com/ouronet/ouro/layer/unicast/enroll"
	"github.com/ouronet/ouro/layer/unicast/fa"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// tshark returns tshark's path, or skips the test.
func tshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (Debian package tshark; .ci/run installs it)")
	}
	return p
}

// run runs tshark with the dissector over file.
func run(t *testing.T, file string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark(t), append([]string{"-X", "lua_script:ouro.lua", "-r", file}, args...)...)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, errb.String())
	}
	if s := errb.String(); strings.Contains(s, "Lua") || strings.Contains(s, "rror") {
		t.Fatalf("tshark %v stderr: %s", args, s)
	}
	return out.String()
}

// checkClean fails on any malformed packet or Lua error in a -V dump.
func checkClean(t *testing.T, dump string) {
	t.Helper()
	for _, bad := range []string{"Malformed", "Lua Error", "Dissector bug", "[Expert Info (Error"} {
		if i := strings.Index(dump, bad); i >= 0 {
			lo := max(0, i-1500)
			t.Fatalf("tshark output has %q:\n%s", bad, dump[lo:min(len(dump), i+300)])
		}
	}
}

// tap records what a harness node writes to a neighbour on its N-1
// flows (management, enrollment and data-transfer flows alike): the
// lower layer's SDUs as a shim below would capture them.
type tap struct {
	mu   sync.Mutex
	name string
	p    capture.Point
	s    *capture.Session
}

func newTap(t *testing.T, name string) *tap {
	tp := &tap{name: name}
	s, err := tp.p.Start(capture.LayerLocal, capture.Config{Slots: 4096, Snap: capture.MaxSnap, Idle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tp.s = s
	return tp
}

func (tp *tap) fn(port uint64) func([]byte) [][]byte {
	return func(pkt []byte) [][]byte {
		tp.s.Add(capture.Out, capture.SDU, port, pkt)
		return [][]byte{slices.Clone(pkt)}
	}
}

type named struct {
	ipcp string
	r    capture.Record
}

func drain(t *testing.T, proc string, s *capture.Session) []named {
	var out []named
	for {
		page, k := s.Drain(nil, capture.MaxPage)
		if k == 0 {
			return out
		}
		rs, err := capture.DecodePage(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			out = append(out, named{proc, r})
		}
	}
}

func drainMgmt(t *testing.T, nd *unicasttest.Node) []named {
	t.Helper()
	var out []named
	for {
		r, err := nd.IPCP.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: unicast.CmdCapture, Args: map[string]string{capture.ArgOp: capture.OpRead}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := decodeB64(r.Text)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := capture.DecodePage(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			return out
		}
		for _, rec := range rs {
			out = append(out, named{nd.Name, rec})
		}
	}
}

func writePcapng(t *testing.T, file string, recs []named) {
	t.Helper()
	slices.SortStableFunc(recs, func(a, b named) int { return a.r.Time.Compare(b.r.Time) })
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapng.NewWriter(f, "ouro dissector test")
	for _, r := range recs {
		if err := w.Write(r.ipcp, r.r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestDissectLayer captures an enrollment, a flow allocation and a ping
// on a reliable (FRCT) flow across a unicast layer of two members in the
// in-process harness, writes pcapng and checks what tshark decodes with
// the dissector.
func TestDissectLayer(t *testing.T) {
	tshark(t)
	n := unicasttest.New(t)
	n.Template.LayerConfig.Hello = 50 // ms: management hellos within the test
	tapA, tapB := newTap(t, "a.lower"), newTap(t, "b.lower")
	n.Tamper("a", "b", tapA.fn(1))
	n.Tamper("b", "a", tapB.fn(2))
	a := n.Add("a", true, nil, nil)
	for _, nd := range []*unicasttest.Node{a} {
		startCapture(t, nd)
	}
	b := n.Add("b", false, []string{"a"}, nil)
	startCapture(t, b)
	n.WaitOperational(20 * time.Second)

	a.Register("pong")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := flow.Data()
	pb, err := b.Alloc(ctx, "pong", q)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := a.Accept(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := flow.New(pb, flow.Info{QoS: q})
	if err != nil {
		t.Fatal(err)
	}
	fa, err := flow.New(acc.Port, flow.Info{QoS: q})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, flow.MaxSDU)
	for i := range 3 {
		fb.SetDeadline(time.Now().Add(5 * time.Second))
		fa.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fb.Write([]byte("ping " + string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
		k, err := fa.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fa.Write(buf[:k]); err != nil {
			t.Fatal(err)
		}
		if _, err := fb.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // the last acknowledgements, hellos
	fb.Close()
	fa.Close()

	var recs []named
	recs = append(recs, drainMgmt(t, a)...)
	recs = append(recs, drainMgmt(t, b)...)
	recs = append(recs, drain(t, tapA.name, tapA.s)...)
	recs = append(recs, drain(t, tapB.name, tapB.s)...)
	file := filepath.Join(t.TempDir(), "layer.pcapng")
	writePcapng(t, file, recs)

	if ex := os.Getenv("OURO_CAPTURE_EXAMPLE"); ex != "" {
		// docs/observability.md's example comes from here.
		data, err := os.ReadFile(file)
		if err == nil {
			err = os.WriteFile(ex, data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	dump := run(t, file, "-V")
	checkClean(t, dump)
	fields := run(t, file, "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name", "-e", "ouro.dir",
		"-e", "ouro.msg", "-e", "ouro.dt.dst", "-e", "ouro.dt.eid", "-e", "ouro.frct.seqno", "-e", "ouro.fa.name")
	lines := strings.Split(strings.TrimSpace(fields), "\n")
	if len(lines) != len(recs) {
		t.Errorf("tshark printed %d packets, the capture has %d", len(lines), len(recs))
	}
	t.Logf("%d packets; first lines:\n%s", len(lines), strings.Join(lines[:min(len(lines), 40)], "\n"))
	want := []string{
		"connmgr Open (enroll)", "connmgr OpenResp", "enroll Req", "enroll Challenge", "enroll Proof", "enroll Resp",
		"enroll Done", "enroll Ack", "connmgr Open (mgmt)", "connmgr Open (dt)", "mgmt hello",
		"fa Req", "fa Resp", "frct DATA",
	}
	for _, w := range want {
		if !strings.Contains(fields, w) {
			t.Errorf("no packet decodes as %q", w)
		}
	}
	// Addresses, endpoint ids and sequence numbers are the layer's.
	aAddr, bAddr := fmt.Sprint(a.IPCP.Addr()), fmt.Sprint(b.IPCP.Addr())
	byMsg := func(msg string, fields ...string) [][]string {
		args := []string{"-Y", fmt.Sprintf("ouro.msg == %q", msg), "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name"}
		for _, f := range fields {
			args = append(args, "-e", f)
		}
		var out [][]string
		for _, l := range strings.Split(strings.TrimSpace(run(t, file, args...)), "\n") {
			if l != "" {
				out = append(out, strings.Split(l, "|"))
			}
		}
		if len(out) == 0 {
			t.Errorf("no %q packet", msg)
		}
		return out
	}
	for _, r := range byMsg("fa Req", "ouro.dt.dst", "ouro.dt.eid", "ouro.fa.name", "ouro.dt.src") {
		if r[1] != aAddr || r[2] != "1" || r[3] != "b.app" || r[4] != bAddr {
			t.Errorf("fa Req: %q, want dst %s, eid 1, name b.app, src %s", r, aAddr, bAddr)
		}
	}
	for _, r := range byMsg("enroll Done", "ouro.enroll.addr") {
		if r[1] != bAddr {
			t.Errorf("enroll Done: %q, want b's address %s", r, bAddr)
		}
	}
	for _, r := range byMsg("enroll Resp", "ouro.enroll.addr", "ouro.enroll.name", "ouro.enroll.layer") {
		if r[1] != aAddr || r[2] != "a" || r[3] != unicasttest.Layer {
			t.Errorf("enroll Resp: %q, want a's address %s, name a, layer %s", r, aAddr, unicasttest.Layer)
		}
	}
	var seqs []string
	for _, r := range byMsg("frct DATA+ACK+FC seq 2 ack 2", "ouro.dt.dst", "ouro.frct.seqno", "ouro.frct.flags") {
		if r[1] != aAddr || r[2] != "2" || r[3] != "0x0007" {
			t.Errorf("b's third ping: %q, want dst %s, seqno 2, flags DATA+ACK+FC", r, aAddr)
		}
		seqs = append(seqs, r[2])
	}
	_ = seqs
	// Every packet decodes as something named.
	for i, l := range lines {
		f := strings.Split(l, "|")
		if len(f) < 3 || f[2] == "" {
			t.Errorf("packet %d decodes as nothing: %q", i+1, l)
		}
	}
}

func startCapture(t *testing.T, nd *unicasttest.Node) {
	t.Helper()
	_, err := nd.IPCP.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: unicast.CmdCapture, Args: map[string]string{
		capture.ArgOp: capture.OpStart, capture.ArgSnap: "1024", capture.ArgSlots: "4096", capture.ArgIdle: "600000"}})
	if err != nil {
		t.Fatal(err)
	}
}

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// TestGolden runs the dissector over a fixed capture of every content
// type and compares tshark's detail view with testdata/golden.txt
// (go test -update rewrites it).
func TestGolden(t *testing.T) {
	tshark(t)
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	var recs []named
	add := func(proc string, d capture.Dir, l capture.Layer, c capture.Content, port uint64, pkt []byte) {
		h := make([]byte, capture.HeaderLen)
		capture.PutHeader(h, d, l, c, port)
		recs = append(recs, named{proc, capture.Record{Time: at.Add(time.Duration(len(recs)) * time.Millisecond), Len: len(pkt), Header: h, Data: pkt}})
	}
	pci := func(dst uint64, cube, ttl, ecn byte, eid uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, dst)
		b = append(b, cube, ttl, ecn)
		return binary.BigEndian.AppendUint64(b, eid)
	}
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A reliable flow's DATA, a SACK, a FIN.
	frctPkt := func(flags uint16, window, seq, ack uint32, rest []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, flags)
		b = append(b, 0, 0)
		b = binary.BigEndian.AppendUint32(b, window)
		b = binary.BigEndian.AppendUint32(b, seq)
		b = binary.BigEndian.AppendUint32(b, ack)
		return append(b, rest...)
	}
	const a, b = 0x0a0a0a0a0a0a0a0a, 0x0b0b0b0b0b0b0b0b
	add("r.uni", capture.In, capture.LayerUnicast, capture.PDU, 1, append(pci(a, 2, 59, 0, 1<<33+5), frctPkt(0x07, 100, 7, 3, []byte("hello"))...))
	add("r.uni", capture.Out, capture.LayerUnicast, capture.PDU, 2, append(pci(b, 2, 60, 12, 1<<33+6), frctPkt(0x46, 120, 9, 4, []byte{0, 0, 0, 6, 0, 0, 0, 8})...))
	add("r.uni", capture.Out, capture.LayerUnicast, capture.PDU, 2, append(pci(b, 2, 60, 0, 1<<33+6), frctPkt(0x16, 120, 10, 4, nil)...))
	// A flow allocation request to the flow allocator's endpoint.
	h := make([]byte, 32)
	for i := range h {
		h[i] = byte(i)
	}
	req := must(fa.Marshal(&fa.Msg{Type: 1, SrcEID: 1<<33 + 6, Hash: h, Name: "ping", QoS: flow.Data()}))
	add("r.uni", capture.Out, capture.LayerUnicast, capture.PDU, 2, append(append(pci(b, 0, 60, 0, 1), binary.BigEndian.AppendUint64(nil, a)...), req...))
	add("r.uni", capture.Out, capture.LayerUnicast, capture.PDU, 2, append(pci(b, 4, 1, 0, 3), binary.BigEndian.AppendUint64(nil, a)...))
	add("r.uni", capture.In, capture.LayerUnicast, capture.PDU, 1, append(pci(a, 3, 60, 0, 1<<33+5), []byte("raw data")...))
	// A shim's control message (docs/wire/shims.md's dealloc example) and
	// the N-1 flow messages it carries for the unicast IPCP above.
	dealloc := []byte{0x87, 0x03, 0x00, 0x09, 0x07, 0x00, 0x40, 0xa8, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x04, 0x00, 0x05, 0x00, 0x06, 0xf4, 0x07, 0x00, 0x08, 0x00}
	add("r.udp", capture.In, capture.LayerUDP, capture.ShimCtl, 0, dealloc)
	add("r.udp", capture.Out, capture.LayerUDP, capture.SDU, 9, must(connmgr.Marshal(connmgr.Open{Version: 2, Purpose: 1, Layer: "uni", Name: "r.uni"})))
	add("r.udp", capture.In, capture.LayerUDP, capture.SDU, 7, must(enroll.Marshal(enroll.Done{Addr: a})))
	add("r.udp", capture.In, capture.LayerUDP, capture.SDU, 7, must(connmgr.Marshal(connmgr.Msg{Type: connmgr.MsgHello})))
	add("r.udp", capture.Out, capture.LayerUDP, capture.SDU, 9, append(pci(a, 3, 60, 0, 1<<33+5), frctPkt(0x01, 0, 0, 0, []byte("x"))...))

	// A broadcast layer's packet: TTL 7, sequence number 3, origin.
	bc := []byte{1, 7, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1}
	add("r.bc", capture.In, capture.LayerBroadcast, capture.Bcast, 1, append(bc, "news"...))

	file := filepath.Join(t.TempDir(), "golden.pcapng")
	writePcapng(t, file, recs)
	got := run(t, file, "-V", "-O", "ouro,cbor")
	checkClean(t, got)
	checkGolden(t, "golden.txt", got)
}

// TestMalformedIsFlagged shows that checkClean can fail: a PDU with a bad
// QoS cube, one shorter than the PCI and a shim control message that is
// not one are flagged in the output that checkClean searches.
func TestMalformedIsFlagged(t *testing.T) {
	tshark(t)
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	var recs []named
	for i, c := range []struct {
		content capture.Content
		pkt     []byte
	}{
		{capture.PDU, append(make([]byte, 8), 9, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1)}, // cube 9
		{capture.PDU, []byte{1, 2, 3}},
		{capture.ShimCtl, []byte{0x83, 1, 2, 3}},
	} {
		h := make([]byte, capture.HeaderLen)
		capture.PutHeader(h, capture.In, capture.LayerUnicast, c.content, 1)
		recs = append(recs, named{"r", capture.Record{Time: at.Add(time.Duration(i) * time.Millisecond), Len: len(c.pkt), Header: h, Data: c.pkt}})
	}
	file := filepath.Join(t.TempDir(), "bad.pcapng")
	writePcapng(t, file, recs)
	dump := run(t, file, "-V")
	if n := strings.Count(dump, "[Group: Malformed]"); n != 3 {
		t.Errorf("%d packets flagged malformed, want 3:\n%s", n, dump)
	}
}

// TestWireShims runs the dissector over an ordinary capture of the wire:
// Ethernet frames carrying the UDP shim (IPv4, port 3435) and the
// Ethernet shim (EtherType 0xA000), as tcpdump would record them, and
// compares the detail view with testdata/wire.txt.
func TestWireShims(t *testing.T) {
	tshark(t)
	file := filepath.Join(t.TempDir(), "wire.pcapng")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	ifc := pcapgo.DefaultNgInterface
	ifc.LinkType = layers.LinkTypeEthernet
	ifc.Name = "lo"
	w, err := pcapgo.NewNgWriterInterface(f, ifc, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	write := func(ls ...gopacket.SerializableLayer) {
		t.Helper()
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		at = at.Add(time.Millisecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
	udp := func(payload []byte) {
		eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 2)}
		u := &layers.UDP{SrcPort: 3435, DstPort: 3435}
		u.SetNetworkLayerForChecksum(ip)
		write(eth, ip, u, gopacket.Payload(payload))
	}
	ethShim := func(eid uint16, payload []byte) {
		hdr := binary.BigEndian.AppendUint16(nil, eid)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(payload)))
		body := append(hdr, payload...)
		for len(body) < 60-14 { // padded to the minimum frame
			body = append(body, 0)
		}
		write(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetType(0xA000)}, gopacket.Payload(body))
	}
	dealloc := []byte{0x87, 0x03, 0x00, 0x09, 0x07, 0x00, 0x40, 0xa8, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x04, 0x00, 0x05, 0x00, 0x06, 0xf4, 0x07, 0x00, 0x08, 0x00}
	open := func() []byte {
		b, err := connmgr.Marshal(connmgr.Open{Version: 2, Purpose: 3, Layer: "uni", Name: "a.uni", Addr: 7})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	pdu := append(binary.BigEndian.AppendUint64(nil, 7), 3, 60, 0)
	pdu = append(binary.BigEndian.AppendUint64(pdu, 1<<33+1), []byte("data")...)
	udp(append([]byte{0, 0, 0, 0}, dealloc...))
	udp(append([]byte{0, 0, 0, 9}, open...))
	udp(append([]byte{0, 0, 0, 9}, pdu...))
	ethShim(0, dealloc)
	ethShim(5, pdu) // padded: the length field delimits the SDU
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got := run(t, file, "-V", "-O", "ouro_udp,ouro_eth,ouro")
	checkClean(t, got)
	for _, want := range []string{"Destination endpoint id: 9", "Message: shim dealloc", "Message: connmgr Open (dt)", "Message: dt data", "SDU length: 23"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in the detail view", want)
		}
	}
	checkGolden(t, "wire.txt", got)
}

// TestWireSerial runs the dissector over a TCP stream of the serial shim
// (its tcp_listen/tcp_connect mode) chosen with Decode As: a hello, a
// data frame with a connmgr Open split across two segments, a credit
// frame with the probe flag, a control message (dealloc) and a frame
// with a bad CRC; compares with testdata/serial.txt.
func TestWireSerial(t *testing.T) {
	tshark(t)
	frame := func(ty serial.FrameType, flags uint8, seq, limit uint32, size int, set func(serial.Header)) []byte {
		h := serial.Header(make([]byte, size))
		h.SetHeader(ty, flags, seq, limit)
		if set != nil {
			set(h)
		}
		return serial.AppendFrame(nil, h)
	}
	open, err := connmgr.Marshal(connmgr.Open{Version: 2, Purpose: 2, Layer: "uni", Name: "a.uni", Addr: 7})
	if err != nil {
		t.Fatal(err)
	}
	dealloc := []byte{0x87, 0x03, 0x00, 0x09, 0x07, 0x00, 0x40, 0xa8, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x04, 0x00, 0x05, 0x00, 0x06, 0xf4, 0x07, 0x00, 0x08, 0x00}
	data := func(eid uint32, seq uint32, payload []byte) []byte {
		return frame(serial.TypeData, 0, seq, 0x2000, serial.DataLen+len(payload), func(h serial.Header) {
			h.SetEID(eid)
			copy(h.Payload(), payload)
		})
	}
	hello := frame(serial.TypeHello, 0, 0, 3584, serial.HelloLen, func(h serial.Header) { h.SetHello(0x1111, 0x2222) })
	d1 := data(9, 100, open)
	credit := frame(serial.TypeCredit, serial.FlagProbe, 0x100, 0x1100, serial.HeaderLen, nil)
	d2 := data(0, 200, dealloc)
	bad := data(5, 300, []byte("xyz"))
	bad[bytes.IndexByte(bad, 'x')] = 'X' // damaged on the line: the CRC fails
	stream := slices.Concat(hello, d1, credit, d2, bad)
	cut := len(hello) + len(d1)/2
	segs := [][]byte{stream[:cut], stream[cut:]}

	file := filepath.Join(t.TempDir(), "serial.pcapng")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	ifc := pcapgo.DefaultNgInterface
	ifc.LinkType = layers.LinkTypeEthernet
	ifc.Name = "lo"
	w, err := pcapgo.NewNgWriterInterface(f, ifc, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	seq := uint32(1000)
	for _, s := range segs {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xb}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1)}
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 4555, Seq: seq, Ack: 1, ACK: true, PSH: true, Window: 65535}
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(s)); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		at = at.Add(time.Millisecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
		seq += uint32(len(s))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	got := run(t, file, "-d", "tcp.port==4555,ouro_serial", "-V", "-O", "ouro_serial,ouro")
	if n := strings.Count(got, "[Group: Malformed]"); n != 1 {
		t.Errorf("%d malformed, want 1 (the damaged frame)", n)
	}
	for _, want := range []string{"Type: hello (2)", "Nonce: 0x0000000000001111", "Message: connmgr Open (mgmt)", "Type: credit (3)", "= probe: True", "Message: shim dealloc", "CRC-32C mismatch"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in the detail view", want)
		}
	}
	checkGolden(t, "serial.txt", got)
}

// checkGolden compares tshark's output got with testdata/name (go test
// -update rewrites it), naming the first line that differs.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("tshark's output differs from %s at line %d:\n got: %s\nwant: %s\n(go test -update rewrites it)", golden, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("tshark's output has %d lines, %s %d", len(gl), golden, len(wl))
	}
}
