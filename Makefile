# Two entry points: `make run` (the main job) and `make test` (lint, types, tests).
# Both create .venv on first use; nothing needs installing by hand beyond Python 3.10+,
# and, unless NEO4J_URI points at your own server, Java 17 and Maven for the test server.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: test lint typecheck pytest chaos neo4j-build run clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "embedlimit needs Python 3.10 or newer, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check embedlimit tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

neo4j-build: $(STAMP)
	@if [ -z "$$NEO4J_URI" ]; then $(BIN)/python tests/neo4j/server.py build; fi

pytest: $(STAMP) neo4j-build
	$(BIN)/python -m pytest

# The long reliability trials (seeded SIGKILLs, faults, restarts), left out of `make test`.
chaos: $(STAMP) neo4j-build
	$(BIN)/python -m pytest -m slow

# make run FILE=../shared/data/debian-packages.jsonl.gz embeds the full file instead of the sample;
# ARGS passes options to examples/debian_backfill.py, such as ARGS=--verify.
run: $(STAMP)
	$(BIN)/python examples/debian_backfill.py $(FILE) $(ARGS)

clean:
	rm -rf $(VENV) tests/neo4j/target .mypy_cache .ruff_cache .pytest_cache
