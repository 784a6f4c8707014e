package ecm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"unicode/utf16"
)

var testHost = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x5a}

// TestConfigurationBytes checks the whole configuration against a copy
// assembled by hand from the tables, field by field.
func TestConfigurationBytes(t *testing.T) {
	want := []byte{
		// configuration (USB 2.0, 9.6.3 Table 9-10): wTotalLength 80,
		// 2 interfaces, value 1, no string, bus powered, 250 x 2 mA
		0x09, 0x02, 0x50, 0x00, 0x02, 0x01, 0x00, 0x80, 0xfa,
		// interface 0 alt 0, 1 endpoint, class 02 subclass 06 (ECM)
		0x09, 0x04, 0x00, 0x00, 0x01, 0x02, 0x06, 0x00, 0x00,
		// Header (CDC 1.2, 5.2.3.1 Table 15): bcdCDC 1.20
		0x05, 0x24, 0x00, 0x20, 0x01,
		// Union (CDC 1.2, 5.2.3.2 Table 16): control 0, subordinate 1
		0x05, 0x24, 0x06, 0x00, 0x01,
		// Ethernet Networking (ECM 1.2, 5.4 Table 3): iMACAddress 4,
		// no statistics, wMaxSegmentSize 1514, no MC filters, no power
		// filters
		0x0d, 0x24, 0x0f, 0x04, 0x00, 0x00, 0x00, 0x00, 0xea, 0x05, 0x00, 0x00, 0x00,
		// endpoint 2 IN, interrupt, 16 bytes, bInterval 9
		0x07, 0x05, 0x82, 0x03, 0x10, 0x00, 0x09,
		// interface 1 alt 0: no endpoints, class 0a (data)
		0x09, 0x04, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00,
		// interface 1 alt 1: 2 endpoints
		0x09, 0x04, 0x01, 0x01, 0x02, 0x0a, 0x00, 0x00, 0x00,
		// endpoint 1 IN, bulk, 512
		0x07, 0x05, 0x81, 0x02, 0x00, 0x02, 0x00,
		// endpoint 1 OUT, bulk, 512
		0x07, 0x05, 0x01, 0x02, 0x00, 0x02, 0x00,
	}
	got := ConfigurationDescriptor(Default(testHost))
	if !bytes.Equal(got, want) {
		t.Fatalf("got\n% x\nwant\n% x", got, want)
	}
}

// desc is one descriptor of a parsed configuration.
type desc struct {
	typ, sub byte // sub: the subtype of CS_INTERFACE descriptors
	b        []byte
}

func parse(t *testing.T, b []byte) []desc {
	t.Helper()
	var ds []desc
	for len(b) > 0 {
		n := int(b[0])
		if n < 2 || n > len(b) {
			t.Fatalf("descriptor bLength %d with %d bytes left", n, len(b))
		}
		d := desc{typ: b[1], b: b[:n]}
		if d.typ == TypeCSInterface {
			d.sub = b[2]
		}
		ds = append(ds, d)
		b = b[n:]
	}
	return ds
}

// TestConfigurationLayout walks the configuration as a host driver does
// and checks the rules of the specifications rather than bytes.
func TestConfigurationLayout(t *testing.T) {
	for _, mp := range []int{HighSpeedBulk, FullSpeedBulk} {
		c := Default(testHost)
		c.MaxPacket = mp
		b := ConfigurationDescriptor(c)
		ds := parse(t, b)

		t.Run("total length", func(t *testing.T) {
			if got := int(binary.LittleEndian.Uint16(b[2:])); got != len(b) {
				t.Errorf("wTotalLength %d, want %d", got, len(b))
			}
		})
		t.Run("order", func(t *testing.T) {
			// ECM 1.2, 5.3: the functional descriptors follow the
			// Communications interface, Header first, Union and
			// Ethernet after it.
			var got []byte
			for _, d := range ds {
				got = append(got, d.typ, d.sub)
			}
			want := []byte{
				TypeConfiguration, 0,
				TypeInterface, 0,
				TypeCSInterface, SubtypeHeader,
				TypeCSInterface, SubtypeUnion,
				TypeCSInterface, SubtypeEthernet,
				TypeEndpoint, 0,
				TypeInterface, 0,
				TypeInterface, 0,
				TypeEndpoint, 0,
				TypeEndpoint, 0,
			}
			if !bytes.Equal(got, want) {
				t.Errorf("descriptor order % x, want % x", got, want)
			}
		})
		t.Run("lengths", func(t *testing.T) {
			want := map[[2]byte]int{
				{TypeConfiguration, 0}:             ConfigurationLen,
				{TypeInterface, 0}:                 InterfaceLen,
				{TypeEndpoint, 0}:                  EndpointLen,
				{TypeCSInterface, SubtypeHeader}:   HeaderFuncLen,
				{TypeCSInterface, SubtypeUnion}:    UnionFuncLen,
				{TypeCSInterface, SubtypeEthernet}: EthernetFuncLen,
			}
			for i, d := range ds {
				if w := want[[2]byte{d.typ, d.sub}]; len(d.b) != w {
					t.Errorf("descriptor %d (type %#x/%#x): got %d bytes, want %d", i, d.typ, d.sub, len(d.b), w)
				}
			}
		})
		t.Run("data interface alternates", func(t *testing.T) {
			// ECM 1.2, 3.3 and 5.1: alternate 0 has no endpoints,
			// alternate 1 a bulk IN and a bulk OUT of MaxPacket.
			alts := map[byte]byte{}
			var bulk []desc
			for i, d := range ds {
				if d.typ == TypeInterface && d.b[2] == DataInterface {
					alts[d.b[3]] = d.b[4]
					if d.b[5] != ClassData {
						t.Errorf("data interface alt %d class %#x, want %#x", d.b[3], d.b[5], ClassData)
					}
					if d.b[3] == 1 {
						bulk = ds[i+1:]
					}
				}
			}
			if len(alts) != 2 || alts[0] != 0 || alts[1] != 2 {
				t.Fatalf("data interface alternates (alt: endpoints) %v, want 0:0 1:2", alts)
			}
			if len(bulk) != 2 {
				t.Fatalf("%d descriptors after alt 1, want 2 endpoints", len(bulk))
			}
			dirs := 0
			for _, e := range bulk {
				if e.b[3] != endpointAttrBulk {
					t.Errorf("endpoint %#x attributes %#x, want bulk", e.b[2], e.b[3])
				}
				if got := int(binary.LittleEndian.Uint16(e.b[4:])); got != mp {
					t.Errorf("endpoint %#x wMaxPacketSize %d, want %d", e.b[2], got, mp)
				}
				dirs |= 1 << (e.b[2] >> 7)
			}
			if dirs != 3 {
				t.Errorf("bulk endpoints are not one IN and one OUT")
			}
		})
		t.Run("union and ethernet", func(t *testing.T) {
			for _, d := range ds {
				switch {
				case d.typ == TypeCSInterface && d.sub == SubtypeUnion:
					if d.b[3] != CommInterface || d.b[4] != DataInterface {
						t.Errorf("union control %d subordinate %d, want %d %d", d.b[3], d.b[4], CommInterface, DataInterface)
					}
				case d.typ == TypeCSInterface && d.sub == SubtypeEthernet:
					if d.b[3] != StringMAC {
						t.Errorf("iMACAddress %d, want %d", d.b[3], StringMAC)
					}
					if got := binary.LittleEndian.Uint16(d.b[8:]); got != MaxSegmentSize {
						t.Errorf("wMaxSegmentSize %d, want %d", got, MaxSegmentSize)
					}
				}
			}
		})
	}
}

func TestDeviceDescriptor(t *testing.T) {
	want := []byte{
		0x12, 0x01, 0x00, 0x02, // bLength, DEVICE, bcdUSB 2.00
		0x02, 0x00, 0x00, 0x40, // CDC at device level, EP0 64 bytes
		0x09, 0x12, 0x02, 0x27, 0x00, 0x01, // 1209:2702, bcdDevice 1.00
		0x01, 0x02, 0x03, 0x01, // strings 1 2 3, one configuration
	}
	if got := DeviceDescriptor(Default(testHost)); !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
	q := QualifierDescriptor()
	if len(q) != QualifierLen || q[0] != QualifierLen || q[1] != TypeDeviceQualifier || q[4] != ClassComm || q[8] != 1 {
		t.Errorf("qualifier % x", q)
	}
}

func TestStrings(t *testing.T) {
	s := Strings(Default(testHost))
	if len(s) != stringCount {
		t.Fatalf("%d strings, want %d", len(s), stringCount)
	}
	if want := []byte{4, 3, 0x09, 0x04}; !bytes.Equal(s[0], want) {
		t.Errorf("string 0 % x, want % x", s[0], want)
	}
	mac := s[StringMAC]
	// ECM 1.2, 5.4: 12 characters from 0-9 and A-F, first nibble first.
	if mac[0] != 2+2*macStringChars || mac[1] != TypeString {
		t.Fatalf("iMACAddress header % x", mac[:2])
	}
	u := make([]uint16, macStringChars)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(mac[2+2*i:])
	}
	if got := string(utf16.Decode(u)); got != "02112233445A" {
		t.Errorf("iMACAddress %q, want %q", got, "02112233445A")
	}
	for _, r := range utf16.Decode(u) {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'F') {
			t.Errorf("iMACAddress character %q outside 0-9A-F", r)
		}
	}
	if got, want := StringDescriptor("é€"), []byte{6, 3, 0xe9, 0x00, 0xac, 0x20}; !bytes.Equal(got, want) {
		t.Errorf("StringDescriptor: got % x, want % x", got, want)
	}
}

func TestValidate(t *testing.T) {
	ok := Default(testHost)
	if err := ok.Validate(); err != nil {
		t.Fatalf("Default: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"short MAC":  func(c *Config) { c.HostMAC = c.HostMAC[:5] },
		"zero MAC":   func(c *Config) { c.HostMAC = make(net.HardwareAddr, 6) },
		"max packet": func(c *Config) { c.MaxPacket = 100 },
		"power":      func(c *Config) { c.MaxPowerMA = 900 },
		"long string": func(c *Config) {
			c.Product = string(bytes.Repeat([]byte{'x'}, 127))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := Default(testHost)
			mut(&c)
			if err := c.Validate(); !errors.Is(err, ErrConfig) {
				t.Errorf("got %v, want ErrConfig", err)
			}
		})
	}
}
