//go:build tamago && arm && pi1

package raspberrypi

const (
	modelName = "Raspberry Pi 1 (BCM2835)"
	qemuName  = "QEMU raspi1ap (BCM2835, emulated)"
)
