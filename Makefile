# Thin targets: each does its own set-up on first use. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export AWS_DEFAULT_REGION ?= us-east-1
export UV_PROJECT_ENVIRONMENT ?=

UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
ML := .venv/bin
CDK := .venv-cdk/bin

.PHONY: help setup setup-ml setup-cdk setup-node docker check test test-unit test-infra test-integration \
        lint mutate demo demo-down bench bench-serve bench-model synth deploy-local

help: ## List the targets (`make` alone does the same)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(UV):
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --user uv

# A stamp file per environment, not bin/python: that is a symlink to the interpreter both environments
# share, so touching it would mark the other environment fresh too.
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --group ml --group dev
	@touch $@

.venv-cdk/.synced: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=.venv-cdk $(UV) sync --frozen --no-default-groups --group cdk --group dev
	@touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

setup-ml: .venv/.synced
setup-cdk: .venv-cdk/.synced
setup-node: node_modules/.package-lock.json
setup: setup-ml setup-cdk setup-node ## Create both environments and install the CDK CLI, from the locks

docker: ## Make sure a Docker engine runs (installs and starts one as root on Debian)
	@bash scripts/docker-up.sh

.PHONY: data
data: setup-ml ## Fetch and validate MovieLens ml-100k and ml-1m into data/ (a no-op when present)
	$(ML)/mlops data fetch --dataset ml-100k
	$(ML)/mlops data fetch --dataset ml-1m

test: ## Run every test: unit, infra (CDK), integration (Docker, moto); then each suite's time
	@MAKE="$(MAKE)" scripts/test-suites.sh test-unit test-infra test-integration

test-unit: setup-ml ## Unit tests only (no network, no Docker; about 3 min)
	$(ML)/pytest tests/unit -q

test-infra: setup-cdk setup-node ## CDK tests only: synth assertions, cdk-nag, cfn-lint, checkov
	$(CDK)/pytest tests/infra -q

test-integration: setup docker ## Integration tests only (Docker, moto, the real CLI)
	$(ML)/pytest tests/integration -q

check: ## What CI runs: `make lint`, then `make test`
	$(MAKE) --no-print-directory lint
	@MAKE="$(MAKE)" scripts/test-suites.sh test-unit test-infra test-integration

mutate: setup ## Break each guarded check in a temporary copy (tests/mutations.toml): its tests must fail
	$(ML)/python scripts/mutate.py

lint: setup ## ruff (style, complexity, imports at top) and mypy --strict on both sides
	$(ML)/ruff check .
	$(ML)/ruff format --check .
	$(ML)/mypy dataset images standins mlops features pipelines training inference bench modeldir
	$(CDK)/mypy infra app.py images standins

synth: setup-cdk setup-node ## Synthesize every environment's stacks (cdk-nag checks run too)
	time npx cdk synth --quiet

deploy-local: setup-cdk setup-node ## Start a moto server (left running) and cdk-deploy the dev stacks to it
	$(CDK)/python -m infra.local.deploy --start-server

demo: setup docker ## Run the whole loop locally
	$(ML)/python -m mlops.demo

demo-down: setup-ml ## Stop everything `make demo` started
	$(ML)/python -m mlops.demo --down

bench: setup docker bench-serve bench-model ## Every benchmark, figures side by side with their peers

bench-model: setup-ml ## Model: ml-100k 5-fold RMSE/MAE and HR@10/NDCG@10 beside baselines, ml-1m time and memory
	$(ML)/python -m bench.model

bench-serve: setup-ml docker ## Serving: our server vs mlflow models serve, p50/p99 at fixed rates, in-process floor, image
	@command -v wrk >/dev/null 2>&1 || apt-get install -y wrk >/dev/null || { echo "bench-serve: install wrk (apt-get install -y wrk)" >&2; exit 1; }
	$(ML)/mlops images build --only serving
	$(ML)/python -m bench.serve --stacks
