//go:build tamago && arm

// Package raspberrypi is ouro's board package for the Raspberry Pi 2
// (BCM2836, Cortex-A7, ARMv7), the Pi Zero and the Pi 1 (BCM2835,
// ARM1176JZF-S, ARMv6), and for QEMU's raspi2b and raspi0 machines, which
// stand in for them on the test bench. It is not TamaGo's
// board/raspberrypi (which does not build against tamago v1.26.0, see
// docs/boards-pi.md): it provides the runtime hooks itself and keeps its
// drivers to what a node needs: console, entropy, a unique key, exit,
// an idle that sleeps, and the two UARTs as byte streams.
//
// # Build tags
//
// Exactly one model tag selects the SoC, and linkcpuinit is required
// (the package brings its own cpuinit, which parks secondary cores):
//
//	-tags pi2,linkcpuinit       GOARM=7, peripherals at 0x3f000000, generic timer
//	-tags pizero,linkcpuinit    GOARM=6, peripherals at 0x20000000, system timer
//	-tags pi1,linkcpuinit       GOARM=6, as pizero
//
// Without a model tag or without linkcpuinit the package does not compile,
// and the error names the missing tag. Images link with -T 0x00110000 (RAM
// starts at 1 MiB; the first 64 KiB of it hold the vector table, page
// tables and exception stacks).
//
// # Runtime hooks
//
// Importing the package is the whole integration: it defines RamStart,
// RamSize, RamStackOffset, InitRNG, GetRandomData, Nanotime, Printk and
// Hwinit1 of runtime/goos. The peripheral base is a constant of the model,
// so the hardware RNG, which the runtime reads during schedinit (before
// Hwinit1), is reachable from the first instruction.
//
// # QEMU or real board
//
// Detected at run time from the mailbox: QEMU reports board serial 0.
//
//	                  Raspberry Pi                  QEMU raspi2b / raspi0
//	console           PL011 (UART0), GPIO 14/15     PL011 = QEMU's FIRST -serial
//	link UART         mini UART (see docs)          mini UART = QEMU's SECOND -serial
//	entropy           BCM2835 RNG                   BCM2835 RNG (host getrandom)
//	unique key        from the board serial,        FIXED test key, NOT secret
//	                  NOT secret
//	exit              halt (WFI), code printed      semihosting SYS_EXIT_EXTENDED
//	arguments         none                          semihosting command line
//
// # Interrupts and idle
//
// [Board.Init] routes the timer and the UART interrupts, runs TamaGo's
// arm.ServiceInterrupts in a goroutine and installs an idle governor that
// arms a timer for the runtime's next deadline and executes WFI: the ARM
// generic timer through the BCM2836 local interrupt controller on the Pi 2,
// system timer compare 1 on the BCM2835. Both UARTs are interrupt driven.
package raspberrypi
