# Two commands from a fresh clone: `make run` (the whole stack) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: run test lint bench-cleanup bench-scheduler soak clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(PY) -m devstack.run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# N worker dynos under random crashes, stops, freezes and Redis restarts for M
# minutes, then the ledger checked (bench/soak.py): make soak SOAK_WORKERS=3 SOAK_MINUTES=5
SOAK_WORKERS ?= 3
SOAK_MINUTES ?= 5
soak: $(STAMP)
	SOAK_WORKERS=$(SOAK_WORKERS) SOAK_MINUTES=$(SOAK_MINUTES) $(PY) bench/soak.py

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 .pytest_cache
