# Ferry: build, run locally, test, measure.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
# Fuzz time per target for `make fuzz`; CI's `make test` runs the seed corpora only.
FUZZTIME ?= 30s

.PHONY: build run test unit e2e lint bench fuzz clean

build: ## build bin/ferry-agent and bin/ferry-gateway (static, no cgo)
	$(BUILD) -o bin/ferry-agent ./cmd/ferry-agent
	$(BUILD) -o bin/ferry-gateway ./cmd/ferry-gateway
	$(BUILD) -o bin/demo-target ./internal/cmd/demo-target

run: build ## gateway + agent + a demo target and a working connection, until Ctrl-C
	scripts/run-local.sh

test: lint unit e2e ## what CI runs

unit: ## unit tests with the race detector
	$(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v /test$$)

e2e: ## end-to-end tests: real binaries, sockets, TLS, PostgreSQL and Redis
	$(GO) test -count=1 -timeout 12m ./test/

lint: ## go vet and a gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench: ## micro-benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./mux/ ./access/

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in ./mux ./access ./config; do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin dist .run
