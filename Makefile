# modgate — see README.md.
GO        ?= go
BIN       := bin/modgate
PKG       := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/modgate/modgate/internal/version.Version=$(VERSION)

.PHONY: build run test lint bench clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/modgate

run: build
	bash .ci/dev-run

test:
	bash .ci/test

# bench runs the benchmark scenarios (docs/benchmarks.md); BENCHFLAGS passes flags,
# e.g. make bench BENCHFLAGS='-runs 15'.
bench:
	bash .ci/bench

clean:
	rm -rf bin tmp
