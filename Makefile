# movieapp: `make run` starts Consul and one instance of each service;
# `make test` runs every test under the race detector against a real Consul;
# `make images` builds the container images from binaries built here.
SHELL := /bin/bash
GO    ?= go
BIN   := bin

CONSUL     := $(BIN)/consul
PROMETHEUS := $(BIN)/prometheus
SERVICES   := metadata rating movie

.PHONY: all build test lint run consul consul-bin prometheus-bin clean

all: build

## build: build the three service binaries into bin/
build:
	@mkdir -p $(BIN)
	for s in $(SERVICES); do CGO_ENABLED=0 $(GO) build -o $(BIN)/$$s ./$$s/cmd || exit 1; done

## consul-bin: build the Consul agent the tests and `make run` use (once per machine, about 3 minutes)
# Static, as HashiCorp's releases are: the same binary then runs on scratch in
# the Consul image that `make images` builds.
consul-bin: $(CONSUL)
$(CONSUL): tools/consul/go.mod tools/consul/go.sum
	@mkdir -p $(BIN)
	cd tools/consul && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o ../../$(CONSUL) github.com/hashicorp/consul

## prometheus-bin: build the Prometheus server the observability test uses
prometheus-bin: $(PROMETHEUS)
$(PROMETHEUS): tools/prometheus/go.mod tools/prometheus/go.sum
	@mkdir -p $(BIN)
	cd tools/prometheus && $(GO) build -o ../../$(PROMETHEUS) github.com/prometheus/prometheus/cmd/prometheus

## test: every test, under -race, against a real Consul (and a real Docker engine for e2e/compose)
test: $(CONSUL)
	@docker info >/dev/null 2>&1 || echo "WARNING: no Docker engine answers: the docker-compose end-to-end test (e2e/compose) will be SKIPPED (with CI=true it fails)" >&2
	$(GO) test -race -count=1 ./...

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

## images: the three service images and a Consul image, from binaries built on this machine;
## pulls nothing (then: CONSUL_IMAGE=movieapp/consul docker-compose up)
MOVIEAPP_TAG ?= latest
VERSION      ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
.PHONY: images
images: docker/consul/consul
	for s in $(SERVICES); do \
	  CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags='-s -w -X movieexample.com/pkg/server.Version=$(VERSION)' \
	    -o docker/prebuilt/$$s/service ./$$s/cmd && \
	  docker build --target prebuilt --build-arg SERVICE=$$s --build-arg VERSION=$(VERSION) -t movieapp/$$s:$(MOVIEAPP_TAG) . \
	  || exit 1; \
	done
	docker build -t movieapp/consul:$(MOVIEAPP_TAG) docker/consul

# The Consul image runs bin/consul itself, which must then be a static linux
# binary (a bin/consul built before consul-bin built it static is not).
docker/consul/consul: $(CONSUL)
	@$(GO) version -m $(CONSUL) | grep -q 'CGO_ENABLED=0' && $(GO) version -m $(CONSUL) | grep -q 'GOOS=linux' || { \
	  echo "$(CONSUL) is not a static linux binary and cannot run on scratch: rm $(CONSUL) && make consul-bin" >&2; exit 1; }
	cp -L $(CONSUL) $@

clean:
	rm -rf $(BIN) docker/prebuilt/*/service docker/consul/consul
