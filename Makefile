# Corral — run `make help` for the targets.
export GOTOOLCHAIN := local
GO ?= go
BINARIES := bin/worker bin/coordinator bin/donations-plugin bin/loadgen bin/verify bin/bench bin/callbench

.PHONY: help deps build test test-short bench up down demo vet fmt proto clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install redis-server (OS packages) and build the pinned Consul into bin/ if missing
	@scripts/deps.sh

build: ## build the binaries into bin/
	@mkdir -p bin
	$(GO) build -o bin/worker ./cmd/worker
	$(GO) build -o bin/coordinator ./cmd/coordinator
	$(GO) build -o bin/donations-plugin ./examples/donations/plugin
	$(GO) build -o bin/loadgen ./examples/donations/loadgen
	$(GO) build -o bin/verify ./examples/donations/verify
	$(GO) build -o bin/bench ./examples/donations/bench
	$(GO) build -o bin/callbench ./examples/donations/callbench

test: deps ## run every test against real Redis, Consul and plugin processes
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

test-short: ## unit tests only (no servers)
	$(GO) test -count=1 -short ./...

bench: deps build ## burn-down benchmark: pre-load donations, start 3 workers, report jobs/s
	@scripts/bench.sh

up: deps build ## start a local cluster in the background (Consul, Redis, 3 workers)
	@scripts/cluster.sh up

down: ## stop the local cluster and delete its state
	@scripts/cluster.sh down

demo: deps build ## up, submit donations, verify every total, print a report
	@scripts/demo.sh

vet: ## go vet and gofmt check
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

proto: ## regenerate the gRPC code (needs protoc, protoc-gen-go, protoc-gen-go-grpc)
	protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative \
		plugins/pluginpb/handler.proto api/workerpb/worker.proto

clean: down ## remove binaries and cluster state
	rm -f $(BINARIES)
