//go:build tamago && amd64

package microvm

import (
	"strings"
)

// Exit ends the program with code through QEMU's isa-debug-exit device
// (-device isa-debug-exit,iobase=0xf4,iosize=0x04): QEMU exits with status
// (code<<1)|1, so 0 becomes 1, 3 becomes 7 and a panic (code 2) 5; see
// QEMUStatus. Without the device the write is ignored, and the CPU halts
// with interrupts masked (QEMU keeps running: wrap runs in timeout).
//
// os.Exit and a panic reach Exit too: the package installs it as the
// runtime's exit hook.
func Exit(code int) {
	exit(int32(code))
}

// QEMUStatus is the exit status qemu-system-x86_64 reports for Exit(code).
func QEMUStatus(code int) int {
	return (code<<1 | 1) & 0xff
}

func exit(code int32) {
	outl(debugExitPort, uint32(code))
	print("microvm: exit with code ", code, ", halting\n")
	haltForever()
}

// QEMU fw_cfg, I/O port interface (QEMU docs/specs/fw_cfg.rst): a 16-bit
// selector at 0x510 and a data byte at 0x511; selector 0x19 is the file
// directory (big-endian count, then 64-byte entries: size, select,
// reserved, 56-byte name).
const (
	fwCfgSelector = 0x510
	fwCfgData     = 0x511
	fwCfgFileDir  = 0x19
	fwCfgSig      = 0x00

	// ArgsFile is the fw_cfg file Args reads.
	ArgsFile = "opt/ouro/args"
)

func fwCfgRead(buf []byte) {
	for i := range buf {
		buf[i] = inb(fwCfgData)
	}
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// fwCfgFile returns the contents of the named fw_cfg file, or nil.
func fwCfgFile(name string) []byte {
	var sig [4]byte
	outw(fwCfgSelector, fwCfgSig)
	fwCfgRead(sig[:])
	if string(sig[:]) != "QEMU" {
		return nil
	}

	var hdr [4]byte
	outw(fwCfgSelector, fwCfgFileDir)
	fwCfgRead(hdr[:])
	n := be32(hdr[:])

	var e [64]byte
	for i := uint32(0); i < n && i < 4096; i++ {
		fwCfgRead(e[:])
		fname := string(e[8:])
		if j := strings.IndexByte(fname, 0); j >= 0 {
			fname = fname[:j]
		}
		if fname != name {
			continue
		}
		size := be32(e[0:4])
		sel := uint16(e[4])<<8 | uint16(e[5])
		if size > 64<<10 {
			return nil
		}
		buf := make([]byte, size)
		outw(fwCfgSelector, sel)
		fwCfgRead(buf)
		return buf
	}

	return nil
}

// Args returns the words of the fw_cfg file opt/ouro/args, QEMU's
// "-fw_cfg name=opt/ouro/args,string=WORD WORD...", split on white space
// (nil without it). It plays the part of the USB armory board's
// semihosting command line.
func (b *Board) Args() []string {
	return strings.Fields(strings.TrimRight(string(fwCfgFile(ArgsFile)), "\x00"))
}
