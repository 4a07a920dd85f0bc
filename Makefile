# Two commands for a fresh machine with Python 3.11+:  make up  |  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test test-slow lint bench docs clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(VENV)/.installed $@

up: $(VENV)/.installed
	$(BIN)/crm up

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long fault-injection variants (e.g. a 60 s broker outage), not part of `make test`.
test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/reliability -m slow $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/contacts_bench.py
	$(BIN)/python benchmarks/duplicates_bench.py
	$(BIN)/python benchmarks/support_bench.py
	$(BIN)/python benchmarks/sales_bench.py
	$(BIN)/python benchmarks/marketing_bench.py
	$(BIN)/python benchmarks/relay_bench.py
	$(BIN)/python benchmarks/consumer_bench.py
	$(BIN)/python benchmarks/analytics_bench.py
	$(BIN)/python benchmarks/rebuild_bench.py
	$(BIN)/python benchmarks/load.py

# Regenerate docs/schemas, docs/asyncapi.yaml and docs/openapi after changing an event or an API.
docs: $(VENV)/.installed-test
	$(BIN)/crm docs

clean:
	rm -rf $(VENV) .crm-data .pytest_cache
