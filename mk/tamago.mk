# mk/tamago.mk — bare-metal images for TamaGo boards (included by the
# top-level Makefile: "include mk/tamago.mk"). See docs/boards.md.
#
#   make image BOARD=usbarmory [IMAGE=./images/router] [CONFIG=node.toml]
#                         the ELF, bin/<image>-<board>.elf; CONFIG adds the
#                         build tags it needs (router -image-tags: netstack,
#                         ipstack_tcp)
#   make imx BOARD=usbarmory
#                         the bootable bin/<image>-<board>.imx (IVT + DCD)
#   make qemu BOARD=usbarmory [QEMU_ARGS=...] [QEMU_NET=...] [QEMU_TIMEOUT=60]
#                         boot the image under qemu-system-arm mcimx6ul-evk
#   make qemu-test        boot images/boottest: exit codes 0 and 3, then the
#                         ENET echo test against tools/qemu/enetpeer; then the
#                         router image wired to hosted nodes (images/router
#                         TestQEMU: eth and UDP-on-netstack flows, ping, perf,
#                         halt exit code; QEMU_FIGURES=FILE keeps the figures;
#                         TestQEMUMeasured: the image enrolls in a measured
#                         layer, and is refused with one byte changed;
#                         TestQEMUAuthority: refused without a certificate,
#                         enrolls with one embedded in its configuration;
#                         TestQEMURestart: A - VM - B with the VM listening;
#                         A, then B, then the VM restarted, a ping across
#                         the VM within 2 s of each coming back;
#                         TestQEMUImxStub: the .imx payload boots through its
#                         BSS-clearing stub with garbage in BSS;
#                         TestQEMUNoTCP: an image built without gVisor's TCP
#                         stops at start when its configuration asks for a
#                         status page;
#                         then, built with -tags faultinject,
#                         TestQEMUFaultNIC(Microvm): a poison frame faults
#                         the NIC driver component, which is restarted and
#                         re-initialises the NIC, and pings resume within
#                         1 s); last, images/selftest
#                         TestQEMUSelftest: the hardware self-test image's
#                         report under QEMU (docs/flashing.md)
#   make sizes            the router image's sizes on each board, written
#                         into docs/benchmarks.md (tools/qemu/sizes.sh)
#   make pkgsizes BOARD=usbarmory|microvm|pi2 [PKGSIZES_N=30] [CONFIG=...]
#                         what takes the space in the image, by Go package
#                         (tools/qemu/pkgsizes.sh on a DEBUG=1 build)
#
# CONFIG, when given, is checked first (config-check): a missing or invalid
# file fails the target (exit 1) before anything is built. Missing pieces
# (the TamaGo toolchain, qemu-system-arm, mkimage) make a target print one
# "SKIP: ..." line: qemu-test then exits 0 without claiming
# a pass; image, imx and qemu exit 2, since nothing was built or run.

BOARD        ?= usbarmory
IMAGE        ?= ./images/router
# IMAGE falls back to this when it does not build for the board (a package
# without a tamago entry point; images/router has one, main_tamago.go).
IMAGE_FALLBACK ?= ./images/boottest
CONFIG       ?=
QEMU_TIMEOUT ?= 60
QEMU_NET     ?= none
QEMU_ARGS    ?=
TAMAGO_GO    ?= go
# host binutils read the ARM ELF as generic little-endian ELF32
TAMAGO_OBJCOPY ?= objcopy -I elf32-little

# The tamago command (go.mod: tool github.com/usbarmory/tamago/cmd/tamago)
# runs tamago-go<version> from the user cache directory, and would try to
# git clone it from GitHub when absent, so its presence is checked first.
# Evaluated lazily, once, so that other targets pay nothing for them.
TAMAGO         = $(eval TAMAGO := $(shell $(TAMAGO_GO) tool -n github.com/usbarmory/tamago/cmd/tamago 2>/dev/null))$(TAMAGO)
TAMAGO_VERSION = $(eval TAMAGO_VERSION := $(shell $(TAMAGO_GO) list -m -f '{{.Version}}' github.com/usbarmory/tamago 2>/dev/null))$(TAMAGO_VERSION)
TAMAGO_MODDIR  = $(eval TAMAGO_MODDIR := $(shell $(TAMAGO_GO) list -m -f '{{.Dir}}' github.com/usbarmory/tamago 2>/dev/null))$(TAMAGO_MODDIR)
TAMAGO_CACHE   := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tamago-go
TAMAGO_GOROOT   = $(TAMAGO_CACHE)/tamago-go$(patsubst v%,%,$(TAMAGO_VERSION))

TAMAGO_SKIP_TOOLCHAIN = SKIP: TamaGo toolchain missing ($(TAMAGO_GOROOT)/bin/go): git clone --branch tamago-go$(patsubst v%,%,$(TAMAGO_VERSION)) https://github.com/usbarmory/tamago-go $(TAMAGO_GOROOT) && cd $(TAMAGO_GOROOT)/src && ./make.bash
TAMAGO_SKIP_QEMU      = SKIP: qemu-system-arm missing: apt-get install qemu-system-arm
TAMAGO_SKIP_MKIMAGE   = SKIP: mkimage missing: apt-get install u-boot-tools

# per-board settings; other boards' fragments (mk/microvm.mk) add theirs
# and append to TAMAGO_BOARDS
TAMAGO_BOARDS += usbarmory
ifeq ($(BOARD),usbarmory)
TAMAGO_GOENV  := GOOS=tamago GOOSPKG=github.com/usbarmory/tamago GOARCH=arm GOARM=7
TAMAGO_TAGS   := usbarmory
# ramStart (0x80000000, imx6ul/mem.go) + 64 KiB for vectors and page tables
TEXT_START    := 0x80010000
TAMAGO_DCD     = $(TAMAGO_MODDIR)/board/usbarmory/mk2/imximage.cfg
endif

# The Mk II console is UART2, QEMU's second -serial.
QEMU_CMD_usbarmory := qemu-system-arm -machine mcimx6ul-evk -cpu cortex-a7 -m 512M \
                 -nographic -monitor none -serial null -serial stdio
QEMU_CMD = $(QEMU_CMD_$(BOARD))

# DWARF debug information is left out unless DEBUG=1 (it is a fifth of
# the ELF and nothing on the board reads it), and so is the symbol table
# but for the few symbols the host's tools read (tools/qemu/stripelf.sh:
# ouro measure, make imx, make sdcard). A panic's trace names functions
# from .gopclntab, which stays.
DEBUG         ?=
# BOARD_LDFLAGS: a board's own linker flags (mk/microvm.mk)
TAMAGO_LDFLAGS = -T $(TEXT_START) -R 0x1000$(if $(DEBUG),, -w)$(if $(BOARD_LDFLAGS), $(BOARD_LDFLAGS))
# SMALL=1 compiles without inlining: 0.7 MB smaller (armory), and the
# board forwards about 40% less under a flood (docs/benchmarks.md, "Image
# sizes"); by default board images inline as go build does.
SMALL         ?=
TAMAGO_GCFLAGS = $(if $(SMALL),-gcflags=all=-l)
# IMAGE_TAGS: the build tags CONFIG needs beyond the board's, from the
# node's own parser (router -image-tags: ipstack_tcp when an [[ipnet]]
# netstack serves a status page; gVisor's TCP is left out otherwise).
# Evaluated by the recipe's shell, once config-check passed.
IMAGE_TAGS     = $(if $(CONFIG),$$($(CONFIG_CHECKER) -image-tags '$(CONFIG)'))
# TAMAGO_STRIP ELF: strip ELF in place (tools/qemu/stripelf.sh), or
# nothing with DEBUG=1
TAMAGO_STRIP   = $(if $(DEBUG),true,OBJCOPY="$(TAMAGO_OBJCOPY)" tools/qemu/stripelf.sh)
# CONFIG reaches the image as base64 in main.config (a string variable the
# image may declare; the linker ignores -X for an undeclared one), encoded
# by the recipe's shell once config-check passed.
CONFIG_LDFLAGS = $(if $(CONFIG),-X main.config=$$(base64 -w0 '$(CONFIG)'))
HOST_GO       ?= go
# what checks CONFIG on the host (a built router binary will do)
CONFIG_CHECKER ?= $(HOST_GO) run ./images/router

.PHONY: image imx qemu qemu-semihosting qemu-test tamago-check-board config-check

# config-check: CONFIG is checked on the host, by the router's own parser
# (router -check-config, docs/config.md), before anything is built: a
# missing or invalid file fails with its mistakes and no image is built.
config-check:
	@if [ -n "$(CONFIG)" ]; then \
		if [ ! -f '$(CONFIG)' ]; then echo "make: CONFIG=$(CONFIG): no such file: no image built" >&2; exit 1; fi; \
		$(CONFIG_CHECKER) -check-config '$(CONFIG)' || \
		{ echo "make: CONFIG=$(CONFIG) is not a valid node configuration (docs/config.md): no image built" >&2; exit 1; }; \
	fi

tamago-check-board:
	@if [ -z "$(filter $(BOARD),$(TAMAGO_BOARDS))" ]; then \
		echo "mk/tamago.mk: BOARD=$(BOARD) is not supported (supported: $(TAMAGO_BOARDS))"; exit 2; fi

# image: build $(IMAGE), or $(IMAGE_FALLBACK) when $(IMAGE) has no Go files
# for the board's build tags; writes the chosen ELF's path to bin/.image-$(BOARD)
image: config-check tamago-check-board
	@if [ ! -x "$(TAMAGO_GOROOT)/bin/go" ] || [ -z "$(TAMAGO)" ]; then echo "$(TAMAGO_SKIP_TOOLCHAIN)"; exit 2; fi
	@mkdir -p bin
	@pkg="$(IMAGE)"; \
	if ! $(TAMAGO_GOENV) $(TAMAGO) list -tags $(TAMAGO_TAGS) "$$pkg" >/dev/null 2>&1; then \
		echo "mk/tamago.mk: $$pkg does not build for BOARD=$(BOARD); using $(IMAGE_FALLBACK)"; \
		pkg="$(IMAGE_FALLBACK)"; \
	fi; \
	out="bin/$$(basename $$pkg)-$(BOARD).elf"; \
	xt=$(IMAGE_TAGS) || exit 1; \
	cmd="$(TAMAGO_GOENV) nice $(TAMAGO) build -trimpath -tags $(TAMAGO_TAGS)$${xt:+,$$xt} $(TAMAGO_GCFLAGS) -ldflags \"$(TAMAGO_LDFLAGS)$(if $(CONFIG), -X main.config=\$$(base64 -w0 '$(CONFIG)'))\" -o $$out $$pkg"; \
	echo "$$cmd"; \
	eval "$$cmd" && \
	$(if $(DEBUG),,echo '$(TAMAGO_STRIP)' $$out && $(TAMAGO_STRIP) $$out &&) \
	echo "$$out" > bin/.image-$(BOARD) && ls -l $$out

# imx: ELF -> payload (tools/qemu/imxpayload.sh: a start-up stub 4 KiB
# below TEXT_START that clears .bss/.noptrbss, which the TamaGo runtime
# does not, and jumps to the ELF entry; then .text through .data) -> i.MX
# image with IVT and the board's DCD (tamago
# board/usbarmory/mk2/imximage.cfg), loaded at and entered through the
# stub. The zeros of .bss/.noptrbss (32 MiB of Go 1.26's
# crypto/internal/fips140/drbg.memory) are no longer written out.
IMX_STUB = $(shell printf '0x%x' $$(($(TEXT_START) - 0x1000)))
imx: image
	@command -v mkimage >/dev/null || { echo "$(TAMAGO_SKIP_MKIMAGE)"; exit 2; }
	@elf=$$(cat bin/.image-$(BOARD)); base=$${elf%.elf}; \
	TEXT_START=$(TEXT_START) GO=$(TAMAGO_GO) OBJCOPY="$(TAMAGO_OBJCOPY)" tools/qemu/imxpayload.sh $$elf $$base.bin >/dev/null && \
	cp -f $(TAMAGO_DCD) $$base.dcd && chmod u+w $$base.dcd && \
	mkimage -n $$base.dcd -T imximage -e $(IMX_STUB) -d $$base.bin $$base.imx >/dev/null && \
	ls -l $$base.imx

# qemu: boot the image. A board fragment may name its own rule in
# QEMU_RULE_<board> (mk/microvm.mk); otherwise qemu-semihosting runs.
qemu: tamago-check-board
	@$(MAKE) --no-print-directory $(or $(QEMU_RULE_$(BOARD)),qemu-semihosting)

# QEMU_NET e.g. "nic,model=imx.enet,netdev=n0 -netdev socket,id=n0,connect=127.0.0.1:5555"
qemu-semihosting:
	@command -v qemu-system-arm >/dev/null || { echo "$(TAMAGO_SKIP_QEMU)"; exit 2; }
	@$(MAKE) --no-print-directory image BOARD=$(BOARD) IMAGE=$(IMAGE) CONFIG=$(CONFIG)
	timeout --foreground $(QEMU_TIMEOUT) $(QEMU_CMD) -net $(QEMU_NET) \
		-semihosting-config enable=on,target=native,arg=$$(basename $$(cat bin/.image-$(BOARD)) .elf)$(if $(strip $(QEMU_ARGS)),$(comma)arg=$(subst $(space),$(comma)arg=,$(strip $(QEMU_ARGS)))) \
		-kernel $$(cat bin/.image-$(BOARD))

# sizes: build each board's router image and write their sizes into
# docs/benchmarks.md (tools/qemu/sizes.sh)
.PHONY: sizes pkgsizes
sizes:
	@tools/qemu/sizes.sh

# pkgsizes: what takes the space in BOARD's image, summed by Go package,
# the PKGSIZES_N largest (tools/qemu/pkgsizes.sh on a DEBUG=1 build, which
# keeps the symbols: it leaves the unstripped ELF in bin/)
PKGSIZES_N ?= 30
pkgsizes:
	@$(MAKE) --no-print-directory image BOARD=$(BOARD) IMAGE=$(IMAGE) CONFIG=$(CONFIG) DEBUG=1 >/dev/null
	@tools/qemu/pkgsizes.sh $$(cat bin/.image-$(BOARD)) $(PKGSIZES_N)

comma := ,
empty :=
space := $(empty) $(empty)

# qemu-test: the bare-metal boot test (images/boottest), then the router
# image under QEMU against hosted nodes (a Go test that builds the image
# with its own embedded config; it skips with "SKIP:" lines of its own).
QEMU_FIGURES ?=
qemu-test:
	@if [ ! -x "$(TAMAGO_GOROOT)/bin/go" ] || [ -z "$(TAMAGO)" ]; then echo "$(TAMAGO_SKIP_TOOLCHAIN)"; exit 0; fi; \
	if ! command -v qemu-system-arm >/dev/null; then echo "$(TAMAGO_SKIP_QEMU)"; exit 0; fi; \
	$(MAKE) --no-print-directory image BOARD=usbarmory IMAGE=./images/boottest CONFIG= >/dev/null && \
	$(TAMAGO_GO) build -o bin/enetpeer ./tools/qemu/enetpeer && \
	ELF=bin/boottest-usbarmory.elf QEMU_CMD="$(QEMU_CMD_usbarmory)" tools/qemu/boottest.sh || exit 1; \
	log=$$(mktemp); \
	OURO_QEMU_TEST=1 OURO_QEMU_FIGURES=$(abspath $(QEMU_FIGURES)) $(TAMAGO_GO) test -count=1 -timeout 15m -v -run '^(TestQEMU|TestQEMUMeasured|TestQEMUAuthority|TestQEMURestart|TestQEMUImxStub|TestQEMUNoTCP)$$' ./images/router >$$log 2>&1 && \
	OURO_QEMU_TEST=1 $(TAMAGO_GO) test -tags faultinject -count=1 -timeout 10m -v -run '^TestQEMUFaultNIC(Microvm)?$$' ./images/router >>$$log 2>&1 && \
	OURO_QEMU_TEST=1 $(TAMAGO_GO) test -count=1 -timeout 5m -v -run '^TestQEMUSelftest$$' ./images/selftest >>$$log 2>&1; \
	rc=$$?; \
	if [ $$rc -eq 0 ]; then grep -E -- '--- (PASS|SKIP)|qemu_test.go:[0-9]+: (SKIP|eth|udp|built|VM ready|ouro perf)|qemu_trust_test.go:[0-9]+: (image|the armory|the VM|SKIP|sealed|plain hosted)|qemu_restart_test.go:[0-9]+: restart:|qemu_imx_test.go:[0-9]+: (payload|.imx)|qemu_fault_test.go:[0-9]+: (pings|built|VM ready)|^ +selftest: |^ok' $$log; else cat $$log; fi; \
	rm -f $$log; exit $$rc
