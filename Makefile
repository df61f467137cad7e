# Tandem — see README.md. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BENCH ?= .
SEEDS ?= 500
FUZZTIME ?= 60s
SCHEDULES ?= 10
SEED ?= 1
TRIALS ?= 5
DURATION ?= 5s

# The cores: fast unit tests, no processes, no Temporal.
CORE_PKGS := ./mirror/... ./services/... ./fhir/...

.PHONY: help build check test lint bench bench-peer dev sim fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## build bin/tandem and bin/tandem-temporal (the embedded Temporal server, run as `tandem temporal`)
	$(GO) build -o bin/tandem ./cmd/tandem
	$(GO) build -ldflags='-s -w' -o bin/tandem-temporal ./cmd/tandem-temporal

check: ## unit tests of the cores (under 2 minutes)
	$(GO) test -short -count=1 $(CORE_PKGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: lint build ## everything CI runs (budget: 25 minutes on 2 cores); artifacts (screenshots) in .tandem/test-artifacts
	TANDEM_TEST_ARTIFACTS=$(CURDIR)/.tandem/test-artifacts $(GO) test -count=1 -timeout 20m ./...

bench: ## benchmarks: all, or one with BENCH=name (e.g. BENCH=journal)
	$(GO) test -run '^$$' -bench '(?i)$(BENCH)' -benchtime 1x -timeout 30m ./...

bench-peer: ## Tandem vs PostgreSQL 15 + pg_auto_failover, same run: make bench-peer [TRIALS=5] [DURATION=5s]
	deploy/peer/install.sh
	set -o pipefail; TANDEM_BENCH_PEER=1 TRIALS=$(TRIALS) DURATION=$(DURATION) TANDEM_BENCH_PEER_DIR=$(CURDIR)/.tandem/bench-peer \
		$(GO) test ./services/peerbench -run '^TestBenchPeer$$' -count=1 -v -timeout 0

sim: ## failover simulation: make sim SEEDS=N
	set -o pipefail; $(GO) test ./mirror/failover/sim -run '^TestSim$$' -count=1 -v -timeout 120m -args -seeds=$(SEEDS) | tail -n 20

faults: ## real-process fault schedules with linearizability checks: make faults SCHEDULES=N [SEED=first]
	set -o pipefail; TANDEM_FAULT_SCHEDULES=$(SCHEDULES) TANDEM_FAULT_SEED=$(SEED) TANDEM_FAULT_REPORT_DIR=$(CURDIR)/.tandem/faults \
		$(GO) test ./cmd/tandem -run '^TestFaultSchedules$$' -count=1 -v -timeout 0 | grep -E '^(=== RUN|--- |\s+faults_test|\s+--- |ok|FAIL)'

fuzz: ## run the journal decoder fuzzer for FUZZTIME (default 60s)
	$(GO) test ./mirror/journal -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)

dev: build ## start the whole platform on this machine (TIERS=N for N tiers behind one gateway)
	./bin/tandem dev $(if $(TIERS),--tiers $(TIERS))

clean: ## remove build output (keeps .tandem/ data)
	rm -rf bin
