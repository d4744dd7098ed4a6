# Dělen — edge model serving. `make run` serves, `make test` tests.
SHELL := /bin/bash
GO ?= go
ORT_LIB := $(shell ./scripts/setup.sh ort-path)
DATA ?= ./data
GOTESTFLAGS ?=
FUZZTIME ?= 30s

.PHONY: all setup build run test vet fmt bench fuzz clean

all: build

## setup: provision the ONNX Runtime library and Mosquitto (idempotent)
setup:
	@./scripts/setup.sh all

## build: the delen binary in ./bin
build:
	$(GO) build -o bin/delen ./cmd/delen

## run: provision and serve with the embedded broker
run: setup build
	DELEN_ORT_LIB=$(ORT_LIB) ./bin/delen serve --data $(DATA)

## test: everything CI runs
test: setup
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	DELEN_ORT_LIB=$(ORT_LIB) $(GO) test -race -count=1 $(GOTESTFLAGS) ./...

## bench: go test benchmarks of the hot paths
bench: setup
	DELEN_ORT_LIB=$(ORT_LIB) $(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: every fuzz target for FUZZTIME each
fuzz: setup
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; DELEN_ORT_LIB=$(ORT_LIB) $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

clean:
	rm -rf bin
