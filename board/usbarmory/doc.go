//go:build tamago && arm

// Package usbarmory is ouro's board package for the USB armory Mk II
// (NXP i.MX6ULL/i.MX6ULZ) and for QEMU's mcimx6ul-evk machine, which stands
// in for it on the test bench. It is not a driver collection: it wraps
// TamaGo's mk2 board and imx6ul SoC packages behind a few small types that
// the node image adapts (console, entropy, LEDs, a hardware-unique key,
// exit, idle, and the ENET MAC as a frame device).
//
// Importing the package is the whole hardware integration (it imports
// TamaGo's mk2 board, which initialises the SoC and UART2 before main);
// [Board.Init] then starts the interrupt service and the idle governor.
//
// # QEMU or real board
//
// The flavour is detected at run time, not chosen by a build tag: QEMU's
// i.MX6UL reports silicon revision 0.0, which TamaGo exposes as
// imx6ul.Native == false. The same ELF therefore boots on both; what
// differs is listed by [Board.Emulated]:
//
//	                  USB armory Mk II              QEMU mcimx6ul-evk
//	console           UART2 (debug accessory)       UART2 = QEMU's SECOND -serial
//	entropy           RNGB TRNG (i.MX6ULL/ULZ)      DRBG keyed from host /dev/urandom
//	LEDs              white, blue (+ LAN jack)      no-ops
//	unique key        DCP, AES with OTPMK/NVTK      FIXED test key, NOT secret
//	exit              halt (WFI), code printed      semihosting SYS_EXIT_EXTENDED
//	NIC               ENET2 on UA-MKII-LAN only     ENET1 (QEMU's first -nic)
//	arguments         none                          semihosting command line
//
// Under QEMU the guest must run with -semihosting (or -semihosting-config
// enable=on,target=native): Init reads host entropy, Exit and Args use it.
// Without it those traps are unhandled SVC exceptions and the guest hangs.
//
// # Interrupts and idle
//
// [Board.Init] initialises the GIC, enables the secure physical timer
// interrupt, installs its own IRQ vector (which only records the interrupt
// and masks IRQs: TamaGo's wakes the service goroutine with runtime.WakeG
// from the exception, see irq.go), runs the interrupt service goroutine, and
// installs an idle governor (runtime/goos.Idle) that arms the timer for the
// runtime's next deadline and executes WFI. An idle node therefore sleeps
// in WFI until its next timer or a device interrupt, rather than spinning.
package usbarmory
