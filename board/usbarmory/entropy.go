//go:build tamago && arm

package usbarmory

import (
	"crypto/aes"
	"encoding/binary"
	"errors"
	"sync"
	"unsafe"
)

// Under QEMU TamaGo seeds its AES-CTR DRBG with the boot-time timer value,
// which is the same on every run and every emulated node: every QEMU node
// would draw the same "random" bytes (keys, nonces, MAC addresses). Board.Init
// therefore rekeys the runtime's random source, under QEMU only, from 32
// bytes of the host's /dev/urandom read through semihosting.

// rngFn is TamaGo's random source hook, behind runtime/goos.GetRandomData
// and so behind crypto/rand.
//
//go:linkname rngFn github.com/usbarmory/tamago/internal/rng.GetRandomDataFn
var rngFn func([]byte)

// Semihosting file operations (ARM DUI 0058, 6.1 SYS_OPEN, 6.2 SYS_CLOSE,
// 6.16 SYS_READ); mode 1 is fopen's "rb".
const (
	semihostingSysOpen  = 0x01
	semihostingSysClose = 0x02
	semihostingSysRead  = 0x06
	semihostingModeRB   = 1
)

var hostSeeded bool

func seedFromHost() error {
	name := []byte("/dev/urandom\x00")
	open := [3]uint32{uint32(uintptr(unsafe.Pointer(&name[0]))), semihostingModeRB, uint32(len(name) - 1)}

	fd := int32(semihostingCall(semihostingSysOpen, uintptr(unsafe.Pointer(&open[0]))))
	if fd < 0 {
		return errors.New("usbarmory: semihosting: cannot open host /dev/urandom")
	}

	d := &drbg{}
	rd := [3]uint32{uint32(fd), uint32(uintptr(unsafe.Pointer(&d.key[0]))), uint32(len(d.key))}
	left := semihostingCall(semihostingSysRead, uintptr(unsafe.Pointer(&rd[0])))

	cl := [1]uint32{uint32(fd)}
	semihostingCall(semihostingSysClose, uintptr(unsafe.Pointer(&cl[0])))

	if left != 0 || d.key == [32]byte{} {
		return errors.New("usbarmory: semihosting: short read from host /dev/urandom")
	}

	rngFn = d.fill
	hostSeeded = true

	return nil
}

// drbg is AES-256-CTR with key erasure: each call first replaces the key
// with two blocks of its own keystream, then generates from a fresh counter.
type drbg struct {
	mu  sync.Mutex
	key [32]byte
}

func (d *drbg) fill(b []byte) {
	var ctr [aes.BlockSize]byte
	next := func(c *[aes.BlockSize]byte) {
		binary.LittleEndian.PutUint64(c[:], binary.LittleEndian.Uint64(c[:])+1)
	}

	d.mu.Lock()
	c, err := aes.NewCipher(d.key[:])
	if err != nil {
		panic(err)
	}
	c.Encrypt(d.key[:16], ctr[:])
	next(&ctr)
	c.Encrypt(d.key[16:], ctr[:])
	next(&ctr)
	d.mu.Unlock()

	var blk [aes.BlockSize]byte
	for len(b) > 0 {
		c.Encrypt(blk[:], ctr[:])
		next(&ctr)
		b = b[copy(b, blk[:]):]
	}
}

// emulatedEntropy names the QEMU entropy source.
func emulatedEntropy() string {
	if hostSeeded {
		return "QEMU: DRBG keyed from host /dev/urandom via semihosting"
	}
	return "QEMU: DRBG seeded from the boot timer (NOT secure, same on every run)"
}
