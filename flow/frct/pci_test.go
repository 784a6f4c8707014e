package frct

import (
	"bytes"
	"testing"
)

func TestPCIRoundTrip(t *testing.T) {
	p := make(PCI, HeaderSize+3)
	p.Encode(FlagData|FlagAck|FlagFC, 0xa1a2a3a4, 0xb1b2b3b4, 0xc1c2c3c4)
	copy(p.Payload(), "abc")
	want := []byte{
		0x00, 0x07, 0x00, 0x00, // flags DATA|ACK|FC, reserved
		0xa1, 0xa2, 0xa3, 0xa4, // window
		0xb1, 0xb2, 0xb3, 0xb4, // seqno
		0xc1, 0xc2, 0xc3, 0xc4, // ackno
		'a', 'b', 'c',
	}
	if !bytes.Equal(p, want) {
		t.Fatalf("encoded % x\nwant    % x", []byte(p), want)
	}
	if !p.IsValid() {
		t.Fatalf("IsValid() = false for a well-formed DATA packet")
	}
	if got := p.Flags(); got != FlagData|FlagAck|FlagFC {
		t.Errorf("Flags() = %v, want DATA|ACK|FC", got)
	}
	if p.Window() != 0xa1a2a3a4 || p.Seqno() != 0xb1b2b3b4 || p.Ackno() != 0xc1c2c3c4 {
		t.Errorf("Window, Seqno, Ackno = %#x, %#x, %#x", p.Window(), p.Seqno(), p.Ackno())
	}
	if string(p.Payload()) != "abc" {
		t.Errorf("Payload() = %q, want abc", p.Payload())
	}
}

func TestPCIIsValid(t *testing.T) {
	mk := func(f Flags, payload int) PCI {
		p := make(PCI, HeaderSize+payload)
		p.Encode(f, 1, 2, 3)
		return p
	}
	reserved := mk(FlagAck, 0)
	reserved[resvOff+1] = 1
	tests := []struct {
		name string
		p    PCI
		want bool
	}{
		{"empty", PCI{}, false},
		{"short", make(PCI, HeaderSize-1), false},
		{"zero header", make(PCI, HeaderSize), true},
		{"data", mk(FlagData|FlagAck|FlagFC, 10), true},
		{"empty data", mk(FlagData, 0), true},
		{"ack", mk(FlagAck|FlagFC, 0), true},
		{"ack with payload", mk(FlagAck|FlagFC, 1), false},
		{"fin", mk(FlagFin|FlagAck, 0), true},
		{"fin with payload", mk(FlagFin, 4), false},
		{"data and fin", mk(FlagData|FlagFin, 0), false},
		{"data and keepalive", mk(FlagData|FlagKeepalive, 0), false},
		{"keepalive", mk(FlagKeepalive|FlagAck|FlagFC, 0), true},
		{"rdvs", mk(FlagRdvs|FlagAck|FlagFC, 0), true},
		{"sack, one block", mk(FlagAck|FlagFC|FlagSack, SackBlockSize), true},
		{"sack, four blocks", mk(FlagAck|FlagFC|FlagSack, MaxSackBlocks*SackBlockSize), true},
		{"sack, no block", mk(FlagAck|FlagSack, 0), false},
		{"sack, five blocks", mk(FlagAck|FlagSack, (MaxSackBlocks+1)*SackBlockSize), false},
		{"sack, part of a block", mk(FlagAck|FlagSack, SackBlockSize+3), false},
		{"sack on data", mk(FlagData|FlagAck|FlagSack, SackBlockSize), false},
		{"unknown flag", mk(1<<10, 0), false},
		{"reserved set", reserved, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.IsValid(); got != tc.want {
				t.Fatalf("IsValid() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSackBlocks(t *testing.T) {
	p := make(PCI, HeaderSize+2*SackBlockSize)
	p.Encode(FlagAck|FlagFC|FlagSack, 1, 2, 3)
	p.PutSackBlock(0, 0xfffffffe, 2) // across the wrap
	p.PutSackBlock(1, 5, 9)
	want := []byte{
		0x00, 0x46, 0x00, 0x00, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3,
		0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 2,
		0, 0, 0, 5, 0, 0, 0, 9,
	}
	if !bytes.Equal(p, want) {
		t.Fatalf("encoded % x\nwant    % x", []byte(p), want)
	}
	if !p.IsValid() || p.SackBlocks() != 2 || len(p.Payload()) != 0 {
		t.Fatalf("IsValid %v, SackBlocks %d, payload %d; want true, 2, 0", p.IsValid(), p.SackBlocks(), len(p.Payload()))
	}
	if s, e := p.SackBlock(0); s != 0xfffffffe || e != 2 {
		t.Fatalf("block 0 = [%#x, %#x), want [0xfffffffe, 2)", s, e)
	}
	if s, e := p.SackBlock(1); s != 5 || e != 9 {
		t.Fatalf("block 1 = [%d, %d), want [5, 9)", s, e)
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, "0"},
		{FlagData, "DATA"},
		{FlagData | FlagAck | FlagFC, "DATA|ACK|FC"},
		{FlagRdvs | FlagFin | FlagKeepalive, "RDVS|FIN|KEEPALIVE"},
		{FlagAck | FlagSack, "ACK|SACK"},
		{FlagAck | 1<<12, "ACK|0x1000"},
	}
	for _, tc := range tests {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint16(tc.f), got, tc.want)
		}
	}
}

func FuzzPCI(f *testing.F) {
	p := make(PCI, HeaderSize+2)
	p.Encode(FlagData|FlagAck, 9, 8, 7)
	f.Add([]byte(p))
	f.Add(make([]byte, HeaderSize))
	f.Add([]byte{0, 0x10, 0, 0})
	s := make(PCI, HeaderSize+2*SackBlockSize)
	s.Encode(FlagAck|FlagFC|FlagSack, 9, 8, 7)
	s.PutSackBlock(0, 10, 12)
	s.PutSackBlock(1, 14, 20)
	f.Add([]byte(s))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := PCI(b)
		if !p.IsValid() {
			return
		}
		// Re-encoding the parsed fields reproduces the header exactly.
		q := make(PCI, len(p))
		q.Encode(p.Flags(), p.Window(), p.Seqno(), p.Ackno())
		copy(q.Payload(), p.Payload())
		for i := range p.SackBlocks() {
			s, e := p.SackBlock(i)
			q.PutSackBlock(i, s, e)
		}
		if !bytes.Equal(p, q) {
			t.Fatalf("re-encoded % x, parsed from % x", []byte(q), b)
		}
		if n := p.SackBlocks(); n > MaxSackBlocks || (n == 0) != (p.Flags()&FlagSack == 0) {
			t.Fatalf("valid packet with %d SACK blocks, flags %v", n, p.Flags())
		}
		if p.Flags()&FlagData == 0 && len(p.Payload()) != 0 {
			t.Fatalf("valid non-DATA packet with a payload: %v", p.Flags())
		}
		_ = p.Flags().String()
	})
}
