# Everything a fresh machine needs: `make demo` and `make test` build the
# virtualenvs on first use (the bot's in .venv, Synapse's in .venv-synapse).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SYNAPSE_VENV := .venv-synapse
SYNAPSE_VERSION ?= 1.163.2
PIP_FLAGS ?= -q --disable-pip-version-check
# The pinned versions the demo and the tests run on (pyproject.toml has the ranges).
CONSTRAINTS := constraints.txt
# The unit suite also runs on these (`make unit-all`, .ci/run); each gets .venv-X.Y.
OTHER_PYTHONS ?= 3.12 3.13
# The suite's worker processes (pytest-xdist), each with its own Synapse: the e2e tests
# mostly wait on the homeserver, so more workers than the 2 cores pay off.
PYTEST_WORKERS ?= 3
# Element's crypto stack (matrix-js-sdk + Rust crypto) for the interoperability tests.
ELEMENT := devkit/element
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: setup demo test unit unit-all lint bench postgres lock dist clean

setup: $(VENV)/.installed $(SYNAPSE_VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -e '.[dev]'
	$(VENV)/bin/python -m devkit.catalogues compile
	$(VENV)/bin/python -m devkit.layout typecheck-tree
	touch $@

# .venv-3.12, .venv-3.13: the same install on another interpreter, for the unit suite.
.venv-%/.installed: pyproject.toml setup.py $(CONSTRAINTS)
	test -x .venv-$*/bin/python || "$$(.ci/find-python $*)" -m venv .venv-$*
	.venv-$*/bin/pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -e '.[dev]'
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

# `make demo LINKS=1`: two countries' bots on two federating homeservers, a case crossing
# the link between them (docs/links.md).
demo: setup
	LIAISON_SYNAPSE_PYTHON=$(abspath $(SYNAPSE_VENV))/bin/python $(if $(LINKS),$(VENV)/bin/python -m devkit.demo --links,$(VENV)/bin/liaison demo)

test: setup $(ELEMENT)/node_modules/.installed
	@echo "== unit and end-to-end tests on $$($(VENV)/bin/python --version), $(PYTEST_WORKERS) workers =="
	LIAISON_SYNAPSE_PYTHON=$(abspath $(SYNAPSE_VENV))/bin/python $(VENV)/bin/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -n 2 tests/unit $(PYTEST_ARGS)

# The unit suite on each of OTHER_PYTHONS; one that is not installed is skipped, saying so.
unit-all:
	@for version in $(OTHER_PYTHONS); do \
	  if [ -z "$$(.ci/find-python $$version)" ]; then \
	    echo "SKIPPED: the unit tests on Python $$version (no python$$version on PATH or under pyenv)"; \
	    continue; \
	  fi; \
	  $(MAKE) --no-print-directory .venv-$$version/.installed || exit 1; \
	  echo "== unit tests on $$(.venv-$$version/bin/python --version) =="; \
	  .venv-$$version/bin/python -m pytest -q -p no:cacheprovider -n 2 tests/unit $(PYTEST_ARGS) \
	    || exit 1; \
	done

lint: $(VENV)/.installed
	$(VENV)/bin/python -m devkit.layout typecheck-tree
	$(VENV)/bin/ruff check bot commands config handlers storage devkit tests
	$(VENV)/bin/mypy

# A fresh resolution of the ranges in pyproject.toml into constraints.txt.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install $(PIP_FLAGS) '.[dev]'
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-lock/bin/pip freeze --exclude liaison; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock

# The release artefacts in dist/: the sdist, and the wheel built from it.
dist: $(VENV)/.installed
	rm -rf dist
	$(VENV)/bin/python -m build --outdir dist .

# Not part of CI: figures are ratios measured side by side, see README "Benchmarks".
# BENCH_ARGS, e.g. --quick, --only relay,burst, --homeserver postgres, --profile (needs
# py-spy in .venv).
bench: setup $(SYNAPSE_VENV)/.postgres
	LIAISON_SYNAPSE_PYTHON=$(abspath $(SYNAPSE_VENV))/bin/python $(VENV)/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .venv-3.* .demo build dist
