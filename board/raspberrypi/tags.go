//go:build tamago && arm && !linkcpuinit

package raspberrypi

// The package brings its own cpuinit (cpuinit_*_arm.s), which parks the
// secondary cores QEMU starts at the entry point; TamaGo's arm/init.s
// provides another unless the image is built with -tags linkcpuinit.
var _ = build_with_tags_linkcpuinit_and_one_of_pi2_pizero_pi1
