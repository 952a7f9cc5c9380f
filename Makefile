# The README's commands. Everything a target needs it installs itself (virtualenvs, npm packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config/proxy.toml

.PHONY: run demo simulator test test-quick lint typecheck unit clients bench bench-core \
	bench-memory clean venv compat compat-clients

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

include tests/clients/Makefile.inc
include compat/Makefile.inc

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check proxy tests bench compat

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: $(VENV)/.installed clients
	$(PY) -m pytest

test: lint typecheck unit

# The edit-test loop: everything but the soak (a minute of 500 streams, more than half of
# `make test`) and the real SDKs (their environments and Node.js).
test-quick: lint typecheck
	$(PY) -m pytest -m "not slow and not clients"

bench: $(VENV)/.installed
	$(PY) bench/run.py
	$(PY) bench/churn.py --write bench/RESULTS.md

bench-memory: $(VENV)/.installed
	$(PY) bench/memory.py --streams 500 --slow 200 --write bench/RESULTS.md

bench-core: $(VENV)/.installed
	$(PY) bench/converter.py --repeat 9 --write bench/RESULTS.md
	$(PY) bench/converter.py --repeat 9 --stdlib-json --write bench/RESULTS.md

clean:
	rm -rf $(VENV) .venvs .mypy_cache .ruff_cache .pytest_cache

run: $(VENV)/.installed
	$(PY) -m proxy --config $(CONFIG)

demo: $(VENV)/.installed
	$(PY) -m proxy.demo $(DEMO_ARGS)

simulator: $(VENV)/.installed
	$(PY) -m proxy.simulator --port 8700
