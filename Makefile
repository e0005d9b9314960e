# Loom on Dagster: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LOOM_HOME ?= $(CURDIR)/.loom
export DAGSTER_HOME ?= $(LOOM_HOME)/dagster

.PHONY: demo test lint typecheck ui bench clean setup instance

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# the Dagster instance every entry point shares: $(DAGSTER_HOME) with its dagster.yaml (pool limits)
instance: $(STAMP)
	@$(BIN)/python -m loom_assets.settings

demo: instance
	$(BIN)/python -m loom_assets.demo

lint: $(STAMP)
	$(BIN)/ruff check loom_resources loom_assets tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

ui: instance
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf .loom .pytest_cache .mypy_cache .ruff_cache
