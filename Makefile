# CCR Lab: `make run` sets up and starts the dashboard; `make test` sets up and runs every test.
# Both are idempotent: the venv, the pinned requirements and the offline model conversion are
# each done once (the converted model lives in $CCR_CACHE_DIR, default ~/.cache/ccr-lab).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ccr-installed

.PHONY: setup models demo run test bench results help

help:
	@echo "make run    set up (venv, pinned deps, offline models, demo world) and start the dashboard"
	@echo "make test   set up and run the whole test suite"
	@echo "make bench  run the benchmarks and rewrite benchmarks/RESULTS.md"
	@echo "make results  train and evaluate every method on both worlds, ship checkpoints, rewrite RESULTS.md"

$(STAMP): requirements.txt constraints.txt pyproject.toml ccr_core/_compat.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -c 'import ccr_core._compat as shim; shim.install()'  # torchvision shim at interpreter start
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/ccr prepare-models

demo: models
	$(BIN)/python -m ccr_core.setup_demo

run: demo
	$(BIN)/python app.py $(ARGS)

test: models
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: models
	$(BIN)/python -m benchmarks

results: demo
	$(BIN)/ccr data build flickr8k-ml
	$(BIN)/python -m ccr_core.experiments --world demo-world flickr8k-ml --ship
