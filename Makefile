# ecu-kubelet build, test and benchmark entry points. See README.md.
GO      ?= go
BIN     := bin/ecu-kubelet
PKGS    := ./...
# Packages whose code runs concurrently; the race detector runs on them.
RACE_PKGS := ./uds/... ./sim/... ./flash/... ./provider/...
STATICCHECK ?= $(shell command -v staticcheck || echo $(shell $(GO) env GOPATH)/bin/staticcheck)

.PHONY: build test unit vcan race lint bench fuzz clean controlplane demo image

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/ecu-kubelet

# test is what CI runs: lint, every unit and integration test, the vcan
# tests in a qemu microVM, and the race detector over the concurrent packages.
test: lint unit vcan race

unit: controlplane
	$(GO) test -count=1 -skip '^TestVcan' $(PKGS)
	# Releasing the executable's pages must be safe in a position-independent build too.
	$(GO) test -count=1 -buildmode=pie -run '^TestTrimExecutable' ./cmd/ecu-kubelet

# controlplane builds (once per version, then cached) the etcd, kube-apiserver
# and kubectl that the integration tests run, so that the build does not eat
# a test's timeout: minutes from a cold Go cache, about 2 s when cached.
controlplane:
	@bash .ci/install-controlplane.sh

# vcan runs the TestVcan tests: each package boots Debian's kernel in a qemu
# microVM (sim/vcanvm) and runs them against real vcan and can-isotp. It shows
# their results, and SKIP with what to install where qemu or the kernel
# package is missing (with CI=true a missing part fails instead); the whole
# log is printed on failure. .ci/install-vcanvm.sh installs the parts.
VCANLOG := $(or $(TMPDIR),/tmp)/ecu-kubelet-vcan.log
vcan:
	@$(GO) test -count=1 -run '^TestVcan' -v $(PKGS) > $(VCANLOG) 2>&1; s=$$?; \
	  if [ $$s -ne 0 ]; then cat $(VCANLOG); else grep -E '^(--- |ok )|SKIP' $(VCANLOG); fi; exit $$s

race:
	$(GO) test -count=1 -race -short $(RACE_PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if [ -x "$(STATICCHECK)" ]; then $(STATICCHECK) $(PKGS); \
	  else echo "staticcheck not installed: go install honnef.co/go/tools/cmd/staticcheck@latest"; exit 1; fi

# bench runs every benchmark for about BENCHTIME each (those whose one
# iteration takes longer, like a 1 MiB ISO-TP transfer at 500 kbit/s in real
# time, run once); they report their own figures with b.ReportMetric, and
# docs/benchmarks.md records the results. The packages of CP_BENCH_PKGS
# start a control plane in each iteration (seconds to a minute and a half)
# and run once whatever BENCHTIME says.
BENCHTIME ?= 1s
CP_BENCH_PKGS := github.com/ecu-kubelet/ecu-kubelet/provider github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane
bench: controlplane
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 $(filter-out $(CP_BENCH_PKGS),$(shell $(GO) list $(PKGS)))
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 $(CP_BENCH_PKGS)

# fuzz runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

# demo starts a local control plane, the demo car's simulator and the
# provider, and flashes a firmware pod onto the brake ECU; it runs until
# Ctrl-C. deploy/demo/demo.sh says what it does; README.md what to try.
demo: build
	@bash deploy/demo/demo.sh

# image builds the container image IMAGE offline, with buildah if it is
# installed, else docker: the prebuilt target of deploy/Dockerfile, from a
# static binary built here and the host's CA bundle (Debian's
# ca-certificates). `docker build -f deploy/Dockerfile .` builds the same
# image from source instead. deploy/README.md has the details.
IMAGE     ?= localhost/ecu-kubelet:dev
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
image:
	@mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/image/ecu-kubelet ./cmd/ecu-kubelet
	@test -r $(CA_BUNDLE) || { echo "no CA bundle at $(CA_BUNDLE): apt-get install ca-certificates, or set CA_BUNDLE"; exit 1; }
	cp $(CA_BUNDLE) bin/image/ca-certificates.crt
	@if command -v buildah >/dev/null; then set -x; buildah bud --target prebuilt -f deploy/Dockerfile -t $(IMAGE) .; \
	  elif command -v docker >/dev/null; then set -x; docker build --target prebuilt -f deploy/Dockerfile -t $(IMAGE) .; \
	  else echo "neither buildah nor docker is installed: apt-get install buildah"; exit 1; fi

clean:
	rm -rf bin
