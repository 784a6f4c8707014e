//go:build tamago && amd64

// Package microvm is ouro's board package for QEMU's microvm machine
// (x86-64) under TCG, the software emulator. It is not tamago's
// board/qemu/microvm, which needs KVM: that package calibrates the TSC
// through pvclock and panics under TCG ("could not set system timer").
// This package replaces it (it must not be imported alongside) and
// provides what the node image adapts: console, entropy, a fixed test key
// as the "hardware-unique" key, exit with a code, an idle governor that
// sleeps in HLT, and a virtio-net driver with batch Receive/Transmit.
//
// Importing the package is the hardware integration: it links the
// runtime hooks (Hwinit1, Nanotime, Printk, RamSize) and, at Hwinit1,
// calibrates the TSC and the local APIC timer against the i8254 PIT,
// enables the local APIC and initialises COM1. [Board.Init] then starts
// the interrupt service and the idle governor.
//
// # The machine
//
//	qemu-system-x86_64 -accel tcg -cpu max -m 512M -nographic -no-reboot \
//	  -machine microvm,x-option-roms=on,pit=on,pic=off,rtc=on \
//	  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
//	  -global virtio-mmio.force-legacy=false \
//	  -netdev socket,id=n0,connect=127.0.0.1:P -device virtio-net-device,netdev=n0,mac=02:00:00:00:00:02 \
//	  -kernel IMAGE
//
//	time           TSC, calibrated against PIT channel 0 (pit=on); no pvclock
//	idle           local APIC one-shot timer (vector 255) + HLT
//	console        COM1 (0x3f8), QEMU's -serial (stdio with -nographic)
//	entropy        RDRAND (-cpu max; under TCG it is the host's getrandom)
//	unique key     FIXED published test key, NOT secret
//	exit           isa-debug-exit at 0xf4: QEMU exits with (code<<1)|1
//	arguments      fw_cfg file opt/ouro/args (-fw_cfg name=opt/ouro/args,string=...)
//	NIC            virtio-net over virtio-mmio 1.x at 0xfeb02e00, GSI 47
//	memory         runtime 0x10000000-0x1c000000, DMA 0x1c000000-0x20000000: -m 512M or more
//
// -cpu max (or any model with RDRAND) is required: tamago's amd64 package
// seeds the runtime with RDRAND before any board code runs, and QEMU's
// default qemu64 model raises #UD for it.
package microvm
