# mk/pi.mk — bare-metal images for the Raspberry Pi 2, Zero and 1
# (board/raspberrypi), included by the top-level Makefile after
# mk/tamago.mk ("-include mk/pi.mk"). See docs/boards-pi.md.
#
#   make pi-image BOARD=pi2|pizero|pi1 [PI_IMAGE=./images/router] [CONFIG=node.toml]
#                         the ELF, bin/<image>-<board>.elf (default: the
#                         router, whose default config is a serial shim on
#                         the link UART and an echo app)
#   make pi-qemu BOARD=pi2|pizero|pi1 [PI_ARGS="exit-after=5s"] [PI_TIMEOUT=60]
#                [PI_LINK=null]
#                         boot it under QEMU raspi2b / raspi0 / raspi1ap;
#                         PI_LINK is the link UART's -serial (e.g.
#                         "tcp:127.0.0.1:5555,server=on,wait=off")
#   make sdcard BOARD=pi2|pizero|pi1
#                         bin/sdcard-<board>/: kernel image and config.txt
#                         for the FAT boot partition (firmware not included)
#   make qemu-test-pi [BOARD=pi2|pizero]
#                         images/boottest/pi under QEMU: exit codes 0 and 3,
#                         the link UART echo over a chardev socket; then the
#                         router over its UART to a hosted node, and a
#                         unicast layer across the Pi (serial) and a USB
#                         armory VM (Ethernet) (images/router
#                         TestQEMUPiRouter, TestQEMUPiArmory; RTT,
#                         throughput; PI_FIGURES=FILE keeps the figures)
#
# With BOARD=pi2|pizero|pi1, mk/tamago.mk's "make image" and "make qemu"
# build and boot the same images (the router by default) through the
# settings below.
#
# A missing toolchain or QEMU makes a target print one "SKIP: ..." line:
# qemu-test-pi then exits 0 without claiming a pass, the others exit 2.

PI_BOARDS   := pi2 pizero pi1
PI_BOARD     = $(if $(filter $(BOARD),$(PI_BOARDS)),$(BOARD),pi2)
PI_IMAGE    ?= ./images/router
PI_LINK     ?= null
PI_TIMEOUT  ?= 60
PI_ARGS     ?=
PI_FIGURES  ?=
PI_GO       ?= go
PI_OBJCOPY  ?= objcopy -I elf32-little

PI_GOARM_pi2    := 7
PI_GOARM_pizero := 6
PI_GOARM_pi1    := 6
# QEMU 7.2 machines: raspi2b (BCM2836), raspi0 (Pi Zero), raspi1ap (Pi 1 A+)
PI_MACHINE_pi2    := raspi2b
PI_MACHINE_pizero := raspi0
PI_MACHINE_pi1    := raspi1ap

PI_GOENV   = GOOS=tamago GOOSPKG=github.com/usbarmory/tamago GOARCH=arm GOARM=$(PI_GOARM_$(PI_BOARD))
PI_TAGS    = $(PI_BOARD),linkcpuinit
# RAM starts at 1 MiB (board/raspberrypi ramStart); TamaGo keeps its first
# 64 KiB for the vector table, page tables and exception stacks.
PI_TEXT   := 0x00110000
# the router's embedded configuration (CONFIG) is added as in mk/tamago.mk,
# once config-check passed
PI_LDFLAGS = -T $(PI_TEXT) -R 0x1000$(if $(DEBUG),, -w)
# the console is QEMU's first -serial (PL011), the link UART the second
PI_QEMU    = qemu-system-arm -machine $(PI_MACHINE_$(PI_BOARD)) -nographic -monitor none
PI_ELF     = bin/$(notdir $(PI_IMAGE))-$(PI_BOARD).elf

# the raw kernel for the firmware and QEMU: loaded at 0x10000, a stub
# clears .bss/.noptrbss and jumps to the ELF entry; the image follows at
# 0x110000 (the space between is zeros)
PI_KERNEL_ADDR := 0x10000

PI_TAMAGO         = $(eval PI_TAMAGO := $(shell $(PI_GO) tool -n github.com/usbarmory/tamago/cmd/tamago 2>/dev/null))$(PI_TAMAGO)
PI_TAMAGO_VERSION = $(eval PI_TAMAGO_VERSION := $(shell $(PI_GO) list -m -f '{{.Version}}' github.com/usbarmory/tamago 2>/dev/null))$(PI_TAMAGO_VERSION)
PI_TAMAGO_GOROOT  = $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tamago-go/tamago-go$(patsubst v%,%,$(PI_TAMAGO_VERSION))
PI_SKIP_TOOLCHAIN = SKIP: TamaGo toolchain missing ($(PI_TAMAGO_GOROOT)/bin/go): see docs/boards.md, "The toolchain"
PI_SKIP_QEMU      = SKIP: qemu-system-arm missing: apt-get install qemu-system-arm

# settings for mk/tamago.mk's image and qemu rules
ifneq ($(filter $(BOARD),$(PI_BOARDS)),)
TAMAGO_GOENV   := $(PI_GOENV)
TAMAGO_TAGS    := $(PI_TAGS)
TEXT_START     := $(PI_TEXT)
# a package without a Pi entry point falls back to the boot test
IMAGE_FALLBACK := ./images/boottest/pi
QEMU_CMD_$(BOARD) := $(PI_QEMU) -serial stdio -serial null
# tamago.mk's tamago-check-board accepts only usbarmory; the settings
# above are what its image and qemu rules need for a Pi, so its check runs
# as if for usbarmory. Drop this when tamago.mk takes a board list.
tamago-check-board: override BOARD := usbarmory
endif

.PHONY: pi-image pi-qemu sdcard pi-sdcard qemu-test-pi pi-check

pi-check:
	@if [ -z "$(filter $(BOARD),$(PI_BOARDS))" ] && [ "$(origin BOARD)" = "command line" ]; then \
		echo "mk/pi.mk: BOARD=$(BOARD) is not a Pi (one of: $(PI_BOARDS))"; exit 2; fi

pi-image: config-check pi-check
	@if [ ! -x "$(PI_TAMAGO_GOROOT)/bin/go" ] || [ -z "$(PI_TAMAGO)" ]; then echo "$(PI_SKIP_TOOLCHAIN)"; exit 2; fi
	@mkdir -p bin
	xt=$(IMAGE_TAGS) && \
	$(PI_GOENV) nice $(PI_TAMAGO) build -trimpath -tags $(PI_TAGS)$${xt:+,$$xt} $(TAMAGO_GCFLAGS) -ldflags "$(PI_LDFLAGS) $(CONFIG_LDFLAGS)" -o $(PI_ELF) $(PI_IMAGE)
	$(TAMAGO_STRIP) $(PI_ELF)
	@ls -l $(PI_ELF)

pi-qemu: pi-image
	@command -v qemu-system-arm >/dev/null || { echo "$(PI_SKIP_QEMU)"; exit 2; }
	timeout --foreground $(PI_TIMEOUT) $(PI_QEMU) -serial stdio -serial $(PI_LINK) \
		-semihosting-config enable=on,target=native,arg=$(notdir $(PI_IMAGE))$(subst $(pi_space),,$(foreach a,$(PI_ARGS),$(pi_comma)arg=$(a))) \
		-kernel $(PI_ELF)

pi_comma := ,
pi_empty :=
pi_space := $(pi_empty) $(pi_empty)

# sdcard: what goes on the FAT boot partition besides the firmware
# (bootcode.bin, start.elf, fixup.dat from github.com/raspberrypi/firmware,
# boot/; see docs/boards-pi.md). kernel7.img for the Pi 2, kernel.img for
# the Zero and Pi 1, named by config.txt's kernel= anyway.
PI_KERNEL_pi2    := kernel7.img
PI_KERNEL_pizero := kernel.img
PI_KERNEL_pi1    := kernel.img
PI_SDDIR          = bin/sdcard-$(PI_BOARD)

sdcard pi-sdcard: pi-image
	@set -e; d=$(PI_SDDIR); k=$$d/$(PI_KERNEL_$(PI_BOARD)); mkdir -p $$d; \
	sym() { $(PI_GO) tool nm $(PI_ELF) | awk -v s="$$1" '$$3 == s { print $$1 }'; }; \
	text=$$(sym runtime.text); bss=$$(sym runtime.bss); end=$$(sym runtime.enoptrbss); \
	entry=$$(od -An -tx4 -j24 -N4 $(PI_ELF) | tr -d ' '); \
	[ "$$((0x$$text))" -eq "$$(($(PI_TEXT)))" ] || { echo "sdcard: text at 0x$$text, want $(PI_TEXT)"; exit 1; }; \
	le() { for s in 0 8 16 24; do printf "\\$$(printf '%03o' $$(( ($$1 >> s) & 255 )))"; done; }; \
	{ for w in 0xe59f0014 0xe59f1014 0xe3a02000 0xe1500001 0x34802004 0x3afffffc 0xe59ff004 \
	          0x$$bss 0x$$end 0x$$entry; do le $$w; done; } > $$k; \
	truncate -s $$(($(PI_TEXT) - $(PI_KERNEL_ADDR))) $$k; \
	$(PI_OBJCOPY) --wildcard -R '.note*' -R .bss -R .noptrbss -O binary $(PI_ELF) $$d/image.bin; \
	cat $$d/image.bin >> $$k; rm -f $$d/image.bin; \
	{ echo "# ouro $(notdir $(PI_IMAGE)) for $(PI_BOARD) (mk/pi.mk; docs/boards-pi.md)"; \
	  echo "arm_64bit=0"; \
	  echo "kernel=$(PI_KERNEL_$(PI_BOARD))"; \
	  echo "kernel_address=$(PI_KERNEL_ADDR)"; \
	  echo "# no device tree: the image does not read one, and the firmware"; \
	  echo "# would otherwise write it over the start of RAM"; \
	  echo "device_tree="; \
	  echo "# console: PL011 on GPIO 14/15, 115200 8N1, 48 MHz UART clock"; \
	  echo "enable_uart=1"; \
	  echo "init_uart_clock=48000000"; \
	  echo "# mini UART baud divisor assumes a fixed 250 MHz core clock"; \
	  echo "core_freq=250"; \
	  echo "# board/raspberrypi's RAM size assumes a 64 MiB GPU split"; \
	  echo "gpu_mem=64"; \
	  $(if $(filter pizero pi1,$(PI_BOARD)),echo "# keep the PL011 on GPIO 14/15 (Zero W: away from Bluetooth)"; echo "dtoverlay=disable-bt";) \
	} > $$d/config.txt; \
	echo "sdcard: $$d: $$(ls $$d | tr '\n' ' ')(entry 0x$$entry, clears 0x$$bss-0x$$end)"; ls -l $$k

# qemu-test-pi: images/boottest/pi under QEMU (TestQEMUPi, a host-side Go
# test that boots the image and plays the link UART's peer), then the
# router image (TestQEMUPiRouter, TestQEMUPiArmory in images/router: they
# build their images with configs of their own)
qemu-test-pi:
	@if [ ! -x "$(PI_TAMAGO_GOROOT)/bin/go" ] || [ -z "$(PI_TAMAGO)" ]; then echo "$(PI_SKIP_TOOLCHAIN)"; exit 0; fi; \
	if ! command -v qemu-system-arm >/dev/null; then echo "$(PI_SKIP_QEMU)"; exit 0; fi; \
	$(MAKE) --no-print-directory pi-image BOARD=$(PI_BOARD) PI_IMAGE=./images/boottest/pi CONFIG= >/dev/null && \
	log=$$(mktemp); \
	OURO_QEMU_TEST=1 PI_ELF=$(abspath bin/pi-$(PI_BOARD).elf) PI_QEMU="qemu-system-arm -machine $(PI_MACHINE_$(PI_BOARD))" \
		PI_FIGURES=$(if $(PI_FIGURES),$(abspath $(PI_FIGURES))) \
		$(PI_GO) test -count=1 -timeout 10m -v -run '^TestQEMUPi$$' ./images/boottest/pi >$$log 2>&1; \
	rc=$$?; \
	if [ $$rc -eq 0 ]; then grep -E -- '--- (PASS|SKIP|FAIL)|qemu_test.go:[0-9]+: |^ok' $$log; else cat $$log; fi; \
	[ $$rc -eq 0 ] || { rm -f $$log; exit $$rc; }; \
	OURO_QEMU_TEST=1 OURO_PI_BOARD=$(PI_BOARD) \
		PI_FIGURES=$(if $(PI_FIGURES),$(abspath $(PI_FIGURES))) \
		$(PI_GO) test -count=1 -timeout 10m -v -run '^(TestQEMUPiRouter|TestQEMUPiArmory)$$' ./images/router >$$log 2>&1; \
	rc=$$?; \
	if [ $$rc -eq 0 ]; then grep -E -- '--- (PASS|SKIP|FAIL)|qemu_pi_test.go:[0-9]+: [^ ]|^ok' $$log; else cat $$log; fi; \
	rm -f $$log; exit $$rc
