# Privacam: the front door. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Tool versions, pinned.
UV_VERSION := 0.13.8
BUF_VERSION := v1.75.0

export PRIVACAM_CACHE_DIR ?= $(CURDIR)/.cache
export PRIVACAM_RUN_DIR ?= $(CURDIR)/.run
TOOLS := $(PRIVACAM_CACHE_DIR)/tools
UV := $(TOOLS)/uv-$(UV_VERSION)/bin/uv
BUF := $(TOOLS)/buf-$(BUF_VERSION)/buf
PY := $(CURDIR)/.venv/bin/python
PROTOS := $(shell find protos -name '*.proto')

help: ## List the targets
	@grep -hE '^[a-z][a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

up: setup ## Bring up the whole platform locally and run the demo (the README's first command)
	bash stack/up.sh
	bash scripts/services.sh start
	$(PY) scripts/demo.py

down: ## Stop the services and the local stack (data kept; `make clean` removes it)
	bash scripts/services.sh stop || true
	bash stack/down.sh

demo: ## Run the demo again against the running platform (retention's clock back to now)
	bash scripts/services.sh start
	$(PY) scripts/demo.py

test: setup stack-install lint chart hsm stubs ## Lint, check the chart, compile the C++/Go stubs, run every test; starts (and stops) the servers it needs
	$(PY) -m pytest tests --durations=25

unit: setup ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit

integration: setup ## Integration tests against the real local stack
	$(PY) -m pytest tests/integration

lint: setup $(BUF) ## ruff, mypy and buf lint
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	$(BUF) lint

chart: setup promtool ## helm lint/template, schema validation, kube-score, NetworkPolicy flows, promtool rule tests
	bash scripts/check_chart.sh

stack-install: ## Install the local stack's servers if missing (Kafka, MinIO, Redis, coturn, Prometheus)
	bash stack/install.sh

promtool: ## promtool, for the chart's rule tests (Debian's prometheus package, via stack/install.sh)
	@command -v promtool >/dev/null || bash stack/install.sh prometheus

hsm: ## SoftHSM2 for the PKCS#11 tests (Debian package) and a development token in .run/
	@command -v softhsm2-util >/dev/null && [ -d "$(PRIVACAM_RUN_DIR)/softhsm" ] || bash stack/softhsm.sh >/dev/null

format: setup ## Apply ruff's fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

setup: .venv/.synced gen/.stamp ## Install Python dependencies (from uv.lock) and generate stubs

stubs: $(BUF) ## Generate the C++ and Go stubs (buf.gen.yaml) into stubs/ and compile them
	BUF=$(BUF) bash scripts/gen_stubs.sh stubs

protos: ## Regenerate the Python stubs from protos/
	PYTHON=$(PY) bash scripts/gen_protos.sh gen
	touch gen/.stamp

gen/.stamp: $(PROTOS) scripts/gen_protos.sh .venv/.synced
	PYTHON=$(PY) bash scripts/gen_protos.sh gen
	touch $@

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

$(UV):
	python3 -m venv $(TOOLS)/uv-$(UV_VERSION)
	$(TOOLS)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

$(BUF):
	@command -v go >/dev/null || { echo "buf needs Go to install: install Go 1.26.7+ (buf $(BUF_VERSION) needs it) and retry" >&2; exit 1; }
	GOBIN=$(dir $@) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

bench: setup ## Run every benchmark and write its table (ratios to physical baselines) into the README
	$(PY) -m benchmarks --readme

k8s: setup ## One-node Kubernetes on this machine (stack/k8s/, root): build or reuse the pinned binaries and images, start it and its backing servers
	bash stack/k8s/up.sh
	bash stack/k8s/images.sh pause privacam
	bash stack/k8s/backing.sh up

k8s-down: ## Stop the one-node Kubernetes and its backing servers (data in $(PRIVACAM_RUN_DIR)/k8s kept)
	bash stack/k8s/backing.sh down
	bash stack/k8s/down.sh

k8s-test: k8s ## helm install/test/upgrade of the chart on the one-node Kubernetes (tests/k8s/)
	$(PY) -m pytest tests/k8s -p no:cacheprovider

clean: down ## Stop everything and delete local state (keeps the download cache)
	rm -rf $(PRIVACAM_RUN_DIR) gen stubs .venv

.PHONY: help up down demo test unit integration lint chart stack-install promtool hsm format setup protos stubs bench clean
.PHONY: k8s k8s-down k8s-test
