# vectorload — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-parallel lint typecheck unit venv binaries down bench clean image

# the product (`vectorload`, this directory) and the development tools (`vectorload-dev`,
# devtools/: control plane, process kubelet, demo, test harness, test tools), both editable
$(STAMP): pyproject.toml devtools/pyproject.toml
	@echo "==> Python environment ($(VENV))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --progress-bar on -q --upgrade pip
	@$(BIN)/python -m pip install --progress-bar on -e . -e devtools
	@touch $(STAMP)

venv: $(STAMP)

binaries:
	@echo "==> Local control plane binaries"
	@bash devcluster/build.sh

demo: venv binaries
	@$(BIN)/vectorload-dev demo

down: venv
	@$(BIN)/vectorload-dev cluster down

lint: venv
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: venv
	@echo "==> mypy"
	@$(BIN)/mypy -p vectorload -p vectorload_operator -p vectorload_querynode -p vectorload_proxy -p vectorload_dev

test: venv binaries lint typecheck
	@echo "==> pytest"
	@$(BIN)/pytest $(PYTEST_ARGS)

# two runs of the cluster-using packages (operator, kubelet, e2e) at once: each must pass on its
# own loopback slot (doubles their time, so not part of `make test`)
test-parallel: venv binaries
	@echo "==> two pytest runs side by side"
	@$(BIN)/pytest tests/parallel --parallel-runs $(PYTEST_ARGS)

unit: venv
	@$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

# the container image, with buildah from a Debian base made by mmdebstrap (images/build_image.py)
image:
	@$(PYTHON) images/build_image.py

bench: venv binaries
	@$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
