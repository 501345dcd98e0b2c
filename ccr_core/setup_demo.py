"""Prepare the embedded default world once (idempotent): ``python -m ccr_core.setup_demo``.

1. Generate the demo-world bundle into the workspace (deterministic from seed 0) unless a valid one
   is there.
2. Put its EfficientNet-Lite0 feature cache in place: copied from ``assets/features/demo-world``
   when the shipped cache matches this machine's backbone, else extracted (minutes).
3. Compute the text-backbone states of its captions (once; about 10 minutes on 2 cores: the
   Uncertainty audit needs the training pairs too).
4. Load the dashboard's world once, so thumbnails, per-model embeddings and evaluation results are
   cached and the dashboard starts quickly.
"""
from __future__ import annotations

import shutil
import sys
import time

from ccr_core.data.bundle import BundleError, load_bundle
from ccr_core.paths import ASSETS_DIR, bundle_dir, workspace_dir

WORLD = "demo-world"
SHIPPED_FEATURES = ASSETS_DIR / "features" / WORLD


def ensure_bundle(progress: bool = True):
    path = bundle_dir(WORLD)
    try:
        return load_bundle(path)
    except BundleError as exc:
        if (path / "manifest.json").exists():
            print(f"rebuilding the demo world: {exc}", file=sys.stderr)
    from ccr_core.data.demo_world.build import build_demo_world

    start = time.perf_counter()
    build_demo_world(path, seed=0, progress=progress)
    print(f"demo world generated in {time.perf_counter() - start:.1f} s at {path}")
    return load_bundle(path)


def seed_shipped_features() -> None:
    """Copy shipped feature caches into the workspace (only folders not already there)."""
    if not SHIPPED_FEATURES.is_dir():
        return
    for folder in SHIPPED_FEATURES.iterdir():
        target = workspace_dir() / "features" / WORLD / folder.name
        if folder.is_dir() and not (target / "meta.json").exists():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(folder, target)


def main(argv: list[str] | None = None) -> int:
    from ccr_core.training.train import TrainConfig, prepare_workbench

    bundle = ensure_bundle()
    seed_shipped_features()
    prepare_workbench(TrainConfig(data=str(bundle.root)), workspace_dir(), bundle)
    from ccr_core.dashboard.world import load_world
    from ccr_core.paths import CHECKPOINTS_DIR

    if (CHECKPOINTS_DIR / WORLD).is_dir():
        start = time.perf_counter()
        load_world(bundle.root, CHECKPOINTS_DIR / WORLD, workspace_dir())
        print(f"dashboard caches ready ({time.perf_counter() - start:.0f} s)")
    from ccr_core.dashboard.projection import warm_umap_cache

    seconds = warm_umap_cache()  # the first live UMAP recompute then takes ~9 s instead of ~20 s (benchmarks/RESULTS.md)
    if seconds is not None:
        print(f"UMAP's compiled functions cached ({seconds:.0f} s, once)")
    print(f"demo world ready: {bundle.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
