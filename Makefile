# Millis SIP Bridge: every developer and CI entry point. `make` alone prints this help.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV   := .venv
BIN    := $(abspath $(VENV))/bin
PY     := $(BIN)/python
# sam build looks for `python3.13` on the PATH: the venv's interpreter is that one.
export PATH := $(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0
export SAM_CLI_DISABLE_CHECK_UPDATE := 1

.PHONY: bench call load help install lock demo serve test lint fmt typecheck pytest unit integration sip template build validate clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

install: ## create .venv (Python 3.13) and fetch DynamoDB Local
	@dev/bootstrap.sh

# One resolution for every platform (--universal): the layer's lock serves the arm64 and the x86_64 build alike,
# and --generate-hashes writes the hash of every file of each pinned release (all wheels and the sdist).
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.13 --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

lock: install ## re-resolve the hashed locks from requirements*.in (UPGRADE=1 also moves unpinned transitive dependencies)
	@$(UV_COMPILE) layers/millis_sip/requirements.in -o layers/millis_sip/requirements.txt
	@$(UV_COMPILE) requirements-dev.in -o requirements-dev.txt
	@echo "locks written: layers/millis_sip/requirements.txt requirements-dev.txt (make install applies the dev lock)"

demo: install ## register, look up and bridge a call locally (DynamoDB Local + Millis simulator, no AWS, no Docker; a free port)
	@$(PY) -m dev.demo

serve: install ## like demo, then keep the local API on http://127.0.0.1:3000 for curl (PORT=N moves it; Ctrl-C stops)
	@$(PY) -m dev.demo --serve

call: install ## one carrier's call against `make serve`, signed as it signs (CARRIER=twilio|signalwire|telnyx|vonage|plivo|sip, TO=, FROM=)
	@$(PY) -m dev.call

bench: install ## benchmarks (cold start, warm hot path, failover, footprint) as ratios to floors; writes bench-results/ (BENCH_OUT=docs to publish)
	@$(PY) -m dev.bench --out $(or $(BENCH_OUT),bench-results)

load: install ## load test on loopback: 400 concurrent registrations + lookups, faults midway; nothing lost (REQUESTS=, CONCURRENCY=)
	@$(PY) -m dev.load_test --requests $(or $(REQUESTS),400) --concurrency $(or $(CONCURRENCY),32)

test: install lint typecheck pytest ## everything CI runs: ruff, mypy, unit + integration + template + build tests

lint: ## ruff lint and format check
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

fmt: ## apply ruff fixes and formatting
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

typecheck: ## mypy (strict on functions/ and layers/)
	@$(BIN)/mypy

pytest: ## all pytest suites
	@$(PY) -m pytest

unit: ## unit tests only (no sockets)
	@$(PY) -m pytest tests/unit

sip: install ## the real-SIP test: SIPp calls through Kamailio (examples/kamailio) (apt-get install kamailio kamailio-utils-modules sip-tester)
	@MILLIS_SIP_TESTS=required $(PY) -m pytest tests/sip

integration: ## integration and contract tests (DynamoDB Local + Millis simulator)
	@$(PY) -m pytest tests/integration tests/contract

template: ## template tests (cfn-lint, sam validate --lint, sam build + invoke the artifact)
	@$(PY) -m pytest tests/template

build: install ## sam build (arm64 by default; ARCH=x86_64 for artifacts that import on this machine)
	@$(BIN)/sam build $(if $(ARCH),--parameter-overrides Architecture=$(ARCH))

validate: install ## lint and validate the template the way CI does
	@$(BIN)/cfn-lint template.yaml
	@$(BIN)/sam validate --lint

clean: ## remove build output, caches and bench-results/ (keeps .venv and DynamoDB Local)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis bench-results
	find . -path ./.venv -prune -o -path ./.cache -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
