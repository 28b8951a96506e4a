# One command runs the server (`make run`), one passes the tests (`make test`); both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-all lint typecheck unit conformance bench clean

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

# unit runs tests/test_architecture.py too: the import contract of docs/architecture.md
test: lint typecheck unit

# slow suites too (crash loops, long soak); .ci/run sets RUN_SLOW=1
test-all: export RUN_SLOW=1
test-all: test

conformance: $(STAMP)
	bash scripts/conformance.sh

bench: $(STAMP)
	$(BIN)/python bench/suite.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
