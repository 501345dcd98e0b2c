# CCR Lab: `make run` sets up and starts the dashboard; `make test` sets up and runs every test.
# Both are idempotent: the venv, the pinned requirements and the offline model conversion are
# each done once (the converted model lives in $CCR_CACHE_DIR, default ~/.cache/ccr-lab).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ccr-installed

.PHONY: setup models demo run prepare test bench results help

help:
	@echo "make run    set up (venv, pinned deps, offline models, demo world) and start the dashboard"
	@echo "make run WORLD=flickr8k-ml [SOURCE=DIR]  build the real-photo world once (from ../shared/data or DIR) and open it"
	@echo "make prepare [WORLD=flickr8k-ml]  build the world if needed and compute every dashboard cache now (progress bars),"
	@echo "             so that make run opens with every tab working (demo: ~10 min, flickr8k-ml: ~17 min on 2 cores, once; benchmarks/RESULTS.md first_open)"
	@echo "make test   set up and run the whole test suite"
	@echo "make bench  run the benchmarks and rewrite benchmarks/RESULTS.md"
	@echo "make results  train and evaluate every method on both worlds, ship checkpoints, rewrite RESULTS.md"

$(STAMP): requirements.txt constraints.txt pyproject.toml ccr_core/_compat.py examples/ccr_sigmoid/pyproject.toml examples/ccr_small_loss/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e examples/ccr_sigmoid  # the example plugin: its tests run in make test
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e examples/ccr_small_loss  # the second example plugin
	$(BIN)/python -c 'import ccr_core._compat as shim; shim.install()'  # torchvision shim at interpreter start
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/ccr prepare-models

demo: models
	$(BIN)/python -m ccr_core.setup_demo

# make run WORLD=flickr8k-ml [SOURCE=folder with flickr8k/, flickr8kcn/, multi30k/; default ../shared/data]
WORLD ?= demo-world
run: $(if $(filter demo-world,$(WORLD)),demo,models)
	$(if $(filter demo-world,$(WORLD)),,test -d "$$($(BIN)/python -c 'from ccr_core.paths import bundle_dir; print(bundle_dir("$(WORLD)"))')" || $(BIN)/ccr data build $(WORLD) $(if $(SOURCE),--source $(SOURCE)))
	$(BIN)/python app.py --world $(WORLD) $(ARGS)

# make prepare [WORLD=...]: what the dashboard would compute in the background after the page is up (the test captions'
# and the training pairs' text states, every model's embeddings), computed now with progress bars, once
prepare: $(if $(filter demo-world,$(WORLD)),demo,models)
	$(if $(filter demo-world,$(WORLD)),,test -d "$$($(BIN)/python -c 'from ccr_core.paths import bundle_dir; print(bundle_dir("$(WORLD)"))')" || $(BIN)/ccr data build $(WORLD) $(if $(SOURCE),--source $(SOURCE)))
	$(BIN)/python -m ccr_core.setup_demo --world $(WORLD) --full

test: demo
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: models
	$(BIN)/python -m benchmarks

results: demo
	$(BIN)/ccr data build flickr8k-ml
	$(BIN)/python -m ccr_core.experiments --world demo-world flickr8k-ml --ship
