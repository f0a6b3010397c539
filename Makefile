# ringex: the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is a step those two take, or a benchmark.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck pytest run bench bench-ring bench-records bench-matcher bench-journal clean-shm clean venv

# Create the venv and install the project with its dev extra; redone when pyproject changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shm procs config scripts tests

pytest: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck pytest

# Until the supervisor lands (issue 8) `make run` runs the ring demo: a producer, a relay and a
# consumer process over shared-memory rings, printing throughput, then cleaning up.
run: $(STAMP)
	$(PY) scripts/ring_demo.py

bench: bench-ring bench-records bench-matcher bench-journal

bench-ring: $(STAMP)
	$(PY) -m tests.bench.bench_ring

bench-records: $(STAMP)
	$(PY) -m tests.bench.bench_records

bench-matcher: $(STAMP)
	$(PY) -m tests.bench.bench_matcher

bench-journal: $(STAMP)
	$(PY) -m tests.bench.bench_journal

# Remove shared-memory segments left behind by crashed processes (see `ringex shm --help`).
clean-shm: $(STAMP)
	$(VENV)/bin/ringex shm rm --stale

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
