# Two commands on a fresh machine with Python 3.11+, pip and make:
#   make demo   set everything up and build the demo organisation
#   make test   set everything up and run the whole test suite (lint, types, tests)
VENV ?= .venv
PY := $(VENV)/bin/python
SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# what the demo needs (heatlens itself), then what the tests need on top (the dev extra: test
# tools, the browser driver, PySpark…): `make demo` does not download the second
APP := $(VENV)/.installed-app-$(SUM)
DEV := $(VENV)/.installed-dev-$(SUM)
PYTEST_ARGS ?=

.PHONY: install demo test lint docs bench clean

$(APP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	rm -f $(VENV)/.installed-*
	touch $(APP)

$(DEV): $(APP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV)

install: $(DEV)

demo: $(APP)
	$(VENV)/bin/heatlens demo

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

docs: install
	$(PY) -m heatlens.docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache heatlens-demo.duckdb
