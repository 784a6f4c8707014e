package ecm

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf16"
)

// Descriptor types (USB 2.0, 9.4 Table 9-5) and CDC codes.
const (
	TypeDevice          = 0x01
	TypeConfiguration   = 0x02
	TypeString          = 0x03
	TypeInterface       = 0x04
	TypeEndpoint        = 0x05
	TypeDeviceQualifier = 0x06
	// TypeCSInterface is CS_INTERFACE (CDC 1.2, 5.2.3 Table 12).
	TypeCSInterface = 0x24

	// ClassComm is the Communications Device / Interface class code
	// (CDC 1.2, 4.1 and 4.2 Table 3); ClassData the Data Interface class
	// (CDC 1.2, 4.5 Table 6).
	ClassComm = 0x02
	ClassData = 0x0a
	// SubclassECM is the Ethernet Networking Control Model subclass
	// (CDC 1.2, 4.3 Table 4; ECM 1.2, 4.2).
	SubclassECM = 0x06

	// Functional descriptor subtypes (CDC 1.2, 5.2.3 Table 13).
	SubtypeHeader   = 0x00
	SubtypeUnion    = 0x06
	SubtypeEthernet = 0x0f

	// BCDCDC is bcdCDC of the Header Functional Descriptor: CDC 1.20.
	BCDCDC = 0x0120

	// Descriptor lengths.
	DeviceLen          = 18 // USB 2.0, 9.6.1 Table 9-8
	QualifierLen       = 10 // USB 2.0, 9.6.2 Table 9-9
	ConfigurationLen   = 9  // USB 2.0, 9.6.3 Table 9-10
	InterfaceLen       = 9  // USB 2.0, 9.6.5 Table 9-12
	EndpointLen        = 7  // USB 2.0, 9.6.6 Table 9-13
	HeaderFuncLen      = 5  // CDC 1.2, 5.2.3.1 Table 15
	UnionFuncLen       = 5  // CDC 1.2, 5.2.3.2 Table 16, one subordinate
	EthernetFuncLen    = 13 // ECM 1.2, 5.4 Table 3
	macStringChars     = 12 // ECM 1.2, 5.4: iMACAddress is 12 hex digits
	endpointAttrBulk   = 0x02
	endpointAttrIntr   = 0x03
	languageEnglishUS  = 0x0409
	configAttrBusPower = 0x80 // USB 2.0, 9.6.3: bit 7 reserved, set to one
)

// Interface numbers, endpoint addresses and string indices of the gadget:
// one configuration, a Communications Class interface (0) with an interrupt
// IN endpoint for notifications, and a Data Class interface (1) whose
// alternate setting 0 has no endpoints and alternate setting 1 the bulk
// pair (ECM 1.2, 3.3 and 5.1: "the default alternate setting has no
// endpoints", so that the host can stop traffic by selecting it).
const (
	CommInterface = 0
	DataInterface = 1

	// EndpointBulkIn carries frames to the host, EndpointBulkOut frames
	// from it, EndpointNotify the notifications (USB 2.0, 9.6.6:
	// bit 7 is the direction, 1 = IN).
	EndpointBulkIn  = 0x81
	EndpointBulkOut = 0x01
	EndpointNotify  = 0x82

	// NotifyMaxPacket is wMaxPacketSize of the notification endpoint: the
	// longest notification, ConnectionSpeedChange, is 16 bytes.
	NotifyMaxPacket = 16
	// NotifyInterval is bInterval of the notification endpoint: at high
	// speed 2^(9-1) microframes = 32 ms (USB 2.0, 9.6.6 Table 9-13).
	NotifyInterval = 9

	StringLanguage     = 0
	StringManufacturer = 1
	StringProduct      = 2
	StringSerial       = 3
	StringMAC          = 4
	stringCount        = 5
)

// Max packet sizes of bulk endpoints (USB 2.0, 5.8.3): 512 at high speed,
// 64 at full speed.
const (
	HighSpeedBulk = 512
	FullSpeedBulk = 64
)

// Config is what varies between gadgets; the zero value is not valid, see
// Default.
type Config struct {
	VendorID, ProductID, Release uint16 // idVendor, idProduct, bcdDevice
	Manufacturer, Product        string
	Serial                       string
	// HostMAC is the address the host gives its end of the link (the
	// iMACAddress string).
	HostMAC net.HardwareAddr
	// MaxPacket is wMaxPacketSize of the bulk endpoints.
	MaxPacket int
	// MaxPowerMA is the bus current drawn, in mA (bMaxPower is in 2 mA
	// units).
	MaxPowerMA int
}

// Default returns the configuration ouro uses for host MAC host: pid.codes
// 1209:2702 (the USB armory's test ID, also used by TamaGo's examples),
// high-speed bulk endpoints, 500 mA.
func Default(host net.HardwareAddr) Config {
	return Config{
		VendorID: 0x1209, ProductID: 0x2702, Release: 0x0100,
		Manufacturer: "ouro",
		Product:      "ouro CDC-ECM",
		Serial:       MACString(host),
		HostMAC:      host,
		MaxPacket:    HighSpeedBulk,
		MaxPowerMA:   500,
	}
}

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("ecm: invalid config")

// Validate reports whether c can be turned into descriptors.
func (c Config) Validate() error {
	switch {
	case len(c.HostMAC) != 6:
		return fmt.Errorf("%w: host MAC %v is not 6 bytes", ErrConfig, c.HostMAC)
	case c.HostMAC[0]|c.HostMAC[1]|c.HostMAC[2]|c.HostMAC[3]|c.HostMAC[4]|c.HostMAC[5] == 0:
		return fmt.Errorf("%w: host MAC is zero (ECM 1.2, 5.4: iMACAddress cannot be zero)", ErrConfig)
	case c.MaxPacket != HighSpeedBulk && c.MaxPacket != FullSpeedBulk:
		return fmt.Errorf("%w: bulk max packet %d (want %d or %d)", ErrConfig, c.MaxPacket, HighSpeedBulk, FullSpeedBulk)
	case c.MaxPowerMA < 0 || c.MaxPowerMA > 500:
		return fmt.Errorf("%w: max power %d mA", ErrConfig, c.MaxPowerMA)
	}
	for _, s := range []string{c.Manufacturer, c.Product, c.Serial} {
		if 2+2*len(utf16.Encode([]rune(s))) > 255 {
			return fmt.Errorf("%w: string %q too long for a descriptor", ErrConfig, s)
		}
	}
	return nil
}

// DeviceDescriptor returns the 18-byte device descriptor (USB 2.0, 9.6.1
// Table 9-8): class Communications at device level (CDC 1.2, 4.1), so that
// hosts bind a CDC driver without an interface association descriptor.
func DeviceDescriptor(c Config) []byte {
	b := make([]byte, DeviceLen)
	b[0] = DeviceLen
	b[1] = TypeDevice
	binary.LittleEndian.PutUint16(b[2:], 0x0200) // bcdUSB 2.00
	b[4] = ClassComm                             // bDeviceClass
	b[5] = 0                                     // bDeviceSubClass
	b[6] = 0                                     // bDeviceProtocol
	b[7] = 64                                    // bMaxPacketSize0
	binary.LittleEndian.PutUint16(b[8:], c.VendorID)
	binary.LittleEndian.PutUint16(b[10:], c.ProductID)
	binary.LittleEndian.PutUint16(b[12:], c.Release)
	b[14] = StringManufacturer
	b[15] = StringProduct
	b[16] = StringSerial
	b[17] = 1 // bNumConfigurations
	return b
}

// QualifierDescriptor returns the device qualifier (USB 2.0, 9.6.2
// Table 9-9) a high-speed capable device must return.
func QualifierDescriptor() []byte {
	b := make([]byte, QualifierLen)
	b[0] = QualifierLen
	b[1] = TypeDeviceQualifier
	binary.LittleEndian.PutUint16(b[2:], 0x0200)
	b[4] = ClassComm
	b[7] = 64 // bMaxPacketSize0
	b[8] = 1  // bNumConfigurations
	return b
}

// FunctionalDescriptors returns the class-specific descriptors that follow
// the Communications Class interface descriptor, in the order ECM 1.2, 5.3
// requires: Header (CDC 1.2, 5.2.3.1 Table 15), Union (CDC 1.2, 5.2.3.2
// Table 16: control interface 0, subordinate data interface 1), Ethernet
// Networking (ECM 1.2, 5.4 Table 3).
func FunctionalDescriptors(c Config) [][]byte {
	header := []byte{HeaderFuncLen, TypeCSInterface, SubtypeHeader, 0, 0}
	binary.LittleEndian.PutUint16(header[3:], BCDCDC)

	union := []byte{UnionFuncLen, TypeCSInterface, SubtypeUnion, CommInterface, DataInterface}

	ether := make([]byte, EthernetFuncLen)
	ether[0] = EthernetFuncLen
	ether[1] = TypeCSInterface
	ether[2] = SubtypeEthernet
	ether[3] = StringMAC                                     // iMACAddress
	binary.LittleEndian.PutUint32(ether[4:], 0)              // bmEthernetStatistics: none
	binary.LittleEndian.PutUint16(ether[8:], MaxSegmentSize) // wMaxSegmentSize
	binary.LittleEndian.PutUint16(ether[10:], 0)             // wNumberMCFilters: no filtering
	ether[12] = 0                                            // bNumberPowerFilters

	return [][]byte{header, union, ether}
}

// Interface is a standard interface descriptor (USB 2.0, 9.6.5 Table 9-12).
func Interface(number, alt, endpoints, class, subclass uint8) []byte {
	return []byte{InterfaceLen, TypeInterface, number, alt, endpoints, class, subclass, 0, 0}
}

// Endpoint is a standard endpoint descriptor (USB 2.0, 9.6.6 Table 9-13).
func Endpoint(addr, attr uint8, maxPacket uint16, interval uint8) []byte {
	return []byte{EndpointLen, TypeEndpoint, addr, attr, byte(maxPacket), byte(maxPacket >> 8), interval}
}

// ConfigurationDescriptor returns the whole configuration as GET_DESCRIPTOR
// (USB 2.0, 9.4.3) returns it: configuration, Communications interface 0
// with its functional descriptors and notification endpoint, Data interface
// 1 alternate 0 (no endpoints) and alternate 1 (bulk IN, bulk OUT).
func ConfigurationDescriptor(c Config) []byte {
	var body []byte
	body = append(body, Interface(CommInterface, 0, 1, ClassComm, SubclassECM)...)
	for _, f := range FunctionalDescriptors(c) {
		body = append(body, f...)
	}
	body = append(body, Endpoint(EndpointNotify, endpointAttrIntr, NotifyMaxPacket, NotifyInterval)...)
	body = append(body, Interface(DataInterface, 0, 0, ClassData, 0)...)
	body = append(body, Interface(DataInterface, 1, 2, ClassData, 0)...)
	body = append(body, Endpoint(EndpointBulkIn, endpointAttrBulk, uint16(c.MaxPacket), 0)...)
	body = append(body, Endpoint(EndpointBulkOut, endpointAttrBulk, uint16(c.MaxPacket), 0)...)

	b := make([]byte, ConfigurationLen, ConfigurationLen+len(body))
	b[0] = ConfigurationLen
	b[1] = TypeConfiguration
	binary.LittleEndian.PutUint16(b[2:], uint16(ConfigurationLen+len(body))) // wTotalLength
	b[4] = 2                                                                 // bNumInterfaces
	b[5] = 1                                                                 // bConfigurationValue
	b[6] = 0                                                                 // iConfiguration
	b[7] = configAttrBusPower
	b[8] = byte(c.MaxPowerMA / 2)
	return append(b, body...)
}

// StringDescriptor encodes s as a UNICODE string descriptor (USB 2.0,
// 9.6.7 Table 9-16: UTF-16LE, no terminator).
func StringDescriptor(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2, 2+2*len(u))
	b[0] = byte(2 + 2*len(u))
	b[1] = TypeString
	for _, r := range u {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

// Strings returns the string descriptors by index: 0 the language list
// (USB 2.0, 9.6.7 Table 9-15: US English), then manufacturer, product,
// serial number and iMACAddress.
func Strings(c Config) [][]byte {
	s := make([][]byte, stringCount)
	s[StringLanguage] = []byte{4, TypeString, byte(languageEnglishUS & 0xff), byte(languageEnglishUS >> 8)}
	s[StringManufacturer] = StringDescriptor(c.Manufacturer)
	s[StringProduct] = StringDescriptor(c.Product)
	s[StringSerial] = StringDescriptor(c.Serial)
	s[StringMAC] = StringDescriptor(MACString(c.HostMAC))
	return s
}

// MACString is the iMACAddress text of mac: 12 upper-case hexadecimal
// digits, most significant nibble of the first byte first (ECM 1.2, 5.4:
// characters 30h-39h and 41h-46h only).
func MACString(mac net.HardwareAddr) string {
	return strings.ToUpper(hex.EncodeToString(mac))
}
