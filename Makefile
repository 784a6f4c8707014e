# ouro — build, test and image targets.
#
#   make test     everything CI runs: vet, gofmt check, race tests, 32-bit ARM build,
#                 and the QEMU tests when the TamaGo toolchain and QEMU are present.
#   make bench    the benchmarks recorded in docs/benchmarks.md.
#   make demo     the README's main job: a few hosted nodes pinging across each other.

GO      ?= go
PKGS    ?= ./...
# Packages that must build for 32-bit ARM Linux: everything host-portable
# (board/ and images/ carry build tags of their own).
ARMPKGS ?= ./...

.PHONY: all test unit vet fmt-check arm bench demo fuzz-smoke clean

all: test

test: fmt-check vet unit arm qemu-test qemu-test-pi qemu-test-microvm

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt: unformatted files:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -race -count=1 -tags kerneldebug ./kernel/

arm:
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build $(ARMPKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

demo:
	$(GO) run ./tools/demo

clean:
	rm -rf bin

# Bare-metal targets (image, imx, qemu, qemu-test) for the TamaGo boards.
-include mk/tamago.mk mk/pi.mk mk/microvm.mk
