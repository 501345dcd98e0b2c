"""Maps tab (the embedding space): 2-D UMAP or PCA of a model's test image and caption embeddings (one joint fit,
so images and captions share the map), coloured by language and modality, optionally with lines from
each image to its captions -- or one shared fit of two models' points, so both maps have the same
axes. The maps are linked views: clicking or lasso-selecting points shows the selected instances (their
thumbnails and captions) and highlights them in both maps; hovering a point shows its thumbnail. Each
projection is cached on disk as ``.npy`` (coordinates) + ``.json`` (parameters, points, and the
checkpoint hashes it was computed from) and in memory, so it is computed once per parameter set; a
stamp mismatch means recompute, never reuse."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ccr_core.dashboard.colours import OKABE_ITO, chart_layout, main_models
from ccr_core.dashboard.world import NATIVE_SOURCES, InputError, ModelEntry, World, language_name, safe_name
from ccr_core.io import read_json, write_json_atomic
from ccr_core.methods import BASELINE, methods_with

ALGORITHMS = ("UMAP", "PCA")
DEFAULTS = {"algorithm": "UMAP", "sample": 200, "n_neighbors": 15, "min_dist": 0.1, "seed": 0}
LIMITS = {"sample": (10, 3000), "n_neighbors": (2, 200), "min_dist": (0.0, 1.0)}
UMAP_EXACT_KNN_FROM = 4096  # points; below it umap-learn computes exact distances itself
# Caption colours per language: Okabe-Ito hues (black is kept for the images), one per world language.
LANGUAGE_COLOURS = tuple(OKABE_ITO[c] for c in ("orange", "sky blue", "bluish green", "vermillion", "blue", "reddish purple", "yellow", "grey"))
# Beyond those, Paul Tol's muted palette, then evenly spaced hues: no two languages of a map share a colour.
EXTRA_LANGUAGE_COLOURS = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499")
COLOUR_FIELDS = (("language", "language"), ("modality (image / caption)", "modality"), ("rank (each map's own model)", "rank"),
                 ("correct@k (each map's own model)", "correct"), ("MRV spread σ of the instance", "mrv"), ("noise label", "noise"),
                 ("UML uncertainty of the caption", "uncertainty"))
RING = dict(width=1.5, color="rgba(40,40,40,0.55)")  # the selection ring: light, so the point inside stays visible
MAX_SELECTED = 24  # instances the selection grid shows
LANGUAGE_CLUSTER_NOTE = ("**Why are the languages in separate clusters?** A map keeps each point near its nearest neighbours, and a "
                         "caption's nearest neighbours are mostly captions in the same language, so UMAP often draws one island per "
                         "language. Retrieval can still be good: it only needs an image's own captions to be closer to it than other "
                         "images' captions are (see the Search and Leaderboard tabs).")
SELECT_NOTE = "**Click** a point or **lasso** a group (the map opens in lasso mode; the toolbar has zoom and pan) to see those instances below."


@dataclass
class Projection:
    model: str
    coords: np.ndarray  # (P, 2)
    points: list[dict]  # per point: kind ("image" / "caption"), lang, item, text
    params: dict
    source: str  # "memory", "disk" or "computed"
    seconds: float


def _check(algorithm: str, sample, n_neighbors, min_dist) -> tuple[str, int, int, float]:
    if algorithm not in ALGORITHMS:
        raise InputError(f"Algorithm must be one of {', '.join(ALGORITHMS)}.")
    try:
        sample, n_neighbors, min_dist = int(sample), int(n_neighbors), float(min_dist)
    except (TypeError, ValueError):
        raise InputError("Sample size and neighbours must be whole numbers and min_dist a number.") from None
    for name, value in (("sample", sample), ("n_neighbors", n_neighbors), ("min_dist", min_dist)):
        low, high = LIMITS[name]
        if not low <= value <= high:
            raise InputError(f"{name} must be between {low} and {high} (got {value}).")
    return algorithm, sample, n_neighbors, min_dist


def _points(world: World, model: ModelEntry, langs: Sequence[str], sample: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    n = min(sample, len(world.gallery))
    chosen = np.sort(rng.choice(len(world.gallery), size=n, replace=False))
    vectors, points = [], []
    for j in chosen:
        item = world.gallery[j].id
        vectors.append(model.image_emb[j])
        points.append({"kind": "image", "lang": "", "item": item, "text": item})
    for j in chosen:
        item = world.gallery[j].id
        for lang in langs:
            rows = [i for i in world.captions_of_item[item] if world.captions[i].lang == lang]
            rows.sort(key=lambda i: world.captions[i].source not in NATIVE_SOURCES)
            if rows:
                vectors.append(model.caption_emb[rows[0]])
                points.append({"kind": "caption", "lang": lang, "item": item, "text": world.captions[rows[0]].text})
    return np.stack(vectors).astype(np.float32), points


def _numba_cache_dir() -> None:
    """Point numba's on-disk cache at ``<ccr cache>/numba`` unless ``NUMBA_CACHE_DIR`` is set.

    umap-learn 0.5.12 / pynndescent mark part of their jitted functions ``cache=True`` (most of
    pynndescent's, one of umap's); by default numba writes those beside the package sources
    (``site-packages/.../__pycache__``, inside the virtual environment, maybe read-only). Must run
    before umap / pynndescent are imported: each function picks its cache folder when defined."""
    import os
    import sys

    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    from ccr_core.paths import cache_dir

    folder = cache_dir() / "numba"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # numba's own fallback (the user-wide cache) applies
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:
        sys.modules["numba"].core.config.reload_config()


def _fit(x: np.ndarray, algorithm: str, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    if algorithm == "PCA":
        centred = x - x.mean(axis=0, keepdims=True)  # (P, E)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[:2].T  # (P, 2)
        return coords if coords.shape[1] == 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    import warnings

    _numba_cache_dir()
    import umap

    n_neighbors = min(n_neighbors, len(x) - 1)
    extra = {}
    if len(x) >= UMAP_EXACT_KNN_FROM:
        extra["precomputed_knn"] = _exact_knn(x, n_neighbors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": we want the fixed seed
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine", random_state=seed, **extra)
        return reducer.fit_transform(x)


def warm_umap_cache(points: int = UMAP_EXACT_KNN_FROM, dim: int = 256) -> float | None:
    """Fill numba's on-disk cache once (set-up time), so that the first live UMAP after a start skips
    most compilation: one fit on random points through the same path as the dashboard's recomputes
    (``points`` >= UMAP_EXACT_KNN_FROM: exact k-NN given to umap). Returns the seconds it took, or
    None when the cache was already warm (a marker file beside it) or NUMBA_CACHE_DIR points elsewhere."""
    import os

    _numba_cache_dir()
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        return None
    from pathlib import Path

    marker = Path(folder) / f"ccr-umap-warm-{points}x{dim}"
    if marker.exists():
        return None
    start = time.perf_counter()
    x = np.random.default_rng(0).standard_normal((points, dim)).astype(np.float32)  # (P, D)
    _fit(x, "UMAP", 15, 0.1, seed=0)
    marker.write_text("numba cache filled by ccr_core.dashboard.projection.warm_umap_cache\n")
    return time.perf_counter() - start


def _exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, None]:
    """Exact cosine k-NN of every row (itself included), as umap's ``precomputed_knn``.

    From 4,096 points umap-learn switches from exact distances to pynndescent, whose
    ``nn_descent`` takes the metric as a jitted argument and so is compiled anew in every process
    (numba cannot cache it): 10-20 s before the first map on the 2-core dev machine. An exact
    search over the few thousand points here costs about a second instead."""
    from ccr_core.index import ExactIndex, l2_normalise

    unit = l2_normalise(x)
    index = ExactIndex(unit.shape[1])
    index.add(unit)
    scores, ids = index.search(unit, k)  # (P, k), descending
    return ids.astype(np.int32), np.maximum(1.0 - scores, 0.0).astype(np.float32), None


def project(world: World, model_name: str, langs: Sequence[str] | None = None, algorithm: str = "UMAP", sample: int = 200,
            n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0,
            progress: Callable[[float, str], None] | None = None, cached_only: bool = False) -> Projection | None:
    """A cached 2-D projection of one model's test embeddings (images + captions in ``langs``);
    with ``cached_only``, None instead of computing one that is not cached yet."""
    start = time.perf_counter()
    algorithm, sample, n_neighbors, min_dist = _check(algorithm, sample, n_neighbors, min_dist)
    model = world.model(model_name)
    langs = [l for l in (world.languages if langs is None else langs) if l in world.languages]
    if not langs:
        raise InputError("Choose at least one language.")
    params = {"algorithm": algorithm, "sample": sample, "langs": langs, "seed": int(seed)}
    if algorithm == "UMAP":
        params.update(n_neighbors=n_neighbors, min_dist=min_dist)
    key = hashlib.sha256(json.dumps({**params, "checkpoint": model.checkpoint_hash}, sort_keys=True).encode()).hexdigest()[:16]
    memo = world.memo.setdefault("projections", {})
    if key in memo:
        p = memo[key]
        return Projection(p.model, p.coords, p.points, p.params, "memory", time.perf_counter() - start)
    folder = world.cache_dir / "projections"
    base = folder / f"{safe_name(model.name)}-{key}"
    npy, meta_path = base.with_suffix(".npy"), base.with_suffix(".json")
    if npy.exists() and meta_path.exists():
        meta = read_json(meta_path)
        if meta.get("checkpoint_sha256") == model.checkpoint_hash and meta.get("params") == params:
            coords = np.load(npy, allow_pickle=False)
            memo[key] = Projection(model.label, coords, meta["points"], params, "disk", time.perf_counter() - start)
            return memo[key]
    if cached_only:
        return None
    if progress:
        progress(0.1, f"{model.label}: gathering embeddings")
    x, points = _points(world, model, langs, sample, int(seed))
    if progress:
        progress(0.3, f"{model.label}: fitting {algorithm} on {len(x)} points")
    coords = _fit(x, algorithm, n_neighbors, min_dist, int(seed)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_suffix(".tmp.npy")
    np.save(tmp, coords)
    tmp.replace(npy)
    write_json_atomic(meta_path, {"checkpoint_sha256": model.checkpoint_hash, "model": model.name, "params": params, "points": points})
    if progress:
        progress(1.0, f"{model.label}: done")
    memo[key] = Projection(model.label, coords, points, params, "computed", time.perf_counter() - start)
    return memo[key]


def project_shared(world: World, model_a: str, model_b: str, langs: Sequence[str] | None = None, algorithm: str = "UMAP", sample: int = 200,
                   n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> tuple[Projection, Projection]:
    """One fit over both models' points (the same sampled instances), split into two maps with the same
    axes: the same instance can be compared across the maps. Needs embeddings of one size."""
    start = time.perf_counter()
    algorithm, sample, n_neighbors, min_dist = _check(algorithm, sample, n_neighbors, min_dist)
    a, b = world.model(model_a), world.model(model_b)
    if a.image_emb.shape[1] != b.image_emb.shape[1]:
        raise InputError(f"{a.name} and {b.name} embed into spaces of different sizes ({a.image_emb.shape[1]} and "
                         f"{b.image_emb.shape[1]}), so one shared map cannot hold both; untick 'one shared map'.")
    langs = [l for l in (world.languages if langs is None else langs) if l in world.languages]
    if not langs:
        raise InputError("Choose at least one language.")
    params = {"algorithm": algorithm, "sample": sample, "langs": langs, "seed": int(seed), "shared": True}
    if algorithm == "UMAP":
        params.update(n_neighbors=n_neighbors, min_dist=min_dist)
    stamp = {"a": a.checkpoint_hash, "b": b.checkpoint_hash}
    key = hashlib.sha256(json.dumps({**params, **stamp}, sort_keys=True).encode()).hexdigest()[:16]
    memo = world.memo.setdefault("projections", {})
    if key not in memo:
        xa, points = _points(world, a, langs, sample, int(seed))
        xb, points_b = _points(world, b, langs, sample, int(seed))
        base = world.cache_dir / "projections" / f"shared-{safe_name(a.name + '+' + b.name)}-{key}"
        npy, meta_path = base.with_suffix(".npy"), base.with_suffix(".json")
        coords, source = None, "computed"
        if npy.exists() and meta_path.exists():
            meta = read_json(meta_path)
            if meta.get("checkpoints") == stamp and meta.get("params") == params:
                coords, source = np.load(npy, allow_pickle=False), "disk"
        if coords is None:
            coords = _fit(np.concatenate([xa, xb]), algorithm, n_neighbors, min_dist, int(seed)).astype(np.float32)  # (Pa + Pb, 2)
            npy.parent.mkdir(parents=True, exist_ok=True)
            tmp = npy.with_suffix(".tmp.npy")
            np.save(tmp, coords)
            tmp.replace(npy)
            write_json_atomic(meta_path, {"checkpoints": stamp, "models": [a.name, b.name], "params": params})
        memo[key] = (Projection(a.label, coords[: len(points)], points, params, source, 0.0),
                     Projection(b.label, coords[len(points) :], points_b, params, source, 0.0))
        seconds = time.perf_counter() - start
        return tuple(Projection(p.model, p.coords, p.points, p.params, p.source, seconds) for p in memo[key])
    return tuple(Projection(p.model, p.coords, p.points, p.params, "memory", time.perf_counter() - start) for p in memo[key])


def selection(world: World, items: Sequence[str] | str | None, langs: Sequence[str] | None = None) -> tuple[list[tuple[str, str]], pd.DataFrame, str, list[str]]:
    """The selected instances: (thumbnail, caption) pairs for a grid, a table of their captions in ``langs``,
    a status line and the selected ids (to ring in the maps). ``items`` is a list of test image ids or one string of them (space or comma separated)."""
    if isinstance(items, str):
        items = items.replace(",", " ").split()
    wanted = list(dict.fromkeys(i for i in (items or []) if i))
    unknown = [i for i in wanted if i not in world.gallery_pos]
    if unknown:
        raise InputError(f"Not test images of this world: {', '.join(unknown[:5])}.")
    if not wanted:
        raise InputError("Select points in a map first (click one, or lasso a group).")
    langs = [l for l in (langs or world.languages) if l in world.languages]
    shown = wanted[:MAX_SELECTED]
    grid, rows = [], []
    for item in shown:
        caps = [world.captions[i] for i in world.captions_of_item[item] if world.captions[i].lang in langs]
        caps.sort(key=lambda c: (langs.index(c.lang), c.source not in NATIVE_SOURCES))
        grid.append((str(world.thumbnail(item)), item))  # its captions: in the table beside the grid
        seen = set()
        for c in caps:
            if c.lang not in seen:
                seen.add(c.lang)
                rows.append({"image": item, "language": c.lang, "caption": c.text})
    more = f" (the first {MAX_SELECTED} shown)" if len(wanted) > MAX_SELECTED else ""
    status = f"**{len(wanted)} instance{'s' if len(wanted) != 1 else ''} selected**{more}; highlighted (ringed) in both maps."
    return grid, pd.DataFrame(rows, columns=["image", "language", "caption"]), status, wanted


def language_colours(n: int) -> list[str]:
    """``n`` colours, all different: the Okabe-Ito hues, Tol's muted ones, then evenly spaced hues."""
    import colorsys

    base = [*LANGUAGE_COLOURS, *EXTRA_LANGUAGE_COLOURS]
    extra = max(0, n - len(base))
    hues = ["#%02X%02X%02X" % tuple(round(255 * c) for c in colorsys.hls_to_rgb((i + 0.5) / extra, 0.45, 0.65)) for i in range(extra)]
    return (base + hues)[:n]


def colour_field(field: str | None, model: str | None = None) -> tuple[str, str | None]:
    """(field, model) of a "Colour by" choice: ``rank``, ``correct`` and ``mrv`` may name a model (``rank:baseline``)."""
    field = (field or "language").strip()
    name, _, named = field.partition(":")
    if name not in {v for _, v in COLOUR_FIELDS}:
        raise InputError(f"Cannot colour a map by {field!r}; choose one of: {', '.join(v for _, v in COLOUR_FIELDS)}.")
    return name, (named or model)


def point_values(world: World, p: Projection, field: str, model: str | None, k: int = 5) -> list:
    """Per point of ``p``, its value for ``field`` (None where it has none): a caption point's rank is its
    image's rank from that caption (text -> image, the whole test gallery, ``finder``'s table); an image
    point's is its best rank over the map's languages; σ is the instance's; uncertainty is the caption's."""
    from ccr_core.dashboard import finder

    if field == "modality":
        return [pt["kind"] for pt in p.points]
    if field == "noise":
        return [finder.noise_labels(world, pt["item"]) or "no noise label" for pt in p.points]
    if field == "language":
        return [pt["lang"] or "image" for pt in p.points]
    table = finder.instance_table(world, [model] if model else None)
    by_row = {(r["image"], r["language"]): r for r in table.to_dict("records")}
    by_item: dict[str, list] = {}
    for r in by_row.values():
        by_item.setdefault(r["image"], []).append(r)
    u_column = next((c for c in table.columns if c.startswith("UML u")), None)

    def value(pt):
        rows = [by_row[(pt["item"], pt["lang"])]] if pt["kind"] == "caption" and (pt["item"], pt["lang"]) in by_row else (
            [r for r in by_item.get(pt["item"], []) if r["language"] in p.params["langs"]] if pt["kind"] == "image" else [])
        if not rows:
            return None
        if field in ("rank", "correct"):
            best = min(int(r[finder.rank_column(model)]) for r in rows)
            return best if field == "rank" else ("correct@%d" % k if best <= k else "missed (rank > %d)" % k)
        if field == "mrv":
            sigma = rows[0][finder.sigma_column(model)]
            return None if sigma != sigma else float(sigma)
        if field == "uncertainty":
            return float(rows[0][u_column]) if u_column and pt["kind"] == "caption" else None
        return None

    if field == "uncertainty" and u_column is None:
        raise InputError("No model in this world estimates uncertainty.")
    return [value(pt) for pt in p.points]


def _coloured_traces(fig, p: Projection, values: list, field: str, url, title: str) -> None:
    """Image (squares) and caption (circles) points coloured by ``values``: a colour scale for numbers, one
    legend entry per category otherwise; points without a value in grey."""
    import plotly.graph_objects as go

    numeric = all(v is None or isinstance(v, (int, float)) for v in values) and field in ("rank", "mrv", "uncertainty")
    symbol = {"image": "square", "caption": "circle"}
    hover = "%{text}<br><i>image %{customdata[0]}</i><br>" + title + ": %{customdata[2]}<extra></extra>"

    def add(idx, name, **marker):
        if idx:
            fig.add_trace(go.Scattergl(x=p.coords[idx, 0], y=p.coords[idx, 1], mode="markers", name=name, hovertemplate=hover,
                                       text=[_wrap(p.points[k]["text"]) for k in idx],
                                       customdata=[[p.points[k]["item"], url(p.points[k]["item"]), "—" if values[k] is None else values[k]] for k in idx],
                                       marker=dict(symbol=[symbol[p.points[k]["kind"]] for k in idx], size=8, **marker)))

    missing = [k for k, v in enumerate(values) if v is None]
    add(missing, "no value", color="#BBBBBB", opacity=0.6)
    if numeric:
        have = [k for k, v in enumerate(values) if v is not None]
        scale = "Cividis_r" if field == "rank" else "Cividis"  # bright = good rank
        add(have, title, color=[values[k] for k in have], colorscale=scale, showscale=True, opacity=0.9,
            colorbar=dict(title=title, thickness=12), line=dict(width=0.5, color="white"))
        return
    cats = list(dict.fromkeys(v for v in values if v is not None))
    palette = language_colours(len(cats)) if field != "modality" else [OKABE_ITO["black"], OKABE_ITO["orange"]]
    for c, colour in zip(cats, palette):
        add([k for k, v in enumerate(values) if v == c], str(c), color=colour, opacity=0.85)


def figure(p: Projection, lines: bool = False, highlight: Sequence[str] = (), thumb_url: Callable[[str], str] | None = None,
           values: list | None = None, field: str = "language", title: str = ""):
    """The map: images (black squares) and captions (one colour per language); ``highlight``: the selected
    instances' points ringed. Every point carries (item id, thumbnail URL) as customdata for the page's
    click, lasso and hover handlers."""
    import plotly.graph_objects as go

    url = thumb_url or (lambda item: "")
    fig = go.Figure()
    kinds = np.array([pt["kind"] for pt in p.points])
    if lines:
        where = {pt["item"]: k for k, pt in enumerate(p.points) if pt["kind"] == "image"}
        xs, ys = [], []
        for k, pt in enumerate(p.points):
            if pt["kind"] == "caption":
                i = where[pt["item"]]
                xs += [p.coords[i, 0], p.coords[k, 0], None]
                ys += [p.coords[i, 1], p.coords[k, 1], None]
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color="rgba(120,120,120,0.35)", width=1), name="image ↔ its captions", hoverinfo="skip"))
    if values is not None and field != "language":
        _coloured_traces(fig, p, values, field, url, title or field)
    else:
        _language_traces(fig, p, kinds, url)
    _ring_and_layout(fig, p, highlight, url)
    return fig


def _language_traces(fig, p: Projection, kinds: np.ndarray, url) -> None:
    import plotly.graph_objects as go

    img = np.flatnonzero(kinds == "image")
    fig.add_trace(go.Scattergl(x=p.coords[img, 0], y=p.coords[img, 1], mode="markers", name="images",
                               marker=dict(symbol="square", size=8, color="#222", line=dict(width=1, color="white")),
                               text=[p.points[k]["item"] for k in img], customdata=[[p.points[k]["item"], url(p.points[k]["item"])] for k in img],
                               hovertemplate="image %{text}<extra></extra>"))
    langs = sorted({pt["lang"] for pt in p.points if pt["kind"] == "caption"}, key=lambda l: p.params["langs"].index(l))
    colours = dict(zip(p.params["langs"], language_colours(len(p.params["langs"]))))  # by the map's languages: the same in both maps
    for lang in langs:
        sel = [k for k, pt in enumerate(p.points) if pt["kind"] == "caption" and pt["lang"] == lang]
        fig.add_trace(go.Scattergl(x=p.coords[sel, 0], y=p.coords[sel, 1], mode="markers", name=f"{language_name(lang)} captions",
                                   marker=dict(size=7, color=colours[lang], opacity=0.8),
                                   text=[_wrap(p.points[k]["text"]) for k in sel],
                                   customdata=[[p.points[k]["item"], url(p.points[k]["item"])] for k in sel],
                                   hovertemplate="%{text}<br><i>image %{customdata[0]}</i><extra>" + lang + "</extra>"))


def _ring_and_layout(fig, p: Projection, highlight: Sequence[str], url) -> None:
    import plotly.graph_objects as go

    marked = set(highlight)
    if marked:
        ring = [k for k, pt in enumerate(p.points) if pt["item"] in marked]
        fig.add_trace(go.Scattergl(x=p.coords[ring, 0], y=p.coords[ring, 1], mode="markers", name="selected",
                                   marker=dict(size=14, color="rgba(0,0,0,0)", line=RING),
                                   customdata=[[p.points[k]["item"], url(p.points[k]["item"])] for k in ring],
                                   hovertemplate="selected: image %{customdata[0]}<extra></extra>"))
    shared = " (shared map)" if p.params.get("shared") else ""
    fig.update_layout(**chart_layout(height=500, title=f"{p.model}: {p.params['algorithm']}{shared}", dragmode="lasso",
                                     legend=dict(orientation="h", y=-0.08), margin=dict(t=60, l=20, r=20, b=30),
                                     xaxis=dict(showticklabels=False, title=""), yaxis=dict(showticklabels=False, title="", scaleanchor="x")))


def _wrap(text: str, width: int = 60) -> str:
    return "<br>".join(text[i : i + width] for i in range(0, min(len(text), 4 * width), width))


def default_params(world: World) -> dict:
    """The parameters the tab opens with (and the warm-up thread precomputes)."""
    return {**{k: v for k, v in DEFAULTS.items() if k != "sample"}, "sample": min(DEFAULTS["sample"], len(world.gallery))}


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def default_models(world: World) -> tuple[str, str]:
    """The two models the tab opens with: the baseline and the method trained on every language at once (1-to-K)
    where the world has them (the pair whose maps differ most in how languages mix), else the first two main models."""
    main = [m.name for m in main_models(world.model_list())] or world.model_names()
    pick = [n for n in (BASELINE, *methods_with(targets_per_batch=0)[:1]) if n in main] or main[:2]
    return (pick[0], pick[1] if len(pick) > 1 else (main[1] if len(main) > 1 else pick[0]))


def thumb_url(world: World):
    """item id -> the URL the page loads its thumbnail from (the app serves the thumbnail folder)."""
    return lambda item: f"gradio_api/file={world.thumbnail(item)}"


def two_maps(world: World, urls, args, highlight=(), field: str = "language", k: int = 5):
    """Both models' projections and their figures for the Draw arguments ``args`` (a, b, languages, algorithm, sample,
    n_neighbors, min_dist, join, one shared map), ``highlight`` ringed, points coloured by ``field``."""
    a, b, chosen, algorithm, n_sample, n_neighbors, min_dist, join, one_map = args
    if one_map:
        pa, pb = project_shared(world, a, b, chosen, algorithm, n_sample, n_neighbors, min_dist)
    else:
        pa = project(world, a, chosen, algorithm, n_sample, n_neighbors, min_dist)
        pb = project(world, b, chosen, algorithm, n_sample, n_neighbors, min_dist)
    return pa, pb, *(_coloured(world, urls, p, name, join, highlight, field, k) for p, name in ((pa, a), (pb, b)))


def _coloured(world: World, urls, p, name: str, join: bool, highlight, field: str, k):
    what, model = colour_field(field, name)
    k = int(k or 5)
    if what == "language":
        return figure(p, join, highlight, urls)
    label = dict((v, lab) for lab, v in COLOUR_FIELDS)[what].replace("each map's own model", model)
    return figure(p, join, highlight, urls, point_values(world, p, what, model, k), what, label.replace("correct@k", f"correct@{k}"))


def open_defaults(world: World, urls, already):
    """The default maps of the first two models, if cached (the warm-up thread computes them); never computes."""
    import gradio as gr

    if already:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    first, second = default_models(world)
    d = default_params(world)
    found = [project(world, name, world.languages, cached_only=True, **d) for name in (first, second)]
    if any(m is None for m in found):
        return ("The default UMAP maps are still being computed in the background; press **Draw** to compute them now "
                "(or choose PCA, which takes a second).", gr.skip(), gr.skip(), None)
    args = [first, second, world.languages, d["algorithm"], d["sample"], d["n_neighbors"], d["min_dist"], False, False]
    return (f"Default maps ({d['algorithm']}, {d['sample']} images), from the cache.", figure(found[0], False, (), urls),
            figure(found[1], False, (), urls), args)


def build_tab(world: World, page) -> None:
    """The Maps tab: two models' maps side by side, linked to each other and to a grid of the
    selected instances; opens on the cached default maps."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded, selected

    names = world.model_names()
    first, second = default_models(world)
    d = default_params(world)
    urls = thumb_url(world)
    with gr.Tab("Maps", id="projection") as tab:
        gr.Markdown("Images (■) and their captions (●, one colour per language) in one 2-D map per model. Well-aligned models put an "
                    "image's captions in every language next to it. " + SELECT_NOTE)
        with gr.Row():
            model_a = gr.Dropdown(names, value=first, label="Left model", allow_custom_value=True)
            model_b = gr.Dropdown(names, value=second, label="Right model", allow_custom_value=True)
            langs = gr.CheckboxGroup([(language_name(l), l) for l in world.languages], value=world.languages, label="Caption languages")
        with gr.Row():
            algo = gr.Radio(list(ALGORITHMS), value=d["algorithm"], label="Method", elem_id="proj-algo")
            sample = gr.Slider(*LIMITS["sample"], value=d["sample"], step=10, label="Images sampled")
            nn = gr.Slider(*LIMITS["n_neighbors"], value=d["n_neighbors"], step=1, label="UMAP n_neighbors")
            md = gr.Slider(0.0, 1.0, value=d["min_dist"], step=0.05, label="UMAP min_dist")
        with gr.Row():
            lines = gr.Checkbox(value=False, label="Join each image to its captions")
            shared = gr.Checkbox(value=False, label="One shared map (both models' points in one fit: the same axes)", elem_id="proj-shared")
            colour_by = gr.Dropdown([*COLOUR_FIELDS, *((f"rank by {n}", f"rank:{n}") for n in names)], value="language", label="Colour by",
                                    elem_id="proj-colour")
            colour_k = gr.Number(value=5, precision=0, minimum=1, label="k (correct@k)", min_width=80, elem_id="proj-colour-k")
            btn = gr.Button("Draw", variant="primary", elem_id="proj-btn")
        status = gr.Markdown("Opening on the default maps…", elem_id="proj-status")
        with gr.Row():
            plot_a = gr.Plot(label="Left", elem_id="proj-a")
            plot_b = gr.Plot(label="Right", elem_id="proj-b")
        gr.Markdown(LANGUAGE_CLUSTER_NOTE, elem_id="proj-note")
        with gr.Row():
            # The page's click / lasso handler writes the selected ids here and presses the button (a person can type ids too).
            selected_ids = gr.Textbox(value="", label="Selected images (ids; filled by clicking or lassoing a map)", scale=4, elem_id="proj-selected")
            show_btn = gr.Button("Show selected", scale=1, elem_id="proj-show-selected")
        sel_status = gr.Markdown(elem_id="proj-sel-status")
        sel_grid = gr.Gallery(label="Selected instances (click one to open it in the Instance tab)", columns=6, height=300, object_fit="contain",
                              allow_preview=False, elem_id="proj-grid",
                              elem_classes="ccr-gallery")
        sel_table = gr.Dataframe(value=pd.DataFrame(columns=["image", "language", "caption"]), interactive=False, wrap=True, label="Their captions",
                                 elem_id="proj-sel-table")
        drawn = gr.State(None)  # the arguments of the maps on screen, to redraw them with a selection ringed
        shown_ids = gr.State([])  # the selected instances in the grid, in its order (a grid click opens one in the Instance tab)

    page.model_pickers += [model_a, model_b]

    def maps(args, highlight=(), field="language", k=5):
        return two_maps(world, urls, args, highlight, field, k)

    @guarded(4)
    def do_projection(a, b, chosen, algorithm, n_sample, n_neighbors, min_dist, join, one_map, field="language", k=5, ids="",
                      progress=gr.Progress()):
        args = [a, b, chosen, algorithm, n_sample, n_neighbors, min_dist, join, one_map]
        progress(0.1, desc=f"{algorithm}: fitting (cached maps open at once)")
        pa, pb, fa, fb = maps(args, (ids or "").replace(",", " ").split(), field, k)
        settings = ", ".join(f"{k}={v}" for k, v in pa.params.items() if k not in ("langs", "algorithm", "shared"))
        text = (f"One shared {algorithm} fit of both models ({settings}): {pa.source} in {pa.seconds:.1f} s" if one_map else
                f"{algorithm} ({settings}) · {pa.model}: {pa.source} in {pa.seconds:.1f} s · {pb.model}: {pb.source} in {pb.seconds:.1f} s")
        return text, fa, fb, args

    gr.on([btn.click, colour_by.change, colour_k.submit], do_projection, [model_a, model_b, langs, algo, sample, nn, md, lines, shared, colour_by,
                                                                         colour_k, selected_ids],
          [status, plot_a, plot_b, drawn], api_name="projection", concurrency_id="projection", concurrency_limit=1)

    @guarded(6)
    def show_selected(ids, args, chosen, *colouring):
        grid, table, text, items = selection(world, ids, chosen)
        if not args:
            return text, grid, table, gr.skip(), gr.skip(), items[:MAX_SELECTED]
        _, _, fa, fb = maps(args, items, *colouring)
        return text, grid, table, fa, fb, items[:MAX_SELECTED]

    gr.on([show_btn.click, selected_ids.submit], show_selected, [selected_ids, drawn, langs, colour_by, colour_k],
          [sel_status, sel_grid, sel_table, plot_a, plot_b, shown_ids], api_name="projection_select")

    def grid_item(ids, evt=None):
        index = selected(evt, "index")
        return ids[index[0] if isinstance(index, (list, tuple)) else index]

    page.link_instance(sel_grid.select, [shown_ids], grid_item, api_name="projection_open_instance")

    tab.select(lambda already: open_defaults(world, urls, already), drawn, [status, plot_a, plot_b, drawn], api_visibility="private")


# Runs in the page (``launch(js=...)``): links the maps to the selection box and shows a thumbnail on hover.
# Plotly gives every drawn plot an event emitter (``gd._ev``); a redraw may replace it, so handlers are
# (re)attached whenever it changes.
PAGE_JS = """
() => {
  const tip = document.createElement('img');
  tip.id = 'ccr-hover-thumb';
  tip.style.cssText = 'position:fixed;display:none;z-index:9999;width:140px;border:3px solid #000;background:#fff;pointer-events:none';
  document.body.appendChild(tip);
  const ids = (ev) => [...new Set((ev && ev.points ? ev.points : []).map(p => Array.isArray(p.customdata) ? p.customdata[0] : null).filter(Boolean))];
  const send = (list) => {
    const box = document.querySelector('#proj-selected textarea, #proj-selected input');
    if (!box || !list.length) return;
    box.value = list.join(' ');
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => { const b = document.querySelector('#proj-show-selected'); if (b) b.click(); }, 150);
  };
  const hook = (gd) => {
    if (!gd._ev || gd.__ccrEv === gd._ev) return;
    gd.__ccrEv = gd._ev;
    gd.on('plotly_selected', (ev) => send(ids(ev)));
    gd.on('plotly_click', (ev) => send(ids(ev)));
    gd.on('plotly_hover', (ev) => {
      const p = ev && ev.points && ev.points[0];
      const url = p && Array.isArray(p.customdata) ? p.customdata[1] : '';
      if (!url) return;
      tip.src = url;
      const e = ev.event || {};
      tip.style.left = ((e.clientX || 0) + 16) + 'px';
      tip.style.top = ((e.clientY || 0) + 16) + 'px';
      tip.style.display = 'block';
    });
    gd.on('plotly_unhover', () => { tip.style.display = 'none'; });
  };
  // Consistency: a click on a heatmap cell opens the instance in the Instance tab (the tab's button does it).
  const hookHeat = (gd) => {
    if (!gd._ev || gd.__ccrHeat === gd._ev) return;
    gd.__ccrHeat = gd._ev;
    gd.on('plotly_click', () => { const b = document.querySelector('#cons-open-instance'); if (b) b.click(); });
  };
  setInterval(() => {
    document.querySelectorAll('#proj-a .js-plotly-plot, #proj-b .js-plotly-plot').forEach(hook);
    document.querySelectorAll('#cons-heat .js-plotly-plot').forEach(hookHeat);
  }, 700);
}
"""
