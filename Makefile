# goshop — every target documents itself: `make help`.
# `make run` and `make test` create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run test test-unit test-integration lint format migrate-status migrate-up bench clean clean-data

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "}; {printf "  %-28s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "goshop needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.py constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install goshop with its dev tools

run: $(STAMP) ## start the shop: embedded Postgres, migrations, every service with auto-reload
	$(BIN)/goshop-dev

test: $(STAMP) ## lint, then every test against a real PostgreSQL, with the coverage gate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no I/O)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## integration and e2e tests (real Postgres, real sockets)
	$(BIN)/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

SERVICES_WITH_SCHEMA := users orders payments

migrate-status: $(STAMP) ## every service's migrations: status (GOSHOP_DATABASE_URL or the default)
	@for s in $(SERVICES_WITH_SCHEMA); do echo "== $$s"; $(BIN)/python -m goshop_$$s.migrate status || exit 1; done

migrate-up: $(STAMP) ## every service's migrations: apply all new ones
	@for s in $(SERVICES_WITH_SCHEMA); do echo "== $$s"; $(BIN)/python -m goshop_$$s.migrate up || exit 1; done

bench: $(STAMP) ## run the benchmarks in bench/ (each prints a ratio against its baseline)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-data: ## forget the data of `make run` (its Postgres, broker log and dev keys under .goshop/)
	rm -rf .goshop

clean: ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage htmlcov *.egg-info
