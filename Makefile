# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

## run: the whole platform in the foreground (embedded PostgreSQL/Redis when none configured)
run: $(STAMP)
	$(BIN)/jobctl up

## test: the whole suite against real services (JOBS_TEST_* URLs, or this machine's defaults)
test: $(STAMP)
	$(BIN)/python tests/tools.py
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

## bench: throughput, bulk enqueue and latency against bare Celery; writes bench/results/latest.json
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .data .pytest_cache
