# ringex: the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is a step those two take, or a benchmark.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-long lock lint typecheck pytest run ring-demo system-deps bench bench-ring bench-records bench-matcher bench-journal bench-pipeline bench-soak bench-db bench-gateway bench-ws bench-rest bench-failover clean-shm clean venv

# Create the venv and install the project with its dev extra, at the versions constraints.txt
# holds (the ones make test last passed with); redone when either file changes.
$(STAMP): pyproject.toml constraints.txt
	# (made again when it has no pip: what `venv` leaves where ensurepip is missing)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Upgrade every package to its newest release and write those versions to constraints.txt:
# run make test after it, and commit constraints.txt only when that passes.
lock: $(STAMP)
	$(PY) -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v -i '^ringex'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shm procs config scripts tests

# What ringex needs from the system, installed with apt when missing: PostgreSQL's binaries
# (the database writer runs a private cluster under var/) and Debian's chromium (the browser
# page test). Without root or sudo the tests that need them are skipped, saying why.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT  := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
system-deps:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (the database writer's embedded cluster)"; \
	  $(SUDO) apt-get update -qq && $(APT) postgresql >/dev/null; \
	} || echo "could not install postgresql: the database tests will be skipped, and make run's database writer cannot start (set [database] enabled = false in a profile of your own)"
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "installing chromium (the browser page test)"; \
	  $(SUDO) apt-get update -qq && $(APT) chromium >/dev/null; \
	} || echo "could not install chromium: the page test will be skipped"

# The suite mostly waits on the processes and servers it starts (about half a core busy), so
# pytest-xdist runs it in a worker more than there are CPUs, at most four, a test file per
# worker (its module fixtures start once): three on this 2-core machine, 8 min 20 s against
# 12 min for two and twice that for one when measured (the suite has grown since: about
# 20 to 29 minutes with three). PYTEST_WORKERS=0 runs it in one process. It ends with its 25
# slowest tests (--durations), where the time goes.
PYTEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; n = len(os.sched_getaffinity(0)); print(min(n + 1, 4) if n > 1 else 0)')
pytest: $(STAMP) system-deps
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25

test: lint typecheck pytest

# The tests marked long (seeded random crash runs, a minute or so each), left out of make test
# for CI's time: run them after a change to recovery, the supervisor or the gateways' restart.
test-long: $(STAMP) system-deps
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m long

# The exchange with the dev profile, demo users funded; Ctrl-C stops it cleanly.
# MM=1 also runs the demo market maker (scripts/market_maker.py): quotes and trades.
# PROFILE=name-or-file runs another profile (its own instance name and ports, say).
PROFILE ?= dev
run: $(STAMP) system-deps
	$(PY) scripts/run_demo.py --profile $(PROFILE) $(if $(MM),--market-maker)

# Three processes over two rings, printing throughput (the substrate on its own).
ring-demo: $(STAMP)
	$(PY) scripts/ring_demo.py

bench: bench-ring bench-records bench-matcher bench-journal bench-db bench-gateway bench-ws bench-rest bench-pipeline bench-failover

bench-ring: $(STAMP)
	$(PY) -m tests.bench.bench_ring

bench-records: $(STAMP)
	$(PY) -m tests.bench.bench_records

bench-matcher: $(STAMP)
	$(PY) -m tests.bench.bench_matcher

bench-journal: $(STAMP)
	$(PY) -m tests.bench.bench_journal

bench-pipeline: $(STAMP) system-deps
	$(PY) -m tests.bench.bench_pipeline

# bench-pipeline, then a soak at up to 10k orders/s checking every process's RSS stays flat.
# Issue 8's soak is 10 minutes (make bench-soak SOAK=600); 2 minutes here, so not in `bench`.
SOAK ?= 120
bench-soak: $(STAMP) system-deps
	$(PY) -m tests.bench.bench_pipeline --soak $(SOAK)

bench-db: $(STAMP) system-deps
	$(PY) -m tests.bench.bench_db

bench-gateway: $(STAMP)
	$(PY) -m tests.bench.bench_gateway

bench-ws: $(STAMP)
	$(PY) -m tests.bench.bench_ws

bench-rest: $(STAMP)
	$(PY) -m tests.bench.bench_rest

# Replication off / async / sync through the whole primary, then a timed failover.
bench-failover: $(STAMP)
	$(PY) -m tests.bench.bench_failover

# Remove shared-memory segments left behind by crashed processes (see `ringex shm --help`).
clean-shm: $(STAMP)
	$(VENV)/bin/ringex shm rm --stale

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
