# One command runs the server (`make run`), one passes the tests (`make test`); both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-all lint typecheck unit conformance bench faults faults-ci clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

run: $(STAMP)
	@echo "vibe-jobs: MCP over streamable HTTP at http://$(HOST):$(PORT)/mcp"
	$(BIN)/vibe-jobs serve --transport streamable-http --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

# slow suites too (crash loops, long soak); .ci/run sets RUN_SLOW=1
test-all: export RUN_SLOW=1
test-all: test

conformance: $(STAMP)
	bash scripts/conformance.sh

bench: $(STAMP)
	$(BIN)/python bench/suite.py $(BENCH_ARGS)

# Fault injection (tests/faults): `make faults` is the long run, MINUTES of faults on a PostgreSQL cluster of its
# own, then the SQLite server killed KILLS times; it prints the checker's tables and fails on a violation.
# `make faults-ci` is the bounded profile (a few minutes, fixed seed) that .ci/run runs.
SEED ?= 1
MINUTES ?= 20
KILLS ?= 60
faults: $(STAMP)
	$(BIN)/python -m tests.faults.run --seed $(SEED) --seconds $$(( $(MINUTES) * 60 )) --kills $(KILLS) $(FAULTS_ARGS)

faults-ci: $(STAMP)
	RUN_SLOW=1 $(BIN)/pytest -q -s tests/faults/test_faults.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
