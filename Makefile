# warden's build, run and test entry points. Tools the tests need are
# installed into $(TOOLS_DIR), outside the repository, and reused.

GO        ?= go
TOOLS_DIR ?= $(HOME)/.cache/warden/tools
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PKGS      := ./...
OPA_VERSION := v1.22.2
OPA       := $(TOOLS_DIR)/bin/opa

.PHONY: all build run test fmt-check vet unit lint clean tools

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

unit: tools
	WARDEN_OPA_BIN=$(OPA) $(GO) test -race -count=1 -timeout 20m $(PKGS)

# The real OPA CLI, which bundle tests cross-check warden against (bundles
# built and signed by `opa build`). Built once into the cache, then reused.
tools: $(OPA)

$(OPA):
	GOBIN=$(TOOLS_DIR)/bin $(GO) install github.com/open-policy-agent/opa@$(OPA_VERSION)

lint: fmt-check vet

clean:
	rm -rf bin
