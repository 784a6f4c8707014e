package unicast_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// TestReliableStreamNoSpurious: a 4 MiB byte stream over a reliable flow
// across the in-process unicast layer, which loses nothing but paces the
// flow (mb-ecn): its queue stretches round trips, so an RTO or a probe
// sometimes resends a packet whose original is only queued. Such a
// resend must stay one (frct's queuedBefore): it set off a cascade of
// fast retransmissions, 727-912 for the 3073 SDUs (24-30%), before.
func TestReliableStreamNoSpurious(t *testing.T) {
	s := newSealNet(t, nil)
	q := flow.Data()
	ra, rc, res, acc, err := s.alloc(t, q)
	if err != nil {
		t.Fatal(err)
	}
	flA, err := flow.New(ra, flow.Info{QoS: q, MaxSDU: res.MaxSDU, Peer: res.Peer})
	if err != nil {
		t.Fatal(err)
	}
	flC, err := flow.New(rc, flow.Info{QoS: acc.Req.QoS, MaxSDU: acc.Req.MaxSDU, Peer: acc.Req.Peer})
	if err != nil {
		t.Fatal(err)
	}
	sa, sc := flow.NewStream(flA), flow.NewStream(flC)
	defer sa.Close()
	defer sc.Close()
	want := make([]byte, 4<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go sa.Write(want)
	got := make([]byte, len(want))
	sc.SetReadDeadline(time.Now().Add(60 * time.Second))
	start := time.Now()
	if _, err := io.ReadFull(sc, got); err != nil {
		t.Fatalf("stream read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the stream arrived changed")
	}
	st := flA.Stats()
	t.Logf("4 MiB in %v: %d SDUs, %d retransmissions, RTT %v", time.Since(start), st.SentSDUs, st.Retransmits, st.RTT)
	// A cascade resends a quarter or more; a loaded machine's scheduling
	// stalls alone make an RTO resend up to about 6% (162-176 of 3073
	// seen at load average 3-10, beside other tests).
	if st.Retransmits*10 > st.SentSDUs {
		t.Errorf("%d retransmissions of %d SDUs on a lossless path, want < 10%%", st.Retransmits, st.SentSDUs)
	}
}
