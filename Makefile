# warden's build, run and test entry points. Tools the tests need are
# installed into $(TOOLS_DIR), outside the repository, and reused.

GO        ?= go
TOOLS_DIR ?= $(HOME)/.cache/warden/tools
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PKGS      := ./...
OPA_VERSION := v1.22.2
OPA       := $(TOOLS_DIR)/bin/opa
SPIRE_VERSION := v1.13.3
SPIRE_BIN := $(TOOLS_DIR)/bin
SPIRE     := $(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent

.PHONY: all build run test fmt-check vet unit lint clean tools spire bench bench-micro fuzz

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/warden ./cmd/warden

# The quickstart: demo app + warden on the development identity + client
# SVIDs, then it prints the curl commands to try. Ctrl-C stops it.
run: build
	./bin/warden quickstart

test: fmt-check vet unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go') | grep -v '_bpfe[lb]\.go$$' || true); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit: tools spire
	WARDEN_OPA_BIN=$(OPA) WARDEN_SPIRE_BIN_DIR=$(SPIRE_BIN) $(GO) test -race -count=1 -timeout 20m $(PKGS)

# The real OPA CLI, which bundle tests cross-check warden against (bundles
# built and signed by `opa build`). Built once into the cache, then reused.
tools: $(OPA)

$(OPA):
	GOBIN=$(TOOLS_DIR)/bin $(GO) install github.com/open-policy-agent/opa@$(OPA_VERSION)

# A real SPIRE server and agent, which the TestSPIRE end-to-end tests in
# cmd/warden run on loopback. Built from the release's module source (cgo
# for sqlite; about 6 minutes and 4 GB cold on 2 cores), then reused. The
# module cache is read-only, so the binaries go straight to $(SPIRE_BIN).
spire: $(SPIRE)

$(SPIRE_BIN)/spire-%:
	mkdir -p $(SPIRE_BIN)
	cd $(TOOLS_DIR) && $(GO) mod download github.com/spiffe/spire@$(SPIRE_VERSION)
	cd "$$($(GO) env GOMODCACHE)/github.com/spiffe/spire@$(SPIRE_VERSION)" && \
	  GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=1 $(GO) build -o $@ ./cmd/spire-$*

lint: fmt-check vet

# What warden costs and how it compares (direct, in-process mTLS, warden,
# ghostunnel, nginx, HAProxy, an OPA sidecar), on loopback, bounded (about
# 9 min with the defaults); installs the peers it needs. Report in
# bench/results/. Options as variables: make bench ROUNDS=5 CASES="warden ghostunnel"
# (see bench/run.sh -h).
bench:
	bench/run.sh

# Go benchmarks of the hot path (proxy handler, PEP check, decision cache,
# log batching), COUNT times each, in benchstat's format.
bench-micro:
	bench/micro.sh

# Each fuzz target for FUZZTIME (they run one at a time: go test -fuzz
# takes one target per package).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(FUZZTIME) ./agent/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzQuery$$' -fuzztime $(FUZZTIME) ./bundle
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./agent/token
	$(GO) test -run '^$$' -fuzz '^FuzzParseJWKS$$' -fuzztime $(FUZZTIME) ./agent/token

clean:
	rm -rf bin
