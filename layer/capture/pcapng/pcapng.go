// Package pcapng writes captured records (package layer/capture) to a
// pcapng file with gopacket's pcapgo: one interface per capturing IPCP
// (its name, its kind as the description), link type capture.LinkType,
// every packet the record header followed by the kept bytes
// (docs/wire/capture.md). It is for host tools and tests; node images do
// not import it.
package pcapng

import (
	"fmt"
	"io"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ouronet/ouro/layer/capture"
)

// Writer writes records to a pcapng stream. Not safe for concurrent use.
type Writer struct {
	out  io.Writer
	app  string
	ng   *pcapgo.NgWriter
	ifs  map[string]int
	data []byte
}

// NewWriter returns a writer to w; app names the program in the section
// header. Nothing is written until the first record.
func NewWriter(w io.Writer, app string) *Writer {
	return &Writer{out: w, app: app, ifs: map[string]int{}}
}

func iface(ipcp string, l capture.Layer) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:                ipcp,
		Description:         "ouro " + l.String() + " IPCP " + ipcp,
		LinkType:            layers.LinkType(capture.LinkType),
		TimestampResolution: 9,
		SnapLength:          capture.HeaderLen + capture.MaxSnap,
	}
}

// Write appends the record r, captured at the IPCP called ipcp.
func (w *Writer) Write(ipcp string, r capture.Record) error {
	id, ok := w.ifs[ipcp]
	switch {
	case ok:
	case w.ng == nil:
		opts := pcapgo.DefaultNgWriterOptions
		opts.SectionInfo.Application = w.app
		ng, err := pcapgo.NewNgWriterInterface(w.out, iface(ipcp, r.Header.Layer()), opts)
		if err != nil {
			return fmt.Errorf("pcapng: %w", err)
		}
		w.ng, id = ng, 0
		w.ifs[ipcp] = id
	default:
		var err error
		if id, err = w.ng.AddInterface(iface(ipcp, r.Header.Layer())); err != nil {
			return fmt.Errorf("pcapng: %w", err)
		}
		w.ifs[ipcp] = id
	}
	w.data = append(append(w.data[:0], r.Header[:capture.HeaderLen]...), r.Data...)
	ci := gopacket.CaptureInfo{
		Timestamp:      r.Time,
		CaptureLength:  len(w.data),
		Length:         capture.HeaderLen + r.Len,
		InterfaceIndex: id,
	}
	if err := w.ng.WritePacket(ci, w.data); err != nil {
		return fmt.Errorf("pcapng: %w", err)
	}
	return nil
}

// Flush writes what is buffered.
func (w *Writer) Flush() error {
	if w.ng == nil {
		return nil
	}
	return w.ng.Flush()
}
