"""Prepare the embedded default world once (idempotent): ``python -m ccr_core.setup_demo``.

1. Generate the demo-world bundle into the workspace (deterministic from seed 0) unless a valid one
   is there.
2. Put its EfficientNet-Lite0 feature cache in place: copied from ``assets/features/demo-world``
   when the shipped cache matches this machine's backbone, else extracted (minutes).
3. Load the dashboard's world once: thumbnails and the gallery's per-model embeddings. The test
   captions' text states (~2 minutes on 2 cores: image -> text, Consistency, the maps) and the
   training pairs' (about 10 minutes, for the Uncertainty audit and the Experiment tab) are left to
   the dashboard, which builds them in the background once the page is up and search works;
   ``--full`` builds both here instead.

``--world NAME --full`` does step 3 for another built world (``ccr data build NAME`` first): ``make prepare
WORLD=flickr8k-ml`` runs it, so that ``make run WORLD=flickr8k-ml`` opens with every tab working (the test captions and
training pairs of the real photos take about 17 minutes on 2 cores, with progress bars, once).
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from ccr_core.data.bundle import BundleError, load_bundle, resolve_bundle
from ccr_core.paths import SHIPPED_FEATURES_DIR, bundle_dir, workspace_dir

WORLD = "demo-world"
SHIPPED_FEATURES = SHIPPED_FEATURES_DIR / WORLD


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
    import argparse

    from ccr_core.training.train import TrainConfig, prepare_workbench

    parser = argparse.ArgumentParser(
        prog="python -m ccr_core.setup_demo",
        description="Prepare a world's dashboard caches once (idempotent): the embedded demo world by default (generated "
                    "when missing), or --world NAME, a bundle already built with `ccr data build NAME`.")
    parser.add_argument("--world", default=WORLD, help=f"the world to prepare: a bundle's name in <workspace>/bundles/ or its folder "
                        f"(default {WORLD}; another world must be built first)")
    parser.add_argument("--checkpoints", default=None, help="its shipped models' folder (default checkpoints/<world>)")
    parser.add_argument("--full", action="store_true", help="also compute the test and training captions' text states now (about 10 minutes "
                        "on 2 cores for the demo world, 17 for flickr8k-ml) instead of leaving them to the dashboard's background "
                        "thread: the dashboard then opens with every tab working")
    args = parser.parse_args(argv)
    from ccr_core.dashboard.world import load_world
    from ccr_core.paths import CHECKPOINTS_DIR

    if args.world == WORLD:
        bundle = ensure_bundle()
        seed_shipped_features()
    else:
        try:
            bundle = load_bundle(resolve_bundle(args.world))
        except FileNotFoundError as exc:
            raise SystemExit(f"setup_demo: {exc}") from None
        except BundleError as exc:
            raise SystemExit(f"setup_demo: the world {args.world!r} cannot be loaded ({exc}); build it again: ccr data build {args.world}") from None
    checkpoints = Path(args.checkpoints) if args.checkpoints else CHECKPOINTS_DIR / bundle.name
    if not checkpoints.is_dir():  # no shipped models: the default training configuration's caches
        prepare_workbench(TrainConfig(data=str(bundle.root)), workspace_dir(), bundle)
    else:
        start = time.perf_counter()
        world = load_world(bundle.root, checkpoints, workspace_dir(), progress=True, defer_captions=True)
        if args.full:  # what the app's background passes do, here, with progress bars
            world.finish_caption_caches(progress=True)
            world.finish_training_caches(progress=True)
        left = [what for what, pending in (("test captions", world.pending_captions), ("training pairs", world.pending_training)) if pending]
        print(f"dashboard caches ready ({time.perf_counter() - start:.0f} s)"
              + (f" ({' and '.join(left)}: computed by the dashboard in the background)" if left else ""))
    if args.full:  # otherwise the dashboard's warm-up thread fills numba's cache after the page is up
        from ccr_core.dashboard.projection import warm_umap_cache

        seconds = warm_umap_cache()  # the first live UMAP recompute then takes ~9 s instead of ~20 s (benchmarks/RESULTS.md)
        if seconds is not None:
            print(f"UMAP's compiled functions cached ({seconds:.0f} s, once)")
    print(f"{'demo world' if args.world == WORLD else args.world} ready: {bundle.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
