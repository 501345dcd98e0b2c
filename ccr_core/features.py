"""The visual feature cache: frozen-backbone features of every item of a bundle, extracted once.

A cache is a folder::

    features.npy     (N, D) float32, row i = item ``ids[i]`` (a video's row is the mean of its frames)
    frames.npy       (F, D) float32 per-frame features of video items (absent when there are none)
    meta.json        backbone identity (name, weights hash, preprocessing), bundle name, ids,
                     frame offsets, and the SHA-256 of each array -- written last

Extraction runs in batches with a progress bar, writes into ``*.partial`` files with a
``progress.json`` checkpoint after every batch (so an interrupted run resumes where it stopped),
and renames the arrays into place before writing ``meta.json``. A folder without ``meta.json`` is
never loaded. Loading memory-maps the arrays, checks their hashes, and refuses a cache whose
backbone identity differs from the one asked for.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ccr_core.backbones.vision import VisualBackbone, load_rgb
from ccr_core.data.bundle import Bundle, Item
from ccr_core.devices import module_device
from ccr_core.io import atomic_path, file_lock, read_json, sha256_file, write_json_atomic

TEST_SPLIT_SUFFIX = "-test-split"  # folder suffix of a cache of the test images alone (features, or a fine-tuned top's maps)

META_FILE, FEATURES_FILE, FRAMES_FILE, PROGRESS_FILE = "meta.json", "features.npy", "frames.npy", "progress.json"
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class FeatureCacheError(ValueError):
    """A feature cache is missing, incomplete, corrupt or belongs to another backbone."""


@dataclass
class FeatureCache:
    root: Path
    meta: dict
    features: np.ndarray  # (N, D), memory-mapped
    frames: np.ndarray | None  # (F, D), memory-mapped, or None

    @property
    def ids(self) -> list[str]:
        return self.meta["ids"]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Features of the given items, in that order: (len(item_ids), D)."""
        index = self.index()
        try:
            return np.asarray(self.features[[index[i] for i in item_ids]])
        except KeyError as exc:
            raise FeatureCacheError(f"{self.root}: no features for item {exc.args[0]!r}") from None

    def index(self) -> dict[str, int]:
        if not hasattr(self, "_index"):
            self._index = {item_id: i for i, item_id in enumerate(self.ids)}
        return self._index

    def video_frames(self, item_id: str) -> np.ndarray:
        """Per-frame features (T, D) of a video item."""
        offsets = self.meta.get("frame_offsets", {})
        if item_id not in offsets or self.frames is None:
            raise FeatureCacheError(f"{self.root}: item {item_id!r} has no frame features")
        start, stop = offsets[item_id]
        return np.asarray(self.frames[start:stop])


def cache_dir_for(workspace: str | Path, bundle: Bundle, backbone: VisualBackbone) -> Path:
    """Default cache folder: ``<workspace>/features/<bundle>/<backbone>-<identity hash>``."""
    safe = backbone.name.replace("/", "_").replace(":", "_").replace("@", "_")
    return Path(workspace) / "features" / bundle.name / f"{safe}-{backbone.identity_key()}"


def _video_frame_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise FeatureCacheError(f"{path}: video folder holds no frame images")
    return files


def _frame_count(bundle: Bundle, item: Item) -> int:
    path = bundle.image_path(item)
    if path.suffix == ".npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    return len(_video_frame_files(path))


def _load_batch(backbone: VisualBackbone, paths: Sequence[Path]) -> torch.Tensor:
    """Decode and preprocess pictures: (B, 3, S, S). PIL releases the GIL here, so this runs in a
    worker thread while the backbone encodes the previous batch (see :class:`_Prefetcher`)."""
    return torch.stack([backbone.preprocess(load_rgb(p)) for p in paths])


class _Prefetcher:
    """Decodes the next batch in one worker thread while the current one is encoded: on 2 cores the
    JPEG decode and resize (PIL, GIL released) overlap the forward pass instead of adding to it."""

    def __init__(self, backbone: VisualBackbone):
        self.backbone = backbone
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccr-decode")
        self.pending: dict[tuple, object] = {}

    def submit(self, paths: Sequence[Path]) -> None:
        key = tuple(map(str, paths))
        if key and key not in self.pending:
            self.pending[key] = self.pool.submit(_load_batch, self.backbone, list(paths))

    def take(self, paths: Sequence[Path]) -> torch.Tensor | None:
        future = self.pending.pop(tuple(map(str, paths)), None)
        return None if future is None else future.result()

    def close(self) -> None:
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


_prefetch = threading.local()  # the extraction running in this thread, if any: its _Prefetcher


def _encode_paths(backbone: VisualBackbone, paths: Sequence[Path]) -> np.ndarray:
    prefetcher = getattr(_prefetch, "current", None)
    batch = prefetcher.take(paths) if prefetcher is not None else None
    if batch is None:
        batch = _load_batch(backbone, paths)  # (B, 3, S, S)
    # (B, D): a backbone moved to a GPU runs there; on the CPU a backbone may use ONNX Runtime (infer)
    return backbone.infer(batch.to(module_device(backbone))).float().cpu().numpy()


def extract_features(
    bundle: Bundle,
    backbone: VisualBackbone,
    out_dir: str | Path,
    batch_size: int = 64,
    progress: bool = True,
    threads: int | None = None,
) -> FeatureCache:
    """Extract (or resume extracting) features of every item of ``bundle`` into ``out_dir``.

    Returns the loaded cache. If ``out_dir`` already holds a complete cache for the same backbone
    and items, it is returned without recomputation. A second process asking for the same cache
    meanwhile waits for the first (a lock file beside the cache) and then reads its result.
    """
    out_dir = Path(out_dir)
    with file_lock(out_dir.parent / f".{out_dir.name}.lock"):
        return _extract_features(bundle, backbone, out_dir, batch_size, progress, threads)


def _extract_features(bundle, backbone, out_dir: Path, batch_size, progress, threads) -> FeatureCache:
    identity = backbone.identity()
    ids = [it.id for it in bundle.items]
    if (out_dir / META_FILE).exists():
        cache = load_features(out_dir, identity)
        if cache.ids == ids:
            return cache
        raise FeatureCacheError(f"{out_dir}: holds features of other items; choose another folder or delete it")
    if threads:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = [it for it in bundle.items if it.kind == "video"]
    frame_offsets: dict[str, list[int]] = {}
    total_frames = 0
    for it in videos:
        n = _frame_count(bundle, it)
        frame_offsets[it.id] = [total_frames, total_frames + n]
        total_frames += n

    plan = {"identity": identity, "ids_sha256": _ids_hash(ids), "frames": total_frames}
    progress_path = out_dir / PROGRESS_FILE
    part_features, part_frames = out_dir / (FEATURES_FILE + ".partial"), out_dir / (FRAMES_FILE + ".partial")
    done_items, done_frames = 0, 0
    if progress_path.exists() and part_features.exists():
        state = read_json(progress_path)
        if state.get("plan") == plan:
            done_items, done_frames = state["done_items"], state["done_frames"]
    if done_items == 0 and done_frames == 0:
        features = np.lib.format.open_memmap(part_features, mode="w+", dtype=np.float32, shape=(len(ids), backbone.dim))
        frames = (np.lib.format.open_memmap(part_frames, mode="w+", dtype=np.float32, shape=(total_frames, backbone.dim)) if total_frames else None)
    else:
        features = np.lib.format.open_memmap(part_features, mode="r+")
        frames = np.lib.format.open_memmap(part_frames, mode="r+") if total_frames else None

    def checkpoint(items_done: int, frames_done: int) -> None:
        features.flush()
        if frames is not None:
            frames.flush()
        write_json_atomic(progress_path, {"plan": plan, "done_items": items_done, "done_frames": frames_done})

    backbone.eval()
    bar = tqdm(total=len(ids) + total_frames, initial=done_items + done_frames, disable=not progress, unit="img", desc=f"features {bundle.name}/{backbone.name}")
    # Video frames first (their means fill the videos' rows), then still images.
    video_pos = {it.id: bundle.item_position(it.id) for it in videos}
    frame_jobs: list[tuple[Path, int]] = []
    for it in videos:
        start, stop = frame_offsets[it.id]
        path = bundle.image_path(it)
        if path.suffix == ".npy":
            if start >= done_frames:
                arr = np.load(path, allow_pickle=False)
                if arr.ndim != 2 or arr.shape[1] != backbone.dim:
                    raise FeatureCacheError(f"{path}: pre-extracted frame features have shape {arr.shape}, expected (T, {backbone.dim})")
                frames[start:stop] = arr
            continue
        for k, frame in enumerate(_video_frame_files(path)):
            if start + k >= done_frames:
                frame_jobs.append((frame, start + k))
    batches = [[p for p, _ in frame_jobs[b : b + batch_size]] for b in range(0, len(frame_jobs), batch_size)]
    image_rows = [(i, it) for i, it in enumerate(bundle.items) if it.kind == "image" and i >= done_items]
    batches += [[bundle.image_path(it) for _, it in image_rows[b : b + batch_size]] for b in range(0, len(image_rows), batch_size)]
    _prefetch.current = prefetcher = _Prefetcher(backbone)
    try:
        _encode_all(bundle, backbone, features, frames, frame_jobs, image_rows, batches, batch_size, videos, frame_offsets, video_pos,
                    total_frames, done_items, bar, checkpoint, prefetcher)
    finally:
        _prefetch.current = None
        prefetcher.close()
    bar.close()
    features.flush()
    del features
    return _finish(bundle, backbone, out_dir, identity, ids, frame_offsets, frames, part_features, part_frames, progress_path)


def _encode_all(bundle, backbone, features, frames, frame_jobs, image_rows, batches, batch_size, videos, frame_offsets, video_pos,
                total_frames, done_items, bar, checkpoint, prefetcher) -> None:
    """Encode the frame batches, then the image batches, each batch's successor decoding meanwhile."""
    upcoming = iter(batches[1:])

    def prefetch_next() -> None:
        nxt = next(upcoming, None)
        if nxt is not None:
            prefetcher.submit(nxt)

    if batches:
        prefetcher.submit(batches[0])
    for b in range(0, len(frame_jobs), batch_size):
        chunk = frame_jobs[b : b + batch_size]
        prefetch_next()
        frames[[j for _, j in chunk]] = _encode_paths(backbone, [p for p, _ in chunk])
        bar.update(len(chunk))
        checkpoint(done_items, chunk[-1][1] + 1)
    if frames is not None:
        for it in videos:
            start, stop = frame_offsets[it.id]
            features[video_pos[it.id]] = frames[start:stop].mean(axis=0)
    done_frames = total_frames
    for b in range(0, len(image_rows), batch_size):
        chunk = image_rows[b : b + batch_size]
        prefetch_next()
        features[[i for i, _ in chunk]] = _encode_paths(backbone, [bundle.image_path(it) for _, it in chunk])
        bar.update(len(chunk))
        checkpoint(chunk[-1][0] + 1, done_frames)


def _finish(bundle, backbone, out_dir: Path, identity, ids, frame_offsets, frames, part_features, part_frames, progress_path) -> FeatureCache:
    """Rename the finished arrays into place, then write meta.json (last: a cache without it is never loaded)."""
    os.replace(part_features, out_dir / FEATURES_FILE)
    hashes = {FEATURES_FILE: sha256_file(out_dir / FEATURES_FILE)}
    if frames is not None:
        frames.flush()
        del frames
        os.replace(part_frames, out_dir / FRAMES_FILE)
        hashes[FRAMES_FILE] = sha256_file(out_dir / FRAMES_FILE)
    meta = {
        "kind": "ccr-feature-cache",
        "format_version": 1,
        "backbone": identity,
        "bundle": bundle.name,
        "dim": backbone.dim,
        "ids": ids,
        "frame_offsets": frame_offsets,
        "sha256": hashes,
    }
    write_json_atomic(out_dir / META_FILE, meta)
    progress_path.unlink(missing_ok=True)
    return load_features(out_dir, identity)


def _ids_hash(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def load_features(root: str | Path, expected_identity: dict | None = None, verify: bool = True) -> FeatureCache:
    """Memory-map a complete feature cache; refuse incomplete, altered or mismatched ones."""
    root = Path(root)
    meta_path = root / META_FILE
    if not meta_path.exists():
        hint = " (extraction was interrupted; rerun `ccr features` to resume)" if (root / PROGRESS_FILE).exists() else ""
        raise FeatureCacheError(f"{root}: not a complete feature cache, {META_FILE} is missing{hint}")
    try:
        meta = read_json(meta_path)
    except ValueError as exc:
        raise FeatureCacheError(str(exc)) from None
    if not isinstance(meta, dict) or meta.get("kind") != "ccr-feature-cache":
        raise FeatureCacheError(f"{meta_path}: not a CCR Lab feature cache")
    if not isinstance(meta.get("ids"), list) or not isinstance(meta.get("dim"), int) or not isinstance(meta.get("sha256"), dict):
        raise FeatureCacheError(f"{meta_path}: incomplete meta (needs 'ids' (a list), 'dim' (an int) and 'sha256' (an object))")
    if expected_identity is not None and meta.get("backbone") != expected_identity:
        got, want = meta.get("backbone", {}), expected_identity
        diffs = [k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        raise FeatureCacheError(
            f"{root}: features were extracted with backbone {got.get('name')!r} but {want.get('name')!r} was asked for "
            f"(differs in: {', '.join(diffs)}); extract features for this backbone instead"
        )
    arrays = {}
    for fname, digest in meta.get("sha256", {}).items():
        path = root / fname
        if not path.exists():
            raise FeatureCacheError(f"{path}: missing (listed in {META_FILE})")
        if verify and sha256_file(path) != digest:
            raise FeatureCacheError(f"{path}: SHA-256 does not match {META_FILE} (file altered or truncated)")
        try:
            arrays[fname] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise FeatureCacheError(f"{path}: not a plain NumPy array ({exc})") from None
        if arrays[fname].dtype not in (np.float16, np.float32):
            raise FeatureCacheError(f"{path}: expected float32 or float16 features, found {arrays[fname].dtype}")
    features = arrays.get(FEATURES_FILE)
    if features is None or features.ndim != 2 or features.shape != (len(meta["ids"]), meta["dim"]):
        raise FeatureCacheError(f"{root / FEATURES_FILE}: expected shape ({len(meta['ids'])}, {meta['dim']})")
    frames = arrays.get(FRAMES_FILE)
    if frames is not None and (frames.ndim != 2 or frames.shape[1] != meta["dim"]):
        raise FeatureCacheError(f"{root / FRAMES_FILE}: expected shape (frames, {meta['dim']}), found {frames.shape}")
    return FeatureCache(root, meta, features, arrays.get(FRAMES_FILE))


def import_precomputed(npy_path: str | Path, ids: Sequence[str] | str | Path, out_dir: str | Path, name: str | None = None, bundle: Bundle | None = None) -> FeatureCache:
    """Turn a user's ``(N, D)`` ``.npy`` matrix plus an id list (sequence or a text file, one id per
    line) into a feature cache stamped ``precomputed:<sha of the matrix>``. With ``bundle``, every
    bundle item must have a row (rows are reordered to the bundle's item order)."""
    npy_path = Path(npy_path)
    if isinstance(ids, (str, Path)):
        ids = [line.strip() for line in Path(ids).read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = list(ids)
    try:
        matrix = np.load(npy_path, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise FeatureCacheError(f"{npy_path}: not a plain NumPy array ({exc})") from None
    if matrix.ndim != 2:
        raise FeatureCacheError(f"{npy_path}: expected a 2-D (N, D) matrix, got shape {matrix.shape}")
    if matrix.shape[0] != len(ids):
        raise FeatureCacheError(f"{npy_path}: {matrix.shape[0]} rows but {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise FeatureCacheError(f"{npy_path}: the id list has duplicates")
    if bundle is not None:
        position = {i: k for k, i in enumerate(ids)}
        missing = [it.id for it in bundle.items if it.id not in position]
        if missing:
            raise FeatureCacheError(f"{npy_path}: no row for {len(missing)} bundle items, e.g. {missing[:3]}")
        order = [position[it.id] for it in bundle.items]
        matrix, ids = matrix[order], [it.id for it in bundle.items]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)
    with atomic_path(out_dir / FEATURES_FILE) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(matrix, dtype=np.float32))
    digest = sha256_file(out_dir / FEATURES_FILE)
    identity = {"name": name or f"precomputed:{npy_path.name}", "dim": int(matrix.shape[1]), "weights_sha256": sha256_file(npy_path), "preprocessing": {"precomputed": True}}
    meta = {"kind": "ccr-feature-cache", "format_version": 1, "backbone": identity, "bundle": bundle.name if bundle else None,
            "dim": int(matrix.shape[1]), "ids": ids, "frame_offsets": {}, "sha256": {FEATURES_FILE: digest}}
    write_json_atomic(out_dir / META_FILE, meta)
    return load_features(out_dir, identity)


def describe(cache: FeatureCache) -> str:
    b = cache.meta["backbone"]
    return json.dumps({"root": str(cache.root), "backbone": b.get("name"), "dim": cache.dim, "items": len(cache.ids),
                       "frames": 0 if cache.frames is None else int(cache.frames.shape[0])})


def convert_to_float16(root: str | Path) -> FeatureCache:
    """Rewrite a complete cache's arrays as float16 (half the size; what ships in ``assets/``).

    The identity is unchanged (same backbone); the meta records the dtype and the new hashes."""
    root = Path(root)
    cache = load_features(root)
    (root / META_FILE).unlink()
    hashes = {}
    for name, array in ((FEATURES_FILE, cache.features), (FRAMES_FILE, cache.frames)):
        if array is None:
            continue
        half = np.asarray(array, dtype=np.float16)
        with atomic_path(root / name) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, half)
        hashes[name] = sha256_file(root / name)
    meta = {**cache.meta, "sha256": hashes, "dtype": "float16"}
    write_json_atomic(root / META_FILE, meta)
    return load_features(root)
