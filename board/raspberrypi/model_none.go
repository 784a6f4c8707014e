//go:build tamago && arm && !pi2 && !pizero && !pi1

package raspberrypi

// One model tag selects the SoC: pi2 (BCM2836), pizero or pi1 (BCM2835).
var _ = build_with_tags_linkcpuinit_and_one_of_pi2_pizero_pi1
