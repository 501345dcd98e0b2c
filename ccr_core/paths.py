"""Where CCR Lab keeps things outside the repository: the model cache and the default workspace."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
# Image feature caches the repository ships (<world>/<backbone folder>, float16): the dashboard serves its worlds' models
# on them, so a shipped model is scored on them too (study.shipped).
SHIPPED_FEATURES_DIR = ASSETS_DIR / "features"

# The files of a run's record, under one name wherever they are written (``ccr train``, a grid run, a shipped model,
# ``ccr eval``; docs/results.md "Records"). A run folder holds the first three beside ``best/`` and ``last/``.
TRAIN_CONFIG_FILE = "train_config.json"  # the run's TrainConfig, written once when it starts
SUMMARY_FILE = "summary.json"  # what training did: steps, exposures, times, best epoch, the learning curve
RESULT_FILE = "result.json"  # one model's test evaluation and what it was scored at (a run's, a shipped model's)
RESULTS_FILE = "results.json"  # several models' results side by side (``ccr eval``, ``ccr benchmark``)


def cache_dir() -> Path:
    """The cache for converted models and other derived files.

    ``CCR_CACHE_DIR`` wins; otherwise ``$XDG_CACHE_HOME/ccr-lab``; otherwise ``~/.cache/ccr-lab``.
    """
    if os.environ.get("CCR_CACHE_DIR"):
        return Path(os.environ["CCR_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "ccr-lab"


def shared_data_dir() -> Path:
    """The real-data mirror (``../shared/data`` beside the checkout unless ``CCR_SHARED_DATA`` says)."""
    if os.environ.get("CCR_SHARED_DATA"):
        return Path(os.environ["CCR_SHARED_DATA"]).expanduser()
    return REPO_ROOT.parent / "shared" / "data"


def workspace_dir() -> Path:
    """Where built bundles, feature caches, runs and projections go (``CCR_WORKSPACE`` or ``./workspace``)."""
    if os.environ.get("CCR_WORKSPACE"):
        return Path(os.environ["CCR_WORKSPACE"]).expanduser()
    return REPO_ROOT / "workspace"


def bundle_dir(name: str) -> Path:
    """Default folder of a built bundle: ``<workspace>/bundles/<name>``."""
    return workspace_dir() / "bundles" / name
