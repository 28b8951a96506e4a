# One command runs the server (`make run`), one passes the tests (`make test`); both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-all test-compat lint typecheck unit conformance bench bench-hang-demo bench-publish faults faults-ci fuzz fuzz-ci model clean

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

# Three pytest processes (pytest-xdist): most tests wait on a server subprocess, so on this kind of 2-core machine a
# third keeps both cores busy (2026-12-07, a fresh clone's .ci/run: make test 1,028 s with three against 1,381 s
# with two the day before, the whole run 23 min against 32). TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 3
unit: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

# unit runs tests/test_architecture.py too: the import contract of docs/architecture.md
test: lint typecheck unit

# slow suites too (crash loops, long soak); .ci/run sets RUN_SLOW=1
test-all: export RUN_SLOW=1
test-all: test

# The tests on a newer Python than .venv's (pyproject says >=3.11; .venv is whatever python3 is, 3.11 here), in a
# venv of its own (.venv-py3.13), warnings as errors as always: the core, stores, server and tools tests and the
# top-level ones but the slowest (PostgreSQL's own, the model, bounded results, the bench scripts; tests/cli and
# most of tests/e2e are left to `make test`), and tests/e2e/test_jobs_e2e.py, which drives the real `vibe-jobs
# serve` over stdio, streamable HTTP and SSE in both protocol eras. About three minutes on two workers, plus the
# venv's first install. Skipped, saying so, where this machine has no such Python (scripts/find-python.sh: PATH,
# pyenv, uv); COMPAT_PYTHON=/path/to/python3.13 names one, COMPAT_TESTS=... other tests.
COMPAT_VERSION ?= 3.13
COMPAT_PYTHON ?= $(shell scripts/find-python.sh $(COMPAT_VERSION))
COMPAT_VENV := .venv-py$(COMPAT_VERSION)
COMPAT_TESTS ?= $(filter-out tests/cli/ tests/e2e/ tests/faults/ tests/artifacts/ tests/__pycache__/,$(wildcard tests/*/)) \
	tests/test_*.py --ignore=tests/engine/test_model.py --ignore=tests/store/test_postgres.py \
	--ignore=tests/test_bounded_results.py --ignore=tests/test_bench_scripts.py tests/e2e/test_jobs_e2e.py

$(COMPAT_VENV)/.installed: pyproject.toml
	$(COMPAT_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/pip install --quiet -e '.[dev,postgres]'
	touch $@

test-compat:
ifeq ($(strip $(COMPAT_PYTHON)),)
	@echo "test-compat: SKIPPED: no Python $(COMPAT_VERSION) found on this machine (PATH, pyenv, uv);" \
		"COMPAT_PYTHON=/path/to/python$(COMPAT_VERSION) names one"
else
	$(MAKE) --no-print-directory $(COMPAT_VENV)/.installed
	$(COMPAT_VENV)/bin/python -c 'import sys; print("test-compat: Python", sys.version.split()[0])'
	RUN_SLOW=0 $(COMPAT_VENV)/bin/pytest -q -n $(TEST_WORKERS) -p no:cacheprovider $(COMPAT_TESTS) $(PYTEST_ARGS)
endif

conformance: $(STAMP)
	bash scripts/conformance.sh

# every figure against its peers: one table, bench/results/latest.{json,svg}, a line in bench/results/history.jsonl;
# exit 0 all done, 1 a figure failed, 3 a peer timed out (marked in the table), 4 something was left behind
bench: $(STAMP)
	$(BIN)/python bench/suite.py $(BENCH_ARGS)

# the same with one peer made to hang on purpose (HANG=saq-postgres by default): it is killed after its own
# time-out, marked "timed out", the rest of the table is whole, nothing is left behind; make stops with exit 3
bench-hang-demo: $(STAMP)
	VIBE_JOBS_BENCH_HANG=$(or $(HANG),saq-postgres) $(BIN)/python bench/suite.py $(BENCH_ARGS)

# the picture the README shows: the last run's bench/results/latest.svg copied to the tracked bench/latest.svg
bench-publish:
	cp bench/results/latest.svg bench/latest.svg

# Fault injection (tests/faults): `make faults` is the long run, MINUTES of faults on a PostgreSQL cluster of its
# own, then the SQLite server killed KILLS times; it prints the checker's tables and fails on a violation.
# `make faults-ci` is the bounded profile (a few minutes, fixed seed; its two runs side by side, each table printed)
# that .ci/run runs.
SEED ?= 1
MINUTES ?= 20
KILLS ?= 60
faults: $(STAMP)
	$(BIN)/python -m tests.faults.run --seed $(SEED) --seconds $$(( $(MINUTES) * 60 )) --kills $(KILLS) $(FAULTS_ARGS)

faults-ci: $(STAMP)
	RUN_SLOW=1 $(BIN)/pytest -q -n $(TEST_WORKERS) -rP tests/faults/test_faults.py

# Property-based fuzzing of the real server (tests/e2e/test_fuzz.py: every tool's arguments, raw JSON-RPC frames,
# stdio and HTTP). `make test` runs 60 fixed examples per property; `make fuzz` runs EXAMPLES fresh ones;
# `make fuzz-ci` is the bounded profile (about a minute, fixed examples) that .ci/run runs.
EXAMPLES ?= 2000
fuzz: $(STAMP)
	VIBE_JOBS_FUZZ_EXAMPLES=$(EXAMPLES) VIBE_JOBS_FUZZ_RANDOM=1 $(BIN)/pytest -q tests/e2e/test_fuzz.py

fuzz-ci: $(STAMP)
	VIBE_JOBS_FUZZ_EXAMPLES=200 $(BIN)/pytest -q tests/e2e/test_fuzz.py

# The model-based test of the job core (tests/engine/test_model.py) on every store, MODEL_EXAMPLES generated
# histories per store (`make test` runs a fast profile; .ci/run a bounded one). A failure prints its steps.
MODEL_EXAMPLES ?= 2000
model: $(STAMP)
	VIBE_JOBS_MODEL_EXAMPLES=$(MODEL_EXAMPLES) $(BIN)/pytest -q tests/engine/test_model.py --hypothesis-show-statistics

clean:
	rm -rf $(VENV) .venv-py3.* .mypy_cache .ruff_cache .pytest_cache
