//go:build tamago && amd64

package microvm

// TSC and local APIC timer calibration against the i8254 PIT.
//
// tamago's microvm package reads the TSC frequency from KVM (CPUID leaf
// 0x40000010 or pvclock pairing); under TCG neither exists. QEMU's PIT
// (microvm pit=on) runs on QEMU's virtual clock, which follows the host's
// real time, as do the TSC (host ticks) and the APIC timer. Channel 0 is
// programmed as a free-running rate generator and its latched count is read
// until 50 ms of PIT ticks have passed; the TSC and the APIC timer's
// current count, read at both ends, give their rates. microvm has no port
// 0x61 (no PC speaker), so channel 2's gate cannot be used as Linux does.
//
// References: Intel 8254 datasheet (mode 2, counter latch command);
// Intel SDM Vol. 3A 11.5.4 (APIC timer).

const (
	pitHz      = 1193182
	pitCh0     = 0x40
	pitCommand = 0x43
	// channel 0, lobyte/hibyte, mode 2 (rate generator), binary
	pitCh0Mode2 = 0b00_11_010_0
	// channel 0 counter latch
	pitCh0Latch = 0b00_00_0000

	calibrationTicks = pitHz / 20 // 50 ms
)

// lapicHz is the APIC timer's rate after the divide-by-16 configuration.
var lapicHz uint64

func pitRead() uint16 {
	outb(pitCommand, pitCh0Latch)
	lo := inb(pitCh0)
	hi := inb(pitCh0)
	return uint16(lo) | uint16(hi)<<8
}

func calibrate() {
	outb(pitCommand, pitCh0Mode2)
	outb(pitCh0, 0) // reload 0 = 65536
	outb(pitCh0, 0)

	// the APIC timer counts down from its maximum, masked
	lapicWrite(lapicInitCount, 0xffffffff)

	prev := pitRead()
	t0 := rdtsc()
	a0 := lapicRead(lapicCurCount)
	elapsed := uint64(0)

	for elapsed < calibrationTicks {
		c := pitRead()
		elapsed += uint64(uint16(prev - c))
		prev = c
	}

	t1 := rdtsc()
	a1 := lapicRead(lapicCurCount)
	lapicWrite(lapicInitCount, 0)

	tscHz = (t1 - t0) * pitHz / elapsed
	lapicHz = uint64(a0-a1) * pitHz / elapsed

	if tscHz == 0 {
		tscHz = 1e9
	}
	if lapicHz == 0 {
		lapicHz = 1e9 / 16
	}

	tsc0 = t0
	tscMult = (uint64(1e9) << 32) / tscHz
}

// TimerFrequencies reports the calibrated TSC and APIC timer rates (Hz).
func TimerFrequencies() (tsc, apicTimer uint64) {
	return tscHz, lapicHz
}
