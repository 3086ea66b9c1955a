# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv bench clean schemas

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# strict editable: the mapped top-level folders (streams/, sink/...) import as sitewatch.*
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

venv: $(STAMP)
	# strict editable installs link files, not folders: pick up files added since
	$(BIN)/python -m pip install --quiet --no-deps -e . --config-settings editable_mode=strict

demo: venv
	$(BIN)/sitewatch dev

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd /tmp && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p sitewatch

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	for b in bench/p*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

schemas: venv
	$(BIN)/python -m sitewatch.streams.schemas_gen

clean:
	rm -rf $(VENV) build .sitewatch .pytest_cache .mypy_cache .ruff_cache
