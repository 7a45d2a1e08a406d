# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck docs bench fuzz soak audit services browser clean

$(STAMP): pyproject.toml
	@$(PYTHON) scripts/check_python.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

PORT ?= 8000
DEMO_DIR := .aupguard/demo

# one store and one hash key for the walkthrough and the served app (both print how to inspect it)
demo: $(STAMP)
	$(VENV)/bin/aupguard demo --dir $(DEMO_DIR)
	$(PY) examples/fastapi_app.py --port $(PORT) --dir $(DEMO_DIR)

services:
	@bash scripts/services.sh

browser:
	@bash scripts/browser.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict src $(wildcard integrations/*/)

# the documentation site (mkdocs-material), strict: a broken link or page fails the build; no network needed
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

test: $(STAMP) services browser lint typecheck docs
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

# a minute of load per tier (SQLite; PostgreSQL + Redis; the gateway at 1,000 req/s offered, one process and two workers), then exact counts of records and strikes
soak: $(STAMP) services
	$(PY) bench/soak.py

# pip-audit over the installed dependencies (needs pypi.org's JSON API)
audit: $(STAMP)
	$(PY) scripts/dependency_audit.py

# 20,000 cases per target (ASGI, Flask, gateway, policy, CLI): 100,000 in all, about half an hour
fuzz: $(STAMP)
	AUPGUARD_FUZZ_EXAMPLES=20000 $(PY) -m pytest -q -s -p no:cacheprovider tests/system/test_fuzz.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .aupguard site
