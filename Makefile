# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test and CI install: every package at the version of the lock (refresh: `make lock`)
LOCK := requirements/lock.txt
PIP := $(BIN)/python -m pip --disable-pip-version-check
# pyproject's package configuration builds without warnings; what is left is setuptools'
# note that a strict editable install links into build/ (the install mode we chose)
QUIET_BUILD := PYTHONWARNINGS=ignore::UserWarning:setuptools.command.editable_wheel

.PHONY: demo test lint venv bench clean schemas services lock

# strict editable: the mapped top-level folders (streams/, sink/...) import as sitewatch.*
# Recipes are quiet (@): a newcomer's `make demo` prints what sitewatch says, not make's.
$(STAMP): pyproject.toml $(LOCK)
	@echo "setting up $(VENV): the locked packages, about a minute the first time"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(QUIET_BUILD) $(PIP) install --quiet -c $(LOCK) -e '.[dev]' --config-settings editable_mode=strict
	@touch $(STAMP)

# strict editable installs link files, not folders: pick up files added since
venv: $(STAMP)
	@$(QUIET_BUILD) $(PIP) install --quiet --no-deps -e . --config-settings editable_mode=strict

demo: venv
	@$(BIN)/sitewatch dev

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd /tmp && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p sitewatch

# What the integration tiers need on this machine: MariaDB (installed and started when
# 127.0.0.1:3306 does not answer), the Apache Kafka jars (fetched once from Maven Central),
# kcat (Debian's package; the consuming docs' example runs against Kafka) and Chromium
# (Debian's package: the status pages' browser tests; Playwright never downloads one).
services:
	scripts/ensure-mariadb
	scripts/ensure-debs kcat:kcat chromium:chromium
	$(PYTHON) scripts/apache_kafka.py fetch

test: lint services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv services
	for b in bench/p*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

schemas: venv
	$(BIN)/python -m sitewatch.streams.schemas_gen

# Refresh the lock on purpose (newest releases within pyproject's ranges), then run `make test`.
lock:
	$(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --upgrade --quiet \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu -o $(LOCK)

clean:
	rm -rf $(VENV) build .sitewatch .pytest_cache .mypy_cache .ruff_cache
