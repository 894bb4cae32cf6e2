# Ferry: build, run locally, test, measure.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
# Fuzz time per target for `make fuzz`; CI's `make test` runs the seed corpora only.
FUZZTIME ?= 30s

.PHONY: build run test unit e2e lint bench bench-short fuzz clean image dist

build: ## build bin/ferry-agent and bin/ferry-gateway (static, no cgo)
	$(BUILD) -o bin/ferry-agent ./cmd/ferry-agent
	$(BUILD) -o bin/ferry-gateway ./cmd/ferry-gateway
	$(BUILD) -o bin/demo-target ./internal/cmd/demo-target

image: ## container images ferry-agent, ferry-gateway, ferry-demo-target:$(VERSION) and :latest (FROM scratch, static)
	GO=$(GO) configs/container/build.sh $(VERSION) latest

run: build ## gateway + agent + a demo target and a working connection, until Ctrl-C
	scripts/run-local.sh

test: lint unit e2e ## what CI runs

unit: ## unit tests with the race detector, and each micro-benchmark run once; the smux fork's tests (its own module)
	$(GO) test -race -count=1 -bench . -benchtime 1x -timeout 10m $$($(GO) list ./... | grep -v /test$$)
	cd mux/smux && $(GO) test -count=1 -timeout 5m . && $(GO) test -race -count=1 -timeout 5m -run 'Window|Stalled|Push|Overrun|Shrink|Largest' .

e2e: ## end-to-end tests: real binaries, sockets, TLS, PostgreSQL and Redis
	$(GO) test -count=1 -timeout 12m ./test/

lint: ## go vet and a gofmt check
	$(GO) vet ./...
	cd mux/smux && $(GO) vet .
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# `make bench`: BENCH_DURATION is the length of each timed measurement on
# loopback, BENCH_WAN_DURATION over a delay line (the wan test, and the
# stall test over a line: 10 s, as Ferry's windows take about a second to
# grow at 150 ms); BENCH_TESTS the phases (all: loopback, then the WAN
# profiles BENCH_WAN, then the stalled readers); the whole run takes about
# 20 minutes. BENCH_FLAGS passes more flags to ferry-bench, e.g.
# BENCH_FLAGS='-json bench.json'. See docs/performance.md.
BENCH_DURATION     ?= 2s
BENCH_WAN_DURATION ?= 10s
BENCH_TESTS        ?= throughput,rate,latency,idle,wan,stall
BENCH_WAN          ?= 50ms,50ms@1gbit,150ms,150ms@1gbit
BENCH_FLAGS        ?=
MICROBENCHTIME     ?= 300ms

bench: build ## micro-benchmarks, then ferry-bench: direct vs reference forwarders vs Ferry, on loopback and through delay lines, and beside stalled readers
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(MICROBENCHTIME) ./mux/ ./tunnel/ ./access/
	$(BUILD) -o bin/ferry-bench ./internal/cmd/ferry-bench
	bin/ferry-bench -duration $(BENCH_DURATION) -tests $(BENCH_TESTS) -wan $(BENCH_WAN) -wan-duration $(BENCH_WAN_DURATION) $(BENCH_FLAGS)

bench-short: build ## a quick ferry-bench (about two minutes): short runs, one rep, 1,000 idle connections, one WAN profile, 32 stalled readers on loopback
	$(BUILD) -o bin/ferry-bench ./internal/cmd/ferry-bench
	bin/ferry-bench -duration 500ms -reps 1 -idle-conns 1000 -tests $(BENCH_TESTS) \
		-wan 50ms@1gbit -wan-conns 1 -wan-duration 2s -stall 32 -stall-up 32 -stall-lines loopback -stall-wait 3s $(BENCH_FLAGS)

# `make soak`: churn through a gateway pair and two agent replicas while they
# are restarted one at a time; Linux, root. SOAK_DURATION (default 5m).
SOAK_DURATION ?= 5m
.PHONY: soak

soak: build ## soak: verified connection churn through 2 gateway nodes and 2 agent replicas under rolling restarts
	$(BUILD) -o bin/ferry-soak ./internal/cmd/ferry-soak
	bin/ferry-soak -duration $(SOAK_DURATION) -agent-bin bin/ferry-agent -gateway-bin bin/ferry-gateway

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in ./mux ./access ./config; do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

dist: ## release binaries for every platform in dist/ with SHA256SUMS; signs the .exe files when SIGN_CERT is set (docs/install.md)
	VERSION=$(VERSION) GO=$(GO) scripts/dist.sh dist

clean:
	rm -rf bin dist .run
