# Sigil — one command each: `make up` runs the control plane, `make test` runs every test.
# Every target installs what it needs first (idempotent, quiet when nothing is missing).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

SIGIL_CACHE ?= $(HOME)/.cache/sigil
export SIGIL_CACHE
# Node.js >= 24: the system one if new enough, else Node 24 LTS fetched into the cache.
NODE_BIN := $(shell bash .ci/node.sh)
export PATH := $(NODE_BIN):$(SIGIL_CACHE)/bin:$(PATH)
# Native addons (pkcs11js) must build against the headers of the Node that runs them.
export npm_config_nodedir := $(abspath $(NODE_BIN)/..)
NPM := npm --loglevel=error --no-audit --no-fund

.PHONY: help up test check generate build images try-node lint typecheck boundaries format deps deps-apt deps-apt-node deps-npm deps-go deps-python bench bench-hsm bench-latency bench-fleet bench-fleet-sizes bench-faults bench-injection bench-leases clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

up: deps-apt deps-npm build ## run the control plane on embedded defaults (Ctrl-C stops everything)
	@SIGIL_BANNER=1 exec node dist/apps/control-plane/src/main.js

test: deps check ## install what is missing, run `make check`, then every test (unit, integration, e2e)
	@bash .ci/jest.sh

check: deps-npm lint typecheck boundaries ## lint, type-check, import boundaries, formatting, buf lint, generated-code staleness
	@node_modules/.bin/prettier --check --log-level=warn .
	@bash .ci/check-generated.sh

generate: deps-npm ## regenerate committed code: gRPC types of proto/ (buf + ts-proto), the CLI's REST types (openapi-typescript)
	@rm -rf libs/agent-protocol/src/gen && node_modules/.bin/buf generate
	@node .ci/openapi.mjs

build: deps-npm ## compile apps/ and libs/ to dist/, and sigil-exec (Go, cached) to dist/apps/agent/
	@node .ci/build.mjs

images: deps-apt deps-apt-node deps-npm build ## build the agent and control-plane images from their Dockerfiles (podman, local base) and print their sizes
	@bash .ci/images.sh

try-node: deps-apt deps-apt-node deps-npm deps-go build ## a real Kubernetes node here: both charts installed, a sample app published, a pod printing its secret (Ctrl-C cleans up)
	@bash .ci/images.sh --quiet
	@exec node dist/tests/harness/try-node.js

lint: deps-npm
	@node_modules/.bin/eslint --max-warnings=0 .

typecheck: deps-npm
	@node_modules/.bin/tsc -p tsconfig.json --noEmit
	@node_modules/.bin/tsc -p apps/console/tsconfig.json --noEmit

# Who may import what (TypeORM, pkcs11js, the agent's kube adapter, features' internals, tests'
# entry points, cycles): .dependency-cruiser.cjs, explained in docs/architecture.md.
boundaries: deps-npm
	@node_modules/.bin/depcruise --config .dependency-cruiser.cjs --output-type err apps libs tests bench

format: deps-npm ## rewrite files with Prettier
	@node_modules/.bin/prettier --write --log-level=warn .

deps: deps-apt deps-apt-node deps-npm deps-go deps-python

deps-python: ## schemathesis (OpenAPI fuzzer of the e2e tests), pinned, in a venv in the cache
	@bash .ci/python-tools.sh

deps-apt:
	@bash .ci/apt.sh

deps-apt-node: ## containerd, runc, podman, busybox-static: the real node and the image builds
	@bash .ci/apt.sh real-node

deps-npm: node_modules/.package-lock.json

# `npm install` against the committed lockfile rather than `npm ci`: the registry this project
# installs from lacks some other platforms' optional binaries (e.g. @swc/core-darwin-arm64),
# which npm leaves out of the lockfile and `npm ci` then rejects as "out of sync". The lockfile
# stays authoritative: installing must not change it.
node_modules/.package-lock.json: package.json package-lock.json
	@echo "[npm] installing dependencies from package-lock.json" >&2
	@cp package-lock.json .package-lock.before
	@$(NPM) install --no-save
	@cmp -s package-lock.json .package-lock.before || { mv .package-lock.before package-lock.json; echo "package-lock.json is out of date: run npm install and commit it" >&2; exit 1; }
	@rm -f .package-lock.before
	@touch $@

deps-go: ## kube-apiserver, helm, kubelet, kube-controller-manager, kube-scheduler for the tests, built once into ~/.cache/sigil/bin
	@bash .ci/go-tools.sh

bench-hsm: deps-apt build ## HSM benchmark: Sigil's operations vs the raw pkcs11js rate (BENCH_MS per point)
	@node dist/bench/hsm/hsm-bench.js

bench: bench-hsm bench-latency bench-fleet bench-faults bench-leases ## every benchmark (~35 min); results in bench/results/, numbers in docs/benchmarks.md

bench-fleet: deps-apt build ## fan-out: BENCH_AGENTS (10000) simulated agents, BENCH_REPLICAS (1); enroll, streams, publish/rotate/reconnect/unpublish vs floors
	@node dist/bench/fleet/fleet-bench.js

bench-fleet-sizes: deps-apt build ## bench-fleet at 1,000, 3,000, 10,000 and 10,000 on 2 replicas (~1 h), then the growth table
	@node dist/bench/fleet/fleet-sizes.js

bench-faults: deps-apt build ## faults during a 1,000-cluster publish: SIGKILL, Redis/PostgreSQL restart, agent restarts, HSM session loss
	@node dist/bench/fleet/faults-bench.js

bench-latency: deps build ## rotation latency: REST write → agent → Kubernetes Secret, p50/p99 vs a kube-apiserver floor (BENCH_LATENCY_ITERATIONS)
	@node dist/bench/latency/latency-bench.js

bench-injection: deps build ## injection: pod created → values on disk (init), rotation → sidecar file, p50/p99 vs floors (BENCH_INJECTION_ITERATIONS)
	@node dist/bench/injection/injection-bench.js

bench-leases: deps-apt build ## dynamic secrets: BENCH_LEASE_CLUSTERS (1000) clusters at once: credentials/s, every credential logs in, rotate, revoke vs CREATE ROLE floors
	@node dist/bench/leases/leases-bench.js

clean: ## remove build output (keeps .data and the caches)
	@rm -rf dist
