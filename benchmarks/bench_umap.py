"""Embedding-space tab: UMAP live recompute of 5,000 points in a cold process (numba compilation
included), with numba's on-disk cache empty and then warm; PCA of the same points; loading a
cached projection from disk.

The points are real: one shipped model's (baseline's) test image embeddings and one test caption
per language of each image (``projection._points``, the tab's own sampling), 5,000 x 256 float32.
Each UMAP run is a fresh ``python`` subprocess that imports ``ccr_core.dashboard.projection``, then
calls its ``_fit`` (the function the tab calls; it points numba's cache at ``NUMBA_CACHE_DIR``,
default ``<ccr cache>/numba``) twice: the first call pays for importing umap and compiling, the
second is the recompute in an already warm process (what the app does after its warm-up thread).
The cold-cache run gets an empty temporary ``NUMBA_CACHE_DIR``; the warm-cache run the same folder
again, now filled by the first. From 4,096 points ``_fit`` hands umap an exact k-NN graph
(``ccr_core.index.ExactIndex``) instead of letting it compile pynndescent's ``nn_descent``, which
numba cannot cache; importing umap still compiles (or loads from the cache) pynndescent's typed
functions.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Result, best_of

N_POINTS = 5000
UMAP_TARGET_S = 20.0
INSTANT_MS = 100.0  # "instant": below what a user notices
CHILD = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from ccr_core.dashboard.projection import _fit
x = np.load(sys.argv[1])
imported = time.perf_counter()
t = time.perf_counter()
import umap  # what _fit imports first (NUMBA_CACHE_DIR is set by the parent)
umap_s = time.perf_counter() - t
first = _fit(x, "UMAP", 15, 0.1, 0)
first_s = time.perf_counter() - t
t = time.perf_counter()
second = _fit(x, "UMAP", 15, 0.1, 0)
second_s = time.perf_counter() - t
import os
print(json.dumps({"import_s": imported - start, "umap_import_s": umap_s, "first_s": first_s, "second_s": second_s,
                  "same": bool(np.allclose(first, second)), "finite": bool(np.isfinite(first).all()),
                  "cache_dir": os.environ.get("NUMBA_CACHE_DIR", "")}))
"""


def _cache_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc"))


def _child(x_path: Path, cache: Path) -> tuple[dict, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(x_path)], capture_output=True, text=True, env=env, timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"UMAP child failed: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def run() -> list[Result]:
    from benchmarks.bench_query import demo_world
    from ccr_core.dashboard import projection

    world, _ = demo_world()
    model = next((m for m in world.model_list() if m.name == "baseline"), world.model_list()[0])
    per_image = 1 + len(world.languages)
    x, points = projection._points(world, model, world.languages, math.ceil(N_POINTS / per_image), 0)
    x = np.ascontiguousarray(x[:N_POINTS])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-umap-") as scratch:
        x_path = Path(scratch) / "x.npy"
        np.save(x_path, x)
        cache = Path(scratch) / "numba"
        cache.mkdir()
        for label, expect in (("empty numba cache", "cold"), ("warm numba cache", "warm")):
            before = _cache_files(cache)
            out, wall = _child(x_path, cache)
            first = out["first_s"]
            rows.append(Result(f"UMAP {len(x):,} points, cold process, {label}: import umap + compile + fit", round(first, 2), "s",
                               f"<= {UMAP_TARGET_S:g} s", first <= UMAP_TARGET_S,
                               f"{len(x):,} x {x.shape[1]} ({model.name}: images + 1 caption per language), n_neighbors 15, min_dist 0.1, "
                               f"cosine, seed 0; of it importing umap + pynndescent {out['umap_import_s']:.1f} s; process wall {wall:.1f} s incl. "
                               f"interpreter + ccr imports {out['import_s']:.1f} s; "
                               f"numba cache files {before} before, {_cache_files(cache)} after"))
            rows.append(Result(f"UMAP {len(x):,} points, same process again ({expect} cache run): fit only", round(out["second_s"], 2), "s",
                               note="what the tab pays per recompute once its process has compiled umap (the app's warm-up thread "
                                    "compiles only if a default projection is missing from the disk cache; otherwise the first "
                                    "recompute pays the row above); same result as the first fit: " + str(out["same"])))

    pca_s = best_of(lambda: projection._fit(x, "PCA", 15, 0.1, 0), repeats=5)
    rows.append(Result(f"PCA {len(x):,} points", round(pca_s * 1e3, 1), "ms", note="projection._fit (centre + SVD), best of 5"))

    # a cached projection on disk, read into a fresh memo (the tab's path after a restart)
    defaults = {k: v for k, v in projection.DEFAULTS.items() if k != "sample"}
    sample = min(projection.DEFAULTS["sample"], len(world.gallery))
    made = projection.project(world, model.name, world.languages, **defaults, sample=sample)
    loads = []
    for _ in range(5):
        world.memo.pop("projections", None)
        start = time.perf_counter()
        p = projection.project(world, model.name, world.languages, **defaults, sample=sample)
        loads.append(time.perf_counter() - start)
        assert p.source == "disk", p.source
    rows.append(Result(f"cached projection load from disk ({len(p.coords):,} points, default UMAP)", round(min(loads) * 1e3, 2), "ms",
                       f"<= {INSTANT_MS:g} ms", min(loads) * 1e3 <= INSTANT_MS, f"project() with an empty memo: JSON (params, points, stamp) + .npy; best of 5, median "
                       f"{sorted(loads)[2] * 1e3:.1f} ms; first computed here: {made.source == 'computed'}"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row.name}: {row.value} {row.unit}  {row.target} {row.met}  ({row.note})")
