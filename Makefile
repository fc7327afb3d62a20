# Everything a fresh machine needs: `make demo` and `make test` build the
# virtualenvs on first use (the bot's in .venv, Synapse's in .venv-synapse).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SYNAPSE_VENV := .venv-synapse
SYNAPSE_VERSION ?= 1.163.2
PIP_FLAGS ?= -q --disable-pip-version-check
# Element's crypto stack (matrix-js-sdk + Rust crypto) for the interoperability tests.
ELEMENT := devkit/element
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: setup demo test unit lint bench postgres clean

setup: $(VENV)/.installed $(SYNAPSE_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[dev]'
	$(VENV)/bin/python -m devkit.catalogues compile
	touch $@

$(SYNAPSE_VENV)/.installed: Makefile
	test -x $(SYNAPSE_VENV)/bin/python || $(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install $(PIP_FLAGS) 'matrix-synapse==$(SYNAPSE_VERSION)'
	touch $@

# The postgres extra (psycopg2, built against libpq-dev) lets the benchmarks run Synapse
# on PostgreSQL as deployments do; the tests and the demo stay on SQLite and never need it.
$(SYNAPSE_VENV)/.postgres: $(SYNAPSE_VENV)/.installed | postgres
	$(SYNAPSE_VENV)/bin/pip install $(PIP_FLAGS) 'matrix-synapse[postgres]==$(SYNAPSE_VERSION)'
	touch $@

# Debian's PostgreSQL server binaries (initdb, pg_ctl) for the benchmarks' throw-away
# cluster, and libpq-dev + a compiler for psycopg2; installed only where missing, so that
# nothing is downloaded while a benchmark runs.
postgres:
	@{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 \
	  && command -v pg_config >/dev/null && command -v cc >/dev/null \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql libpq-dev gcc)

$(ELEMENT)/node_modules/.installed: $(ELEMENT)/package-lock.json
	command -v npm >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q nodejs npm)
	cd $(ELEMENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	LIAISON_SYNAPSE_PYTHON=$(abspath $(SYNAPSE_VENV))/bin/python $(VENV)/bin/liaison demo

test: setup $(ELEMENT)/node_modules/.installed
	LIAISON_SYNAPSE_PYTHON=$(abspath $(SYNAPSE_VENV))/bin/python $(VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q tests/unit $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check bot commands config handlers storage devkit tests
	$(VENV)/bin/mypy

# Not part of CI: figures are ratios measured side by side, see README "Benchmarks".
# BENCH_ARGS, e.g. --quick, --only relay,burst, --homeserver postgres, --profile (needs
# py-spy in .venv).
bench: setup $(SYNAPSE_VENV)/.postgres
	LIAISON_SYNAPSE_PYTHON=$(abspath $(SYNAPSE_VENV))/bin/python $(VENV)/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .demo
