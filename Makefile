# Loom on Dagster: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LOOM_HOME ?= $(CURDIR)/.loom
export DAGSTER_HOME ?= $(LOOM_HOME)/dagster

.PHONY: wheel clickhouse-http demo test lint typecheck ui bench bench-quick bench-overhead bench-billion bench-official-venv clean setup instance bytecode

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml examples/sample_platform/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e examples/sample_platform
	touch $(STAMP)

setup: $(STAMP)

# the library's wheel (loom_assets + loom_resources) for your own project: dist/loom_dagster-*.whl
wheel: $(STAMP)
	$(BIN)/python -m pip wheel -q --no-deps -w dist .
	rm -rf build

# Byte-compile our packages: pip compiles what it installs, but an editable install leaves ours to
# be compiled on first import, and where PYTHONDONTWRITEBYTECODE is set (this machine) on every
# start of every process (~0.1 s of each code-location load). Stale files are recompiled by Python.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q loom_resources loom_assets examples/sample_platform/src bench >/dev/null

# the Dagster instance every entry point shares: $(DAGSTER_HOME) with its dagster.yaml (pool limits)
instance: bytecode
	@$(BIN)/python -m loom_assets.settings

demo: instance
	$(BIN)/python -m sample_platform.demo

# A ClickHouse HTTP endpoint over one embedded engine (loom_resources/testing/ch_http/; see
# docs/clickhouse-server.md); then: LOOM_CLICKHOUSE_URL=http://default@127.0.0.1:8123/default make demo
CLICKHOUSE_HTTP_PORT ?= 8123
clickhouse-http: bytecode
	$(BIN)/python -m loom_resources.testing.ch_http --path $(LOOM_HOME)/clickhouse-http --host 127.0.0.1 --port $(CLICKHOUSE_HTTP_PORT)

lint: $(STAMP)
	$(BIN)/ruff check loom_resources loom_assets examples tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# three worker processes (pytest-xdist), one test file per worker at a time: each worker has its own
# LOOM_HOME and embedded ClickHouse path; many tests wait on subprocesses and servers, so three
# keep two cores busy; the slowest files start first (tests/conftest.py). bytecode: the tests start
# hundreds of Python processes that import our packages, each would compile them again
test: lint typecheck bytecode
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

# the sample platform in the Dagster UI, served by `dg dev` from its project directory
ui: instance
	cd examples/sample_platform && $(CURDIR)/$(BIN)/dg dev -h 127.0.0.1 -p 3000

# The official Dagster integrations we compare with pin their own Dagster: they live in a venv of
# their own, made here, never in the product's .venv.
OFFICIAL_VENV := .venv-bench-official
OFFICIAL_STAMP := $(OFFICIAL_VENV)/.installed
OFFICIAL_PKGS := 'dagster-deltalake-polars==0.29.27' 'dagster-polars==0.27.12' 'dagster-clickhouse-polars==0.29.27' \
	'clickhouse-connect>=1.12,<2' 'chdb>=4.4,<5' 'polars>=2.1,<3' 'deltalake>=1.6,<2'

$(OFFICIAL_STAMP):
	$(PYTHON) -m venv $(OFFICIAL_VENV)
	$(OFFICIAL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OFFICIAL_VENV)/bin/python -m pip install --quiet $(OFFICIAL_PKGS)
	touch $@

bench-official-venv: $(OFFICIAL_STAMP)

# full benchmark (3 interleaved rounds): writes bench/RESULTS.md, bench/results.png, bench/results/run_all.json
bench: bytecode $(OFFICIAL_STAMP)
	$(BIN)/python -m bench.run_all --official-python $(OFFICIAL_VENV)/bin/python

# 1/10 sizes, one round, no `make demo` case; about 2 minutes once the venvs exist; writes under bench/results/quick/
bench-quick: bytecode $(OFFICIAL_STAMP)
	$(BIN)/python -m bench.run_all --quick --official-python $(OFFICIAL_VENV)/bin/python

# asset-level overhead against the official IO manager and the raw libraries, 200M-row copy included
# (about 15 minutes): writes bench/results/overhead.md and overhead.json
bench-overhead: bytecode $(OFFICIAL_STAMP)
	$(BIN)/python -m bench.overhead --official-python $(OFFICIAL_VENV)/bin/python

# one billion rows ClickHouse -> Delta through one materialization (long; not part of `make bench`)
bench-billion: bytecode
	$(BIN)/python -m bench.billion

clean:
	rm -rf .loom .pytest_cache .mypy_cache .ruff_cache
