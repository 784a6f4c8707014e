# ouro — build, test and image targets.
#
#   make test     everything CI runs, step by step (STEPS), then a summary of
#                 what ran, passed and was skipped, and why: gofmt check,
#                 vet, race tests, the zero-allocation tests without -race,
#                 the kerneldebug build, a short fuzzing run of the trust
#                 decoders, the 32-bit ARM build, and the QEMU
#                 suites when the TamaGo toolchain and QEMU are present.
#                 A failed step does not stop the others; it fails make test.
#                 A subset: make test STEPS="unit allocs" PKGS=./tools/...
#   make bench    the benchmarks recorded in docs/benchmarks.md.
#   make demo     the README's main job: a few hosted nodes pinging across each other.

GO      ?= go
PKGS    ?= ./...
# Packages that must build for 32-bit ARM Linux: everything host-portable
# (board/ and images/ carry build tags of their own).
ARMPKGS ?= ./...
# The steps of make test, in order.
STEPS   ?= fmt-check vet unit allocs kerneldebug faults fuzz arm qemu-test qemu-test-pi qemu-test-microvm
# Where make test records its steps (tools/testsum), and the tool.
SUMMARY ?= bin/test-summary
TESTSUM ?= bin/testsum
# go test flags of the test steps; make test sets -json for tools/testsum.
GOTEST_FLAGS ?=
# Packages with zero-allocation tests (testing.AllocsPerRun): the allocs
# step runs their "Allocs" tests without -race, which allocates (the
# forwarding path's tests skip under it). tools/testsum's tests check that
# every such test that skips under -race is named so.
ALLOC_PKGS ?= $(sort $(foreach f,$(shell git grep -l 'testing.AllocsPerRun' -- '*_test.go' 2>/dev/null),./$(patsubst %/,%,$(dir $(f)))))

.PHONY: all test unit allocs kerneldebug faults fuzz vet fmt-check arm bench demo clean

all: test

test:
	@rm -rf $(SUMMARY) && mkdir -p $(SUMMARY) $(dir $(TESTSUM)) && $(GO) build -o $(TESTSUM) ./tools/testsum
	@for s in $(STEPS); do \
		echo "== make $$s"; \
		$(TESTSUM) run -dir $(SUMMARY) -step $$s -- $(MAKE) --no-print-directory $$s GOTEST_FLAGS=-json; \
	done; \
	$(TESTSUM) report -dir $(SUMMARY)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt: unformatted files:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test $(GOTEST_FLAGS) -race -count=1 -timeout 20m $(PKGS)

# the zero-allocation tests, without the race detector, one package at a
# time: a loaded machine slows a test and its background goroutines'
# allocations (timers, routing ticks) then count against it
allocs:
	$(GO) test $(GOTEST_FLAGS) -p 1 -count=1 -timeout 10m -run 'Allocs' $(ALLOC_PKGS)

# the kernel's consistency checks (build tag kerneldebug)
kerneldebug:
	$(GO) test $(GOTEST_FLAGS) -race -count=1 -tags kerneldebug ./kernel/

# the fault-injection tests (build tag faultinject): a poisoned packet
# panics a receive path; the component faults, is restarted, and the node
# (and, between router processes, the pings across it) carry on
faults:
	$(GO) test $(GOTEST_FLAGS) -tags faultinject -race -count=1 -timeout 10m -run 'Poison|^TestFault|^TestBoardDriverFault' ./layer/... ./images/router/ ./images/internal/netstack/ ./images/internal/node/

# a short fuzzing run (FUZZTIME each) of the decoders of what peers send
# (who they are, what they own, sealed flows, FRCT's headers and SACK
# blocks, the capture pages a node answers); every fuzz
# target's seed corpus also runs in unit. Longer runs and their exec
# counts: docs/benchmarks.md.
# A count, not a duration: Go 1.26's fuzzing coordinator can fail a
# duration-bounded run with "context deadline exceeded" at its end on a
# loaded machine (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 10000x
FUZZ_TARGETS ?= \
	./layer/unicast/enroll:FuzzUnmarshal ./layer/unicast/connmgr:FuzzUnmarshal \
	./layer/unicast/routing:FuzzUnmarshal ./layer/unicast/routing:FuzzLSUHead ./layer/unicast/dir/dht:FuzzDecode ./layer/unicast/dir/flood:FuzzFloodMsg \
	./crypto/identity:FuzzVerifyDocument ./crypto/identity:FuzzVerifyCert ./crypto/identity:FuzzVerifyCRL ./crypto/identity:FuzzParsePKCS8 \
	./crypto/admission:FuzzPolicy ./crypto/kex:FuzzRespond ./crypto/kex:FuzzReply ./crypto/kex:FuzzFinish ./crypto/kex:FuzzResumeHello ./crypto/kex:FuzzResumeReply \
	./crypto/seal:FuzzOpen ./layer/unicast/fa:FuzzUnmarshal ./images/internal/status:FuzzReadRequest ./layer/shim/internal/engine:FuzzDecodeKex ./layer/shim/eth:FuzzDecodeCtl ./layer/shim/udp:FuzzSealedInput \
	./flow/frct:FuzzPCI ./flow/frct:FuzzSACK ./flow/frct:FuzzReceiver \
	./layer/capture:FuzzDecodePage ./images/mgmtflow:FuzzDecodeRequest ./images/mgmtflow:FuzzDecodeResponse ./layer/shim/diode:FuzzShard ./layer/shim/carrier:FuzzOpen ./layer/shim/carrier:FuzzSeenLog ./layer/shim/carrier:FuzzOpenAck \
	./flow/shmring:FuzzHostileRing
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		$(GO) test $(GOTEST_FLAGS) -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

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
