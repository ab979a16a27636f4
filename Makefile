# From a fresh clone: `make run` (the whole stack), `make test`, and
# `make manage ARGS="beat_status"` (any manage.py command against the running stack).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
DEVSTACK_DIR ?= .devstack

.PHONY: run manage test quick durations lint bench-cleanup bench-scheduler soak clean

# The stamp's name is the requirements' checksum: a change renames it, so no
# timestamp prerequisites (a fresh checkout's mtimes would reinstall for nothing).
$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(PY) -m devstack.run

# Reads .devstack/env (written by `make run`); refuses when no stack is running.
manage: $(STAMP)
	@$(PY) -m devstack.manage $(ARGS)

# .env for `heroku local` from the running `make run` (docs/local-development.md).
.PHONY: env
env: $(STAMP)
	@$(PY) -m devstack.dotenv

# The suite in parallel (pytest-xdist): most process tests wait on I/O rather
# than compute, so 4 workers beat 2 even on 2 cores (docs/benchmarks.md, "Test
# suite"). One test at a time to each worker, longest first (tests/durations.json).
# TEST_WORKERS=0 runs it in this process, e.g. for pdb.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1 $(PYTEST_ARGS)

# The developer's loop: the unit and in-process tests, no process started
# (two workers: measured no faster with four, and cheaper in CPU).
quick: $(STAMP)
	$(PY) -m pytest -n 2 --dist load --maxschedchunk 1 -q -m "not processes and not browser" $(PYTEST_ARGS)

# Rewrites tests/durations.json (the order `make test` hands tests out) from a full run.
durations: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1 -q --store-durations $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Benchmarks (run by hand; small defaults here, see docs/benchmarks.md for the full runs).
bench-cleanup: $(STAMP)
	$(PY) bench/cleanup_bench.py --objects $(or $(OBJECTS),2000) --memory-sizes 2000,10000 --repeat 1 $(BENCH_ARGS)

# No options: it measures the production timings (about two minutes).
bench-scheduler: $(STAMP)
	$(PY) bench/scheduler_bench.py $(BENCH_ARGS)

# N worker dynos under random crashes, stops, freezes and Redis restarts for M
# minutes, then the ledger checked (bench/soak.py): make soak SOAK_WORKERS=3 SOAK_MINUTES=5
SOAK_WORKERS ?= 3
SOAK_MINUTES ?= 5
soak: $(STAMP)
	SOAK_WORKERS=$(SOAK_WORKERS) SOAK_MINUTES=$(SOAK_MINUTES) $(PY) bench/soak.py

# Refuses while a `make run` holds .devstack/lock (it would delete a live stack's state).
clean:
	@if [ -e $(DEVSTACK_DIR)/lock ] && ! flock -n $(DEVSTACK_DIR)/lock true; then \
		echo "make clean: a make run is using $(DEVSTACK_DIR)/ (stop it with Ctrl-C first)"; exit 1; fi
	rm -rf $(VENV) staticfiles db.sqlite3 .pytest_cache $(DEVSTACK_DIR)
