# prefect-ombudsman — `make demo` (no server, no credentials) and `make test` on a fresh machine.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := postgresql unixodbc unixodbc-dev odbc-postgresql libsqliteodbc tdsodbc chromium fonts-liberation mariadb-server

.PHONY: setup system-deps demo test test-scale test-fast lint format bench clean

RUNTIME := $(VENV)/.installed-runtime
TESTOPS := tests/plugins/ombudsman_testops

# A production-like install: only the real operations (sql_query) are registered.
$(RUNTIME): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

# Development: the dev extras plus the test-only operations plugin (noop, sleep, fail, flaky).
$(STAMP): pyproject.toml $(TESTOPS)/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q -e $(TESTOPS)
	touch $(STAMP) $(RUNTIME)

setup: $(STAMP)

# PostgreSQL, the ODBC drivers and chromium (browser tests of the Prefect UI) the tests use (installed only when missing; needs root).
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! odbcinst -q -d 2>/dev/null | grep -q SQLite3 \
	   || ! odbcinst -q -d 2>/dev/null | grep -q 'PostgreSQL Unicode' || ! odbcinst -q -d 2>/dev/null | grep -q FreeTDS \
	   || ! test -x /usr/bin/chromium; then \
	  echo "installing $(SYSTEM_PACKAGES)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi
	@sed -i 's/^CommLog=1/CommLog=0/' /etc/odbcinst.ini 2>/dev/null || true

demo: $(RUNTIME)
	$(BIN)/ombudsman demo

test: setup system-deps
	$(BIN)/pytest -q -m "not scale" --durations=25

# The team topology: several workers and hosts, SIGKILL recovery, 20 bulk jobs x 50 operations (~10 min): kept out of `make test`.
test-scale: setup system-deps
	$(BIN)/pytest -q -m scale

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/prefect_ombudsman

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: setup system-deps
	$(BIN)/python benchmarks/runner_overhead.py
	@for b in datagen metadata validation comparison; do \
	  if [ -f benchmarks/$$b.py ]; then $(BIN)/python benchmarks/$$b.py || exit 1; fi; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info $(TESTOPS)/*.egg-info .pytest_cache .ruff_cache .mypy_cache
