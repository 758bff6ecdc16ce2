# vectorload — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit venv binaries down bench clean image

$(STAMP): pyproject.toml
	@echo "==> Python environment ($(VENV))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --progress-bar on -q --upgrade pip
	@$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

binaries:
	@echo "==> Local control plane binaries"
	@bash devcluster/build.sh

demo: venv binaries
	@$(BIN)/vectorload demo

down: venv
	@$(BIN)/vectorload cluster down

lint: venv
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: venv
	@echo "==> mypy"
	@$(BIN)/mypy -p vectorload -p vectorload_operator -p vectorload_querynode

test: venv binaries lint typecheck
	@echo "==> pytest"
	@$(BIN)/pytest $(PYTEST_ARGS)

unit: venv
	@$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

# the container image, with buildah from a Debian base made by mmdebstrap (images/build_image.py)
image:
	@$(PYTHON) images/build_image.py

bench: venv binaries
	@$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
