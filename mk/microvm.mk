# mk/microvm.mk — QEMU microvm (x86-64, TCG) as a TamaGo board. Included by
# the top-level Makefile after mk/tamago.mk, whose image rule it reuses (and
# whose qemu rule dispatches to qemu-microvm). See docs/boards-microvm.md.
#
#   make image BOARD=microvm [IMAGE=./images/router] [CONFIG=node.toml]
#                         the ELF, bin/<image>-microvm.elf
#   make qemu BOARD=microvm [QEMU_ARGS="name=vm exit-after=60s"] [MICROVM_NET=...] [QEMU_TIMEOUT=60]
#                         boot it under qemu-system-x86_64 -machine microvm
#                         (QEMU_ARGS reach the guest through fw_cfg)
#   make qemu-test-microvm
#                         images/boottest: exit codes, virtio-net echo
#                         against tools/qemu/enetpeer; then images/router
#                         TestQEMUMicrovm against hosted nodes
#                         (QEMU_FIGURES=FILE keeps the figures)
#
# A missing TamaGo toolchain or qemu-system-x86_64 makes a target print one
# "SKIP: ..." line: qemu-test-microvm then exits 0 without claiming a pass;
# image and qemu exit 2.

TAMAGO_BOARDS += microvm
ifeq ($(BOARD),microvm)
TAMAGO_GOENV  := GOOS=tamago GOOSPKG=github.com/usbarmory/tamago GOARCH=amd64
# no file uses this tag: it keeps "-tags" well formed and names the board
TAMAGO_TAGS   := microvm
# tamago's amd64 RamStart (0x10000000) + 64 KiB
TEXT_START    := 0x10010000
# the host's binutils know x86-64 ELF
TAMAGO_OBJCOPY := objcopy
# functions aligned only as their code asks (a loop the compiler aligns,
# assembly's PCALIGN: each raises its function's alignment, cmd/internal/obj
# requireAlignment), not all to amd64's 32 bytes: 0.22 MB less padding
# (docs/benchmarks.md, "Image sizes")
BOARD_LDFLAGS := -funcalign 1
endif

MICROVM_SKIP_QEMU := SKIP: qemu-system-x86_64 missing: apt-get install qemu-system-x86

# KVM is not assumed (TCG); the PIT calibrates the TSC; isa-debug-exit
# carries the exit code ((code<<1)|1); modern virtio-mmio; -cpu max for
# RDRAND, which tamago's runtime seeding needs.
MICROVM_QEMU := qemu-system-x86_64 -accel tcg -cpu max \
	-machine microvm,x-option-roms=on,pit=on,pic=off,rtc=on -m 512M \
	-nographic -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-global virtio-mmio.force-legacy=false

# The guest's virtio-net: by default QEMU listens on 127.0.0.1:5610 for a
# hosted node ([ipcp.eth] qemu_connect = "127.0.0.1:5610"); MICROVM_NET=
# (empty) boots without a NIC.
MICROVM_NET ?= -netdev socket,id=n0,listen=127.0.0.1:5610 \
	-device virtio-net-device,netdev=n0,mac=02:00:00:00:00:02

.PHONY: qemu-microvm qemu-test-microvm

# mk/tamago.mk's "make qemu" runs this rule for BOARD=microvm
QEMU_RULE_microvm := qemu-microvm

qemu-microvm:
	@command -v qemu-system-x86_64 >/dev/null || { echo "$(MICROVM_SKIP_QEMU)"; exit 2; }
	@$(MAKE) --no-print-directory image BOARD=microvm IMAGE=$(IMAGE) CONFIG=$(CONFIG)
	timeout --foreground $(QEMU_TIMEOUT) $(MICROVM_QEMU) $(MICROVM_NET) \
		-fw_cfg "name=opt/ouro/args,string=$$(basename $$(cat bin/.image-microvm) .elf) $(QEMU_ARGS)" \
		-kernel $$(cat bin/.image-microvm)

QEMU_FIGURES ?=
qemu-test-microvm:
	@if [ ! -x "$(TAMAGO_GOROOT)/bin/go" ] || [ -z "$(TAMAGO)" ]; then echo "$(TAMAGO_SKIP_TOOLCHAIN)"; exit 0; fi; \
	if ! command -v qemu-system-x86_64 >/dev/null; then echo "$(MICROVM_SKIP_QEMU)"; exit 0; fi; \
	$(MAKE) --no-print-directory image BOARD=microvm IMAGE=./images/boottest CONFIG= >/dev/null && \
	$(TAMAGO_GO) build -o bin/enetpeer ./tools/qemu/enetpeer && \
	$(TAMAGO_GO) build -o bin/relay ./tools/qemu/relay && \
	ELF=bin/boottest-microvm.elf QEMU_CMD="$(MICROVM_QEMU)" tools/qemu/boottest-microvm.sh || exit 1; \
	log=$$(mktemp); \
	OURO_QEMU_TEST=1 OURO_QEMU_FIGURES=$(abspath $(QEMU_FIGURES)) $(TAMAGO_GO) test -count=1 -timeout 15m -v -run '^TestQEMUMicrovm$$' ./images/router >$$log 2>&1; \
	rc=$$?; \
	if [ $$rc -eq 0 ]; then grep -E -- '--- (PASS|SKIP)|qemu_microvm_test.go:[0-9]+: (SKIP|eth|udp|built|VM ready|ouro perf)|^ok' $$log; else cat $$log; fi; \
	rm -f $$log; exit $$rc
