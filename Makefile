# movieapp: `make run` starts Consul and one instance of each service;
# `make test` runs every test under the race detector against a real Consul;
# `make images` builds the container images from binaries built here;
# `make up` / `make down` run them with docker-compose; `make help` lists
# every target.
SHELL := /bin/bash
GO    ?= go
BIN   := bin

CONSUL     := $(BIN)/consul
PROMETHEUS := $(BIN)/prometheus
JAEGER     := $(BIN)/jaeger
SERVICES   := metadata rating movie

.PHONY: all help build test test-postgres bench-store bench bench-smoke pgo fuzz chaos scale lint run up down consul consul-bin prometheus-bin prometheus prometheus-image jaeger-bin jaeger jaeger-image clean

all: build

## help: this list: every target and what it does (`make` alone is `make build`)
# Every "## target: text" comment, with the "## ..." lines right after it
# as continuation lines, in the Makefile's order.
help:
	@awk ' \
	  /^## [a-z][a-z0-9_-]*:/ { n++; name[n] = substr($$2, 1, length($$2) - 1); sub(/^## [^:]*: */, ""); text[n] = $$0; \
	    if (length(name[n]) > w) w = length(name[n]); more = 1; next } \
	  more && /^##/ { sub(/^## */, ""); text[n] = text[n] "\n" $$0; next } \
	  { more = 0 } \
	  END { print "usage: make [TARGET] [VAR=value...]; targets:"; fmt = "  %-" w "s  %s\n"; \
	    for (i = 1; i <= n; i++) { k = split(text[i], line, "\n"); printf fmt, name[i], line[1]; \
	      for (j = 2; j <= k; j++) printf fmt, "", line[j] } }' $(firstword $(MAKEFILE_LIST))

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

## prometheus-bin: build the Prometheus server the observability test uses (once per machine, about 3 minutes)
# Static, so the same binary runs on scratch in docker/prometheus's image.
# Without npm there are no web UI assets: the HTTP API and /metrics work, the
# UI pages do not (the official prom/prometheus image has them).
prometheus-bin: $(PROMETHEUS)
$(PROMETHEUS): tools/prometheus/go.mod tools/prometheus/go.sum
	@mkdir -p $(BIN)
	cd tools/prometheus && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o ../../$(PROMETHEUS) github.com/prometheus/prometheus/cmd/prometheus

## jaeger-bin: build the Jaeger v2 server (v1.76.0 / v2.13.0) the tracing tests and the benchmark use (once per machine, several minutes)
# Static, so the same binary runs on scratch in docker/jaeger's image. As for
# Prometheus, without npm there are no UI assets: the query API works, the UI
# is a placeholder page (the official jaegertracing/jaeger image has it).
# tools/jaeger's go.mod names it with the tool directive, which go build
# resolves like any other package of the module's graph.
jaeger-bin: $(JAEGER)
$(JAEGER): tools/jaeger/go.mod tools/jaeger/go.sum
	@mkdir -p $(BIN)
	cd tools/jaeger && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o ../../$(JAEGER) github.com/jaegertracing/jaeger/cmd/jaeger

## jaeger: Jaeger on 127.0.0.1 with jaeger/config.yaml: OTLP/HTTP on port 4318, the query API on port
## 16686 (`make run` with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 exports to it)
jaeger: $(JAEGER)
	$(JAEGER) --config jaeger/config.yaml

## jaeger-image: the Jaeger image for docker-compose from bin/jaeger; pulls nothing
## (then: JAEGER_IMAGE=movieapp/jaeger docker-compose up)
jaeger-image: docker/jaeger/jaeger
	docker build -t movieapp/jaeger:$(MOVIEAPP_TAG) docker/jaeger

# stage-static BINARY,TARGET: the recipe that copies BINARY (built by make
# TARGET) to $@ for an image on scratch, which can run it only if it is a
# static linux binary: refused, with how to rebuild it, if it is not.
define stage-static
@$(GO) version -m $(1) | grep -q 'CGO_ENABLED=0' && $(GO) version -m $(1) | grep -q 'GOOS=linux' || { \
  echo "$(1) is not a static linux binary and cannot run on scratch: rm $(1) && make $(2)" >&2; exit 1; }
cp -L $(1) $@
endef

# The image runs bin/jaeger itself, which must be a static linux binary.
docker/jaeger/jaeger: $(JAEGER)
	$(call stage-static,$(JAEGER),jaeger-bin)

## prometheus: Prometheus on http://127.0.0.1:9090 scraping every instance registered in the Consul
## on 127.0.0.1:8500 (the one `make run` starts), with prometheus/prometheus.yml
prometheus: $(PROMETHEUS)
	@mkdir -p $(BIN)/prometheus-data
	sed 's/server: consul:8500/server: 127.0.0.1:8500/' prometheus/prometheus.yml > $(BIN)/prometheus.yml
	$(PROMETHEUS) --config.file=$(BIN)/prometheus.yml --storage.tsdb.path=$(BIN)/prometheus-data \
	  --web.listen-address=127.0.0.1:9090

## prometheus-image: the Prometheus image for docker-compose from bin/prometheus; pulls nothing
## (then: PROMETHEUS_IMAGE=movieapp/prometheus docker-compose up)
prometheus-image: docker/prometheus/prometheus
	docker build -t movieapp/prometheus:$(MOVIEAPP_TAG) docker/prometheus

# The image runs bin/prometheus itself, which must be a static linux binary.
docker/prometheus/prometheus: $(PROMETHEUS)
	$(call stage-static,$(PROMETHEUS),prometheus-bin)

## test: every test, under -race, against a real Consul, a real Prometheus, a real Jaeger and the real
## Docker engine (e2e/compose); PostgreSQL tests skip unless TEST_POSTGRES_URL is set (see test-postgres)
test: $(CONSUL) $(PROMETHEUS) $(JAEGER)
	@docker info >/dev/null 2>&1 || echo "WARNING: no Docker engine answers: the docker-compose end-to-end test (e2e/compose) will be SKIPPED (with CI=true it fails)" >&2
	@if [ -z "$$TEST_POSTGRES_URL" ]; then echo "NOTE: PostgreSQL tests will be SKIPPED (TEST_POSTGRES_URL unset); 'make test-postgres' runs them against a throwaway server"; fi
	$(GO) test -race -count=1 ./...

## chaos: the churn harness: the twelve resilience scenarios under load against a real
## Consul and the real binaries (about 7 minutes); e.g. CHAOS_FLAGS="-rate 300 -seed 2"
chaos: $(CONSUL)
	$(GO) run ./cmd/chaos $(CHAOS_FLAGS)

## scale: what discovery costs a 3-server Consul cluster as watchers, instances and churn grow, for
## default, stale and streaming reads (about 15 minutes; docs/scale.md); e.g. SCALE_FLAGS='-agents 20 -watchers 20'
scale: $(CONSUL)
	$(GO) run ./cmd/consulscale $(SCALE_FLAGS)

## test-postgres: `make test` with a throwaway PostgreSQL server on loopback (PostgreSQL must be installed)
test-postgres: $(CONSUL)
	scripts/with-postgres.sh $(MAKE) test

## bench-store: read and write throughput of the memory, SQLite and PostgreSQL stores
bench-store:
	scripts/with-postgres.sh $(GO) test -run '^$$' -bench Repository -benchtime 3s ./rating/sqlstore/

# Fuzz targets as package:Target. `go test -fuzz` runs one target at a time.
FUZZTIME     ?= 20s
FUZZ_TARGETS := ./metadata/httpapi:FuzzGet ./metadata/httpapi:FuzzPut ./rating/httpapi:FuzzGet ./rating/httpapi:FuzzPut \
                ./movie/httpapi:FuzzGet ./pkg/web:FuzzDecodeMetadata ./pkg/web:FuzzDecodeRating

## fuzz: run each fuzz target for FUZZTIME (default 20s); a failing input is saved under the package's testdata/fuzz
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_TARGETS)

## bench: movie against the fan-out floor and the per-request lookup, and movie tracing 1% and 100% against
##        movie with tracing off, one table (about 5 minutes; docs/benchmarks.md)
##        BENCH_FLAGS adds flags, e.g. BENCH_FLAGS='-profile /tmp/prof' (bin/bench -h lists them)
##        BENCH_FLAGS=-overload measures overload instead, with -max-inflight on and off (about 6 minutes)
bench: $(CONSUL) $(JAEGER)
	$(GO) build -o $(BIN)/bench ./bench/cmd
	$(BIN)/bench $(BENCH_FLAGS)

## bench-smoke: a few seconds of the same harness and of its overload mode, for CI: fails on any failed
## closed-loop request, asserts no speed
bench-smoke: $(CONSUL) $(JAEGER)
	$(GO) build -o $(BIN)/bench ./bench/cmd
	$(BIN)/bench -duration 1s -rounds 1 -warmup 500ms
	$(BIN)/bench -overload -duration 1s -rounds 1 -warmup 500ms


## pgo: write each service's profile for profile-guided optimisation, <service>/cmd/default.pgo, which
##      go build then uses by itself: its CPU profile under the benchmark's closed loop (about 4 minutes).
##      Measure them before committing them: on the machine of docs/benchmarks.md they cost 4 to 6% more CPU.
PGO_DURATION ?= 60s
pgo: $(CONSUL)
	$(GO) build -o $(BIN)/bench ./bench/cmd
	dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	  $(BIN)/bench -profile "$$dir" -tracing=false -duration $(PGO_DURATION) -rounds 1 -warmup 3s -rate -1 >/dev/null && \
	  for s in $(SERVICES); do cp "$$dir/$$s.cpu.pprof" $$s/cmd/default.pgo || exit 1; done && \
	  echo "every go build of the services now uses */cmd/default.pgo; rm them to build without"

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: go vet, gofmt and staticcheck (fetched from the module proxy, pinned)
lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) run $(STATICCHECK) ./...

## consul: start a local Consul dev agent in the foreground (UI on http://127.0.0.1:8500/ui)
consul: $(CONSUL)
	$(CONSUL) agent -dev -client 127.0.0.1 -bind 127.0.0.1

## run: Consul plus one instance of each service in the foreground, the services started once Consul
## has a leader; Ctrl-C stops them all cleanly. Data in $XDG_DATA_HOME/movieapp (~/.local/share/movieapp)
run: $(CONSUL) build
	scripts/run.sh

## up: docker-compose.yml's stack in the background: the official Consul and Prometheus images if they
## can be pulled, else images built here (make images), said in one line; waits until movie is ready.
## UP_FLAGS adds flags, e.g. UP_FLAGS='--scale rating=3'. A failed up removes what it created
# MAKE exported rather than written in the recipe: a recipe naming $(MAKE)
# runs even under `make -n`.
up: export MAKE := $(MAKE)
up:
	MOVIEAPP_TAG='$(MOVIEAPP_TAG)' scripts/stack.sh up $(UP_FLAGS)

## down: stop what `make up` started and remove its containers and network; the volumes (data) stay
down:
	scripts/stack.sh down

## images: the three service images, a Consul, a Prometheus and a Jaeger image, from binaries built on
## this machine; pulls nothing. The first time builds bin/consul, bin/prometheus and bin/jaeger (several
## minutes). Then: make up, or
## CONSUL_IMAGE=movieapp/consul PROMETHEUS_IMAGE=movieapp/prometheus JAEGER_IMAGE=movieapp/jaeger docker-compose up
MOVIEAPP_TAG ?= latest
VERSION      ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
.PHONY: images service-images
images: service-images docker/consul/consul docker/prometheus/prometheus docker/jaeger/jaeger
	docker build -t movieapp/consul:$(MOVIEAPP_TAG) docker/consul
	docker build -t movieapp/prometheus:$(MOVIEAPP_TAG) docker/prometheus
	docker build -t movieapp/jaeger:$(MOVIEAPP_TAG) docker/jaeger

## service-images: only the three service images, from binaries built on this machine; pulls nothing
service-images:
	for s in $(SERVICES); do \
	  CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags='-s -w -X movieexample.com/pkg/ops.Version=$(VERSION)' \
	    -o docker/prebuilt/$$s/service ./$$s/cmd && \
	  docker build --target prebuilt --build-arg SERVICE=$$s --build-arg VERSION=$(VERSION) -t movieapp/$$s:$(MOVIEAPP_TAG) . \
	  || exit 1; \
	done

# The Consul image runs bin/consul itself, which must then be a static linux
# binary (a bin/consul built before consul-bin built it static is not).
docker/consul/consul: $(CONSUL)
	$(call stage-static,$(CONSUL),consul-bin)

## clean: remove bin/ (Consul, Prometheus and Jaeger too: rebuilding them takes minutes) and the staged image binaries
clean:
	rm -rf $(BIN) docker/prometheus/prometheus docker/jaeger/jaeger docker/prebuilt/*/service docker/consul/consul
