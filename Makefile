# Kiln — the two commands are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/kilnai/kiln/internal/app.Version=$(VERSION)
ORT_DIR := third_party/onnxruntime
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
FUZZTIME ?= 30000x
export KILN_ORT_LIB ?= $(CURDIR)/$(ORT_DIR)/libonnxruntime.so.1

.PHONY: all run build test unit fuzz lint ort bench bench-quick bench-pipelines bench-deps clean

all: build

## ort: fetch the ONNX Runtime 1.30 shared library (checksummed, cached)
ort:
	@scripts/fetch-ort.sh $(ORT_DIR)

## build: build bin/kiln
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/kiln ./cmd/kiln

## run: fetch what is needed, build, and serve the demo models
run: ort build
	@scripts/run-banner.sh
	@exec bin/kiln serve --model-repository models --log-format text

## test: every test (unit with -race, conformance, e2e on the built binary) and short fuzz runs
test: ort
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...
	@$(MAKE) --no-print-directory fuzz

## fuzz: run every fuzz target for FUZZTIME (default 30000x inputs each; e.g. FUZZTIME=5m)
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

## lint: gofmt, go vet, staticcheck
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: package micro-benchmarks, then the side-by-side serving run (15-20 min), the registry search benchmark and the
## pipeline benchmark (Kiln vs DuckDB vs pandas); each writes its own section of docs/benchmarks.md
## (a failing micro-benchmark is reported but does not stop the side-by-side run)
bench: ort build bench-deps
	-$(GO) test -run '^$$' -bench . -benchmem ./internal/tensor/ ./internal/httpapi/ ./internal/batching/ ./internal/inference/onnx/
	$(GO) run ./bench/cmd/benchrun --kiln bin/kiln
	$(GO) run ./bench/cmd/registrybench --doc docs/benchmarks.md
	$(GO) run ./bench/cmd/pipebench --kiln bin/kiln

## bench-quick: a short side-by-side run (under 3 min) that writes bench/out/benchmarks.md
bench-quick: ort build bench-deps
	$(GO) run ./bench/cmd/benchrun --quick --kiln bin/kiln
	$(GO) run ./bench/cmd/registrybench --versions 2000 --doc bench/out/benchmarks.md

## bench-pipelines: only the pipeline benchmark (QUICK=1: small sizes, into bench/out/benchmarks.md)
bench-pipelines: ort build bench-deps
	$(GO) run ./bench/cmd/pipebench --kiln bin/kiln $(if $(QUICK),--quick)

## bench-deps: install what the side-by-side runs need (Debian python3 packages, wrk, Node.js)
bench-deps:
	@scripts/bench/setup.sh

clean:
	rm -rf bin
