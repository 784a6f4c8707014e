//go:build tamago && arm

package raspberrypi

import (
	"errors"
	"sync"
	"time"
	"unsafe"
)

// The VideoCore mailbox property interface (BCM2835 ARM Peripherals has
// only the base address; the protocol is the firmware's, documented in
// github.com/raspberrypi/firmware/wiki/Mailbox-property-interface).
const (
	mboxBase   = 0xb880
	mboxRead   = mboxBase + 0x00
	mboxStatus = mboxBase + 0x18
	mboxWrite  = mboxBase + 0x20

	mboxFull  = 1 << 31
	mboxEmpty = 1 << 30

	chProperty = 8

	tagBoardRevision = 0x00010002
	tagBoardSerial   = 0x00010004

	codeRequest = 0
	codeSuccess = 0x80000000

	mboxTimeout = 100 * time.Millisecond
)

var (
	mboxMu  sync.Mutex
	mboxBuf [32]uint32 // a 16-byte aligned window of it is the message

	errMailbox = errors.New("raspberrypi: mailbox: no answer")
)

// property sends one property tag with a value buffer of len(out) words
// and copies the response values into out.
func property(tag uint32, out []uint32) error {
	mboxMu.Lock()
	defer mboxMu.Unlock()

	off := 0
	for uintptr(unsafe.Pointer(&mboxBuf[off]))&15 != 0 {
		off++
	}
	msg := mboxBuf[off : off+6+len(out)]
	msg[0] = uint32(4 * len(msg)) // message size in bytes
	msg[1] = codeRequest
	msg[2] = tag
	msg[3] = uint32(4 * len(out)) // value buffer size
	msg[4] = 0                    // request
	for i := range out {
		msg[5+i] = 0
	}
	msg[5+len(out)] = 0 // end tag
	addr := uint32(uintptr(unsafe.Pointer(&msg[0])))

	cleanDCache()
	deadline := time.Now().Add(mboxTimeout)
	for read32(periph(mboxStatus))&mboxFull != 0 {
		if time.Now().After(deadline) {
			return errMailbox
		}
	}
	write32(periph(mboxWrite), (addr|busAlias)&^0xf|chProperty)
	for {
		for read32(periph(mboxStatus))&mboxEmpty != 0 {
			if time.Now().After(deadline) {
				return errMailbox
			}
		}
		if v := read32(periph(mboxRead)); v&0xf == chProperty {
			break
		}
	}
	cleanDCache()
	if msg[1] != codeSuccess || msg[4]&codeSuccess == 0 {
		return errMailbox
	}
	copy(out, msg[5:5+len(out)])
	return nil
}
