# movieapp: `make run` starts Consul and one instance of each service;
# `make test` runs every test under the race detector against a real Consul.
SHELL := /bin/bash
GO    ?= go
BIN   := bin

CONSUL     := $(BIN)/consul
PROMETHEUS := $(BIN)/prometheus
SERVICES   := metadata rating movie

.PHONY: all build test lint run consul consul-bin prometheus-bin bench bench-smoke clean

all: build

## build: build the three service binaries into bin/
build:
	@mkdir -p $(BIN)
	for s in $(SERVICES); do CGO_ENABLED=0 $(GO) build -o $(BIN)/$$s ./$$s/cmd || exit 1; done

## consul-bin: build the Consul agent the tests and `make run` use (once per machine, about 3 minutes)
consul-bin: $(CONSUL)
$(CONSUL): tools/consul/go.mod tools/consul/go.sum
	@mkdir -p $(BIN)
	cd tools/consul && $(GO) build -o ../../$(CONSUL) github.com/hashicorp/consul

## prometheus-bin: build the Prometheus server the observability test uses
prometheus-bin: $(PROMETHEUS)
$(PROMETHEUS): tools/prometheus/go.mod tools/prometheus/go.sum
	@mkdir -p $(BIN)
	cd tools/prometheus && $(GO) build -o ../../$(PROMETHEUS) github.com/prometheus/prometheus/cmd/prometheus

## test: every test, under -race, against a real Consul
test: $(CONSUL)
	$(GO) test -race -count=1 ./...

## bench: movie against the fan-out floor and the per-request lookup, one table (about 3 minutes; docs/benchmarks.md)
##        BENCH_FLAGS adds flags, e.g. BENCH_FLAGS='-profile /tmp/prof' (bin/bench -h lists them)
bench: $(CONSUL)
	$(GO) build -o $(BIN)/bench ./bench/cmd
	$(BIN)/bench $(BENCH_FLAGS)

## bench-smoke: a few seconds of the same harness, for CI: fails on any failed request, asserts no speed
bench-smoke: $(CONSUL)
	$(GO) build -o $(BIN)/bench ./bench/cmd
	$(BIN)/bench -duration 1s -rounds 1 -warmup 500ms

## lint: go vet, gofmt, and staticcheck when it is installed
lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed: go install honnef.co/go/tools/cmd/staticcheck@latest"; fi

## consul: start a local Consul dev agent in the foreground (UI on http://127.0.0.1:8500/ui)
consul: $(CONSUL)
	$(CONSUL) agent -dev -client 127.0.0.1 -bind 127.0.0.1

## run: Consul plus one instance of each service in the foreground; Ctrl-C stops them all cleanly
run: $(CONSUL) build
	scripts/run.sh

clean:
	rm -rf $(BIN)
