# Corral — run `make help` for the targets.
export GOTOOLCHAIN := local
GO ?= go
BINARIES := bin/worker bin/coordinator bin/donations-plugin bin/sessions-plugin bin/loadgen bin/verify bin/bench bin/callbench bin/failbench

.PHONY: help deps build test fuzz test-short bench bench-tls bench-failover test-faults-long up down demo vet fmt proto clean check-deploy

help: ## list the targets and the local cluster's variables
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "The local cluster (up, demo; scripts/cluster.sh reads the CORRAL_* ones from the environment):"
	@echo "  e.g. make up PLUGINS=\"\$$HOME/inventory/inventory-plugin bin/donations-plugin\" CORRAL_CONSUL_PORT=8600"
	@echo "  PLUGINS             plugin binaries every worker runs, separated by spaces, relative to this"
	@echo "                      folder (bin/donations-plugin); to change them, make down (or"
	@echo "                      scripts/cluster.sh stop-workers) first"
	@echo "  CORRAL_CONSUL_PORT  Consul HTTP API and UI (8500); Consul also takes this - 200, - 199, - 198"
	@echo "  CORRAL_REDIS_PORT   Redis (6390)"
	@echo "  CORRAL_WORKER_PORT  worker i listens on this + i (7100: 7101, 7102, 7103)"
	@echo "  CORRAL_WORKERS      how many workers (3)"
	@echo "  CORRAL_STATE        pid files, logs and Redis data (.corral)"
	@echo "  CORRAL_WORKER_FLAGS more flags for every worker (bin/worker --help)"
	@echo "  up starts nothing while a port it needs is held by anything but this cluster, and names the holder."

deps: ## install redis-server (OS packages) and build the pinned Consul into bin/ if missing
	@scripts/deps.sh

build: ## build the binaries into bin/
	@mkdir -p bin
	$(GO) build -o bin/worker ./cmd/worker
	$(GO) build -o bin/coordinator ./cmd/coordinator
	$(GO) build -o bin/donations-plugin ./examples/donations/plugin
	$(GO) build -o bin/sessions-plugin ./examples/sessions
	$(GO) build -o bin/loadgen ./examples/donations/loadgen
	$(GO) build -o bin/verify ./examples/donations/verify
	$(GO) build -o bin/bench ./examples/donations/bench
	$(GO) build -o bin/callbench ./examples/donations/callbench

test: deps ## run every test against real Redis, Consul and plugin processes, then the fuzz targets briefly
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10000x

FUZZTIME ?= 30s
fuzz: ## run each fuzz target for FUZZTIME (default 30s; Nx for N inputs) from its committed seed corpus
	$(GO) test -run '^$$' -fuzz '^FuzzValidateJob$$' -fuzztime $(FUZZTIME) ./internal/worker
	$(GO) test -run '^$$' -fuzz '^FuzzBuildBatch$$' -fuzztime $(FUZZTIME) ./internal/worker
	$(GO) test -run '^$$' -fuzz '^FuzzShapeCheck$$' -fuzztime $(FUZZTIME) ./internal/worker
	$(GO) test -run '^$$' -fuzz '^FuzzValid$$' -fuzztime $(FUZZTIME) ./internal/jsonscan
	$(GO) test -run '^$$' -fuzz '^FuzzLineParser$$' -fuzztime $(FUZZTIME) ./cmd/coordinator

test-short: ## unit tests only (no servers)
	$(GO) test -count=1 -short ./...

bench: deps build ## burn-down benchmark: pre-load donations, start 3 workers, report jobs/s
	@scripts/bench.sh

bench-tls: deps build ## Call latency with mutual TLS and without, same run (p50/p99, straight and one peer hop)
	@scripts/bench-tls.sh

bench-failover: deps build ## failover time after SIGKILL and SIGTERM of a worker (p50/p99/max over rounds)
	$(GO) build -o bin/failbench ./examples/donations/failbench
	@scripts/bench-failover.sh

test-faults-long: deps ## the fault suite with longer loads and more rounds, then a 5-minute randomized run of every fault (CORRAL_FAULTS_SEED, CORRAL_FAULTS_DURATION)
	CORRAL_FAULTS_LONG=1 $(GO) test -count=1 -timeout 45m -v -run 'TestFault|TestDrain' ./e2e

# PLUGINS on the command line is the scripts' CORRAL_PLUGINS.
up demo: export CORRAL_PLUGINS := $(or $(PLUGINS),$(CORRAL_PLUGINS))

up: deps build ## start a local cluster in the background (Consul, Redis, 3 workers running PLUGINS; see below)
	@scripts/cluster.sh up

down: ## stop the local cluster and delete its state
	@scripts/cluster.sh down

demo: deps build ## up with the donations plugin, submit donations, verify every total, print a report
	@scripts/demo.sh

vet: ## go vet and gofmt check
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

check-deploy: ## check deploy/prometheus/alerts.yml and deploy/grafana/corral.json with Prometheus's own parsers (a module of its own)
	cd deploy/prometheus/rulecheck && $(GO) test -count=1 ./...

proto: ## regenerate the gRPC code (needs protoc, protoc-gen-go, protoc-gen-go-grpc)
	protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative \
		plugins/pluginpb/handler.proto api/workerpb/worker.proto

clean: down ## remove binaries and cluster state
	rm -f $(BINARIES)
