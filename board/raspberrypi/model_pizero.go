//go:build tamago && arm && pizero

package raspberrypi

const (
	modelName = "Raspberry Pi Zero (BCM2835)"
	qemuName  = "QEMU raspi0 (BCM2835, emulated)"
)
