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
KUBE      := $(TOOLS_DIR)/bin/kube-apiserver $(TOOLS_DIR)/bin/etcd $(TOOLS_DIR)/bin/kubectl
CLUSTER   := $(TOOLS_DIR)/bin/kubelet $(TOOLS_DIR)/bin/kube-controller-manager $(TOOLS_DIR)/bin/kube-scheduler
HELM_VERSION := v3.22.0
HELM      := $(TOOLS_DIR)/bin/helm

.PHONY: all build image run test fmt-check vet unit lint clean tools spire kube cluster helm generate generate-check bench bench-micro bench-flood fuzz

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/warden ./cmd/warden

# warden's image as an OCI archive, without a registry, a container engine
# or a shell: the static binary, Debian's iptables (for `warden init`) and
# trust roots, assembled by deploy/image (go-containerregistry). Import it with
# `ctr -n k8s.io images import bin/warden-image.tar`, or
# `skopeo copy oci-archive:bin/warden-image.tar docker-daemon:$(IMAGE_REF)`.
# The Dockerfile in deploy/image builds the same files with Docker.
IMAGE_REF ?= ghcr.io/warden-sidecar/warden:$(VERSION)

image:
	@if [ ! -x /usr/sbin/xtables-nft-multi ] || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends iptables ca-certificates; fi
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/warden-static ./cmd/warden
	$(GO) run ./deploy/image -binary bin/warden-static -out bin/warden-image.tar -version $(VERSION) -ref $(IMAGE_REF) \
	  -created $$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)

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

unit: tools spire kube cluster helm
	WARDEN_OPA_BIN=$(OPA) WARDEN_SPIRE_BIN_DIR=$(SPIRE_BIN) WARDEN_KUBE_BIN_DIR=$(TOOLS_DIR)/bin \
	  $(GO) test -race -count=1 -timeout 20m $(PKGS)

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

# A real kube-apiserver, etcd and kubectl for the TestAPIServer tests of the
# webhook and manifests (about 6 minutes and 3 GB cold; see the script).
kube: $(KUBE)

$(KUBE) &:
	WARDEN_TOOLS_DIR=$(TOOLS_DIR) GO=$(GO) .ci/kube-tools.sh

# A single node for the TestCluster tests (deploy/cluster): containerd, runc
# and the CNI plugins from Debian (apt-get, when missing), and the kubelet,
# kube-controller-manager and kube-scheduler built from the API server's
# release (see .ci/cluster-tools.sh for the times). Also checked when the
# binaries exist: the Debian packages may be missing on a fresh machine.
cluster: $(KUBE)
	WARDEN_TOOLS_DIR=$(TOOLS_DIR) GO=$(GO) .ci/cluster-tools.sh

# Helm, for the chart's test (deploy/helm_test.go renders deploy/helm/warden
# with `helm template` and applies it to the test API server): built from
# the module proxy once (4.2 CPU-minutes; 11.5 minutes wall on a loaded
# 2-core machine, about 3 idle), then reused.
helm: $(HELM)

$(HELM):
	GOBIN=$(TOOLS_DIR)/bin $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# The eBPF object and its Go bindings in bpf/ are generated and committed, so
# that building warden needs no clang. This regenerates them with Debian's
# clang-19 (installed with apt-get when missing, which needs root).
generate:
	@if ! command -v clang-19 >/dev/null || ! command -v llvm-strip-19 >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends clang-19 llvm-19 libbpf-dev; fi
	$(GO) generate ./bpf/...

# CI: the committed eBPF objects are what the C source compiles to.
generate-check: generate
	@git diff --exit-code --stat -- bpf/ || \
	  { echo "bpf/: the committed generated files are stale: run make generate and commit them"; exit 1; }

lint: fmt-check vet

# What warden costs and how it compares (direct, in-process mTLS, warden with
# the fast path off and on, ghostunnel, nginx, HAProxy, Caddy, an OPA
# sidecar, gRPC), on loopback, bounded (about 14 min with the defaults, the
# system call count under strace included); installs the peers it needs
# (Caddy's first build takes minutes more). Report in bench/results/. Options
# as variables: make bench ROUNDS=5 CASES="warden ghostunnel" SYSCALLS=0
# (see bench/run.sh -h).
bench:
	bench/run.sh

# Go benchmarks of the hot path (proxy handler, PEP check, decision cache,
# log batching, body inspection), COUNT times each, in benchstat's format.
bench-micro:
	bench/micro.sh

# A bounded SYN flood at 10x the connection limit from a network namespace:
# warden's CPU time with the XDP limiter against the userspace limiter
# (root; about 20 s).
bench-flood:
	$(GO) test -run '^$$' -bench BPFFlood -benchtime 1x -count $(or $(COUNT),3) ./cmd/warden

# Each fuzz target for FUZZTIME (they run one at a time: go test -fuzz
# takes one target per package).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(FUZZTIME) ./agent/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzFramer$$' -fuzztime $(FUZZTIME) ./agent/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzCheckWebSocket$$' -fuzztime $(FUZZTIME) ./agent/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzGRPCRequest$$' -fuzztime $(FUZZTIME) ./agent/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzQuery$$' -fuzztime $(FUZZTIME) ./bundle
	$(GO) test -run '^$$' -fuzz '^FuzzDecisionLogRoundTrip$$' -fuzztime $(FUZZTIME) ./agent/authz
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./agent/token
	$(GO) test -run '^$$' -fuzz '^FuzzParseJWKS$$' -fuzztime $(FUZZTIME) ./agent/token
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./agent/signature
	$(GO) test -run '^$$' -fuzz '^FuzzCheckJSON$$' -fuzztime $(FUZZTIME) ./agent/inspect
	$(GO) test -run '^$$' -fuzz '^FuzzCheckXML$$' -fuzztime $(FUZZTIME) ./agent/inspect
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME) ./agent/openapi
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./agent/openapi
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./agent/openapi
	$(GO) test -run '^$$' -fuzz '^FuzzInitFromEnv$$' -fuzztime $(FUZZTIME) ./agent/config
	$(GO) test -run '^$$' -fuzz '^FuzzPatch$$' -fuzztime $(FUZZTIME) ./deploy/inject
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/appprobe
	$(GO) test -run '^$$' -fuzz '^FuzzProgram$$' -fuzztime $(FUZZTIME) ./bpf # root: loads the program

clean:
	rm -rf bin
