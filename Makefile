# Every target installs what it needs: a fresh machine needs nothing but python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./data

.PHONY: install install-test run test test-fast lint fmt check bench bench-dashboard demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps re-run pip only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/gateway serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

test: install-test
	scripts/ensure-chromium
	$(BIN)/python -m pytest

test-fast: install-test
	$(BIN)/python -m pytest -m "not browser" -x -q

lint: install-test
	$(BIN)/ruff check gateway tests bench scripts
	$(BIN)/ruff format --check gateway tests bench scripts
	$(BIN)/mypy

fmt: install-test
	$(BIN)/ruff format gateway tests bench scripts
	$(BIN)/ruff check --fix gateway tests bench scripts

check: lint test

# BENCH_ARGS: e.g. --quick, or --reps 5 --mem-rounds 10 (python -m bench --help)
bench: install-test
	scripts/ensure-wrk
	$(BIN)/python -m bench $(BENCH_ARGS)

demo: install-test
	$(BIN)/gateway demo

# A year of synthetic usage (10 backends, 30 models, 20 keys) in ./demo-data, then the dashboard's render times.
bench-dashboard: install-test
	test -f demo-data/gateway.db || $(BIN)/python scripts/make_demo_data.py --data-dir demo-data
	$(BIN)/python scripts/measure_dashboard.py --data-dir demo-data

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
