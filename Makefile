# modgate — see README.md.
GO        ?= go
BIN       := bin/modgate
PKG       := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/modgate/modgate/internal/version.Version=$(VERSION)

.PHONY: build run test lint bench clean fuzz vulncheck release

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/modgate

run: build
	bash .ci/dev-run

test:
	bash .ci/test

# release cross-compiles modgate for linux, darwin and windows on amd64 and arm64
# into dist/, with SHA-256 sums and a CycloneDX SBOM (docs/operations.md).
release:
	VERSION=$(VERSION) bash .ci/release

# bench runs the benchmark scenarios (docs/benchmarks.md); BENCHFLAGS passes flags,
# e.g. make bench BENCHFLAGS='-runs 15'.
bench:
	bash .ci/bench

# fuzz runs every fuzz target for FUZZTIME (default 10s); make test does too.
fuzz:
	bash .ci/fuzz

# vulncheck reports known vulnerabilities in the code paths modgate uses. It needs
# network access to vuln.go.dev (or VULNDB=file:///path/to/a/mirrored/vulndb).
GOVULNCHECK ?= golang.org/x/vuln/cmd/govulncheck@v1.1.4
VULNDB      ?= https://vuln.go.dev
vulncheck:
	$(GO) run $(GOVULNCHECK) -db $(VULNDB) ./...

clean:
	rm -rf bin tmp dist
