# Dělen — edge model serving. `make run` serves, `make test` tests.
SHELL := /bin/bash
GO ?= go
ORT_LIB := $(shell ./scripts/setup.sh ort-path)
DATA ?= ./data
GOTESTFLAGS ?=
FUZZTIME ?= 30s
# Go minimizes every new interesting input for up to 60 s by default, which
# on the schema decoders' large seeds eats most of a short FUZZTIME.
FUZZMINIMIZETIME ?= 10s
FUZZFLAGS ?=
DURATION ?= 10m
SOAK_BROKER ?= 127.0.0.1:18830
SOAK_HTTP ?= 127.0.0.1:18080
SOAK_WINDOW ?= 30
SOAK_OUT ?= out/soak

.PHONY: all setup build build-arm64 run test vet fmt bench fuzz soak clean

all: build

## setup: provision the ONNX Runtime library, Mosquitto, OpenBLAS and the arm64 cross toolchain (idempotent)
setup:
	@./scripts/setup.sh all

## build: the delen binary in ./bin
build:
	$(GO) build -o bin/delen ./cmd/delen

## build-arm64: bin/delen-arm64 for Jetson and other arm64 boards (cgo with
## Debian's aarch64 cross compiler; glibc 2.36, see deploy/README.md)
build-arm64:
	@./scripts/setup.sh cross
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc $(GO) build -o bin/delen-arm64 ./cmd/delen

## run: provision and serve with the embedded broker
run: build
	@./scripts/setup.sh ort
	DELEN_ORT_LIB=$(ORT_LIB) ./bin/delen serve --data $(DATA)

## test: everything CI runs
test: setup
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	DELEN_ORT_LIB=$(ORT_LIB) $(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) ./...

## bench: go test benchmarks of the hot paths
bench: setup
	DELEN_ORT_LIB=$(ORT_LIB) $(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: every fuzz target of every package (go test -list '^Fuzz'), one at a
## time, for FUZZTIME each (FUZZFLAGS, e.g. -parallel=1, go to go test); a
## crasher is written to <package>/testdata/fuzz/<Target>/ and fails the run
## after the remaining targets have had their turn; prints executions per target
fuzz: setup
	@set -o pipefail; out=$$(mktemp); trap 'rm -f $$out' EXIT; failed=0; summary=""; \
	pkgs=$$($(GO) list ./...) || exit 1; \
	for pkg in $$pkgs; do \
	  list=$$(DELEN_ORT_LIB=$(ORT_LIB) $(GO) test -list '^Fuzz' $$pkg 2>&1) || { echo "$$list"; echo "fuzz: cannot list the fuzz targets of $$pkg"; exit 1; }; \
	  for f in $$(echo "$$list" | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f for $(FUZZTIME)"; \
	    if DELEN_ORT_LIB=$(ORT_LIB) $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $(FUZZFLAGS) $$pkg 2>&1 | tee $$out; \
	    then res=ok; else res=FAILED; failed=1; fi; \
	    execs=$$(grep -o 'execs: [0-9]*' $$out | tail -n 1 | cut -d' ' -f2); \
	    summary="$$summary$$pkg $$f $${execs:-?} $$res"$$'\n'; \
	  done; \
	done; \
	[ -n "$$summary" ] || { echo "fuzz: no fuzz targets found"; exit 1; }; \
	echo; echo "fuzz summary (FUZZTIME=$(FUZZTIME) each):"; \
	printf '%s' "$$summary" | awk '{printf "  %-45s %-20s %12s execs  %s\n", $$1, $$2, $$3, $$4}'; \
	exit $$failed

## soak: `delen serve` (embedded broker on SOAK_BROKER, HTTP on SOAK_HTTP, data
## in a temporary folder) under sim/scenarios/soak.yaml (~70% of mnist-ee's
## capacity here) for DURATION; samples /metrics every 10 s into
## SOAK_OUT/metrics.csv (RSS, split into anonymous memory and mapped files, from
## /proc; goroutines, heap in use, and the GC's heap goal, about twice the live heap), keeps the sim's report in SOAK_OUT/sim, and prints
## RSS, goroutines and p99 latency over the first and the last SOAK_WINDOW
## seconds; takes heap profiles (--pprof) idle and after the load; stops the
## agent with SIGTERM
soak: setup build
	@set -euo pipefail; \
	out=$(SOAK_OUT); rm -rf $$out; mkdir -p $$out; tmp=$$(mktemp -d /tmp/delen-soak.XXXXXX); \
	sed 's/^duration: .*/duration: $(DURATION)/' sim/scenarios/soak.yaml > $$tmp/soak.yaml; \
	grep -q '^duration: $(DURATION)$$' $$tmp/soak.yaml || { echo "soak: cannot set the duration"; exit 1; }; \
	DELEN_ORT_LIB=$(ORT_LIB) ./bin/delen serve --data $$tmp/data --listen $(SOAK_BROKER) --http $(SOAK_HTTP) --pprof > $$out/serve.log 2>&1 & agent=$$!; \
	sampler=; \
	trap '[ -z "$$sampler" ] || kill $$sampler 2>/dev/null || true; kill -TERM $$agent 2>/dev/null || true; wait $$agent 2>/dev/null || true; rm -rf $$tmp' EXIT; \
	for i in $$(seq 120); do curl -sf http://$(SOAK_HTTP)/readyz >/dev/null && break; kill -0 $$agent 2>/dev/null || { cat $$out/serve.log; exit 1; }; sleep 1; done; \
	curl -sf http://$(SOAK_HTTP)/readyz >/dev/null || { echo "soak: the agent is not ready after 120 s"; exit 1; }; \
	sample() { { curl -sf http://$(SOAK_HTTP)/metrics; grep -E '^Rss(Anon|File):' /proc/$$agent/status; } | tee $$out/metrics-last.txt | awk -v t="$$1" \
	  '$$1=="process_resident_memory_bytes"{r=$$2} $$1=="go_goroutines"{g=$$2} $$1=="go_memstats_heap_inuse_bytes"{h=$$2} $$1=="go_memstats_next_gc_bytes"{n=$$2} \
	   $$1=="RssAnon:"{a=$$2*1024} $$1=="RssFile:"{f=$$2*1024} \
	   END{printf "%s,%.1f,%.1f,%.1f,%d,%.1f,%.1f\n", t, r/1048576, a/1048576, f/1048576, g, h/1048576, n/1048576}'; }; \
	echo "t_s,rss_mib,rss_anon_mib,rss_file_mib,goroutines,heap_inuse_mib,gc_goal_mib" > $$out/metrics.csv; sample idle >> $$out/metrics.csv; cp $$out/metrics-last.txt $$out/metrics-idle.txt; \
	curl -sf http://$(SOAK_HTTP)/debug/pprof/heap > $$out/heap-idle.pprof || true; \
	( s=0; while sleep 10; do s=$$((s+10)); sample $$s >> $$out/metrics.csv || true; done ) & sampler=$$!; \
	./bin/delen sim --scenario $$tmp/soak.yaml --broker tcp://$(SOAK_BROKER) --out $$out/sim --quiet; \
	kill $$sampler; wait $$sampler 2>/dev/null || true; sampler=; sample drained >> $$out/metrics.csv; mv $$out/metrics-last.txt $$out/metrics-end.txt; \
	curl -sf http://$(SOAK_HTTP)/debug/pprof/heap > $$out/heap-drained.pprof || true; \
	./bin/delen sim plot-soak $$out/metrics.csv $$out/memory.png || true; \
	kill -TERM $$agent; if wait $$agent; then stopped="stopped cleanly on SIGTERM"; else stopped="exit status $$? on SIGTERM"; fi; \
	csv=$$out/sim/requests.csv; \
	read t0 t1 < <(awk -F, 'NR>1{ if (min=="" || $$3<min) min=$$3; if ($$3>max) max=$$3 } END{printf "%.0f %.0f\n", min, max}' $$csv); \
	w=$$(( $(SOAK_WINDOW) * 1000000 )); \
	p99() { awk -F, -v lo=$$1 -v hi=$$2 -v col=$$3 'NR>1 && ($$6=="ok" || $$6=="late") && $$3>=lo && $$3<hi {print $$col}' $$csv | sort -g | \
	  awk '{a[NR]=$$1} END{ if (NR==0) {print "-"; exit} i=int(NR*0.99); if (i<NR*0.99) i++; printf "%.2f ms (n=%d)", a[i], NR }'; }; \
	row() { awk -F, -v t="$$1" '$$1==t{print}' $$out/metrics.csv; }; \
	first=$$(awk -F, -v w=$(SOAK_WINDOW) 'NR>2 && $$1!="drained" && $$1+0>=w {print $$1; exit}' $$out/metrics.csv); \
	last=$$(awk -F, '$$1!="drained" && NR>2 {l=$$1} END{print l}' $$out/metrics.csv); \
	echo; echo "soak $(DURATION): agent $$stopped"; \
	echo "  memory (rss_mib,rss_anon_mib,rss_file_mib,goroutines,heap_inuse_mib,gc_goal_mib): idle $$(row idle | cut -d, -f2-) | start t=$$first $$(row "$$first" | cut -d, -f2-) | end t=$$last $$(row "$$last" | cut -d, -f2-) | drained $$(row drained | cut -d, -f2-)"; \
	echo "  p99 end-to-end latency: first $(SOAK_WINDOW) s $$(p99 $$t0 $$((t0+w)) 5), last $(SOAK_WINDOW) s $$(p99 $$((t1-w)) $$((t1+1)) 5)"; \
	echo "  p99 agent latency:      first $(SOAK_WINDOW) s $$(p99 $$t0 $$((t0+w)) 14), last $(SOAK_WINDOW) s $$(p99 $$((t1-w)) $$((t1+1)) 14)"; \
	echo "  series in $$out/metrics.csv (plotted in $$out/memory.png), report in $$out/sim, agent log in $$out/serve.log, heap profiles (idle, drained) in $$out/heap-*.pprof (go tool pprof -sample_index=inuse_space bin/delen FILE)"

clean:
	rm -rf bin
