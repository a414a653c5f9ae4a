# mantik — see README.md. Everything runs from a fresh Debian machine: the targets install
# what they need (system packages via scripts/system-deps.sh, Python packages into .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install system-deps job-python lint format test test-fast demo bench services-up services-down \
	slurm-up slurm-down pg-up pg-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "install: $(PYTHON) cannot make a venv; installing python3-venv (apt, needs root or sudo)"; \
		bash scripts/system-deps.sh --venv; }
	@echo "install: creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	@echo "install: installing mantik[server,dev] into $(VENV) (MLflow and the rest: a few minutes the first time)"
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[server,dev]'
	@echo "install: done; the CLI is $(BIN)/mantik"
	touch $@

system-deps:
	bash scripts/system-deps.sh

# Test jobs under other OS accounts run this Python (Debian's, with MLflow and mantik).
job-python:
	bash scripts/job-python.sh

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

pg-up: system-deps
	bash scripts/postgres.sh up
pg-down:
	bash scripts/postgres.sh down
slurm-up: system-deps
	bash scripts/slurm.sh up
slurm-down:
	bash scripts/slurm.sh down

services-up: pg-up slurm-up
services-down: pg-down slurm-down

# The whole suite: lint, then every test against real services (started here).
test: install lint services-up job-python
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slurm and not browser"

demo: install
	$(BIN)/python scripts/demo.py

bench: install services-up
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
