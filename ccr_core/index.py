"""Retrieval indexes over L2-normalised float32 embeddings (inner product = cosine similarity).

One interface for every kind: ``add(emb)``, ``search(queries, k) -> (scores, ids)``,
``search_many([batch, ...], k)``, ``len(index)``, ``index.dim``, ``save(folder)`` and
``RetrievalIndex.load(folder, model_identity, mmap=True)`` (or :func:`load_index`).

========  ===========================================  ==========================================
kind      class                                        use
========  ===========================================  ==========================================
exact     :class:`ExactIndex` (FAISS ``IndexFlatIP``,  every gallery up to ``AUTO_EXACT_MAX_ITEMS``
          or NumPy / torch matmul + top-k)             items; the reference for the others
ivf       :class:`IVFIndex` (IVF-Flat; nlist/nprobe)   large galleries; memory-mappable
hnsw      :class:`HNSWIndex` (HNSW-Flat; M/efSearch)   large galleries that fit in RAM, low latency
ivfpq     :class:`IVFPQIndex` (IVF-PQ; nlist/m/nbits)  galleries whose float32 vectors do not fit
========  ===========================================  ==========================================

Results. ``search`` returns ``scores`` (Q, k) float32 and ``ids`` (Q, k) int64: row positions in
insertion order (``index.item_ids`` maps them to the caller's item ids when given). ``k`` must be
>= 1; a ``k`` larger than the number of items is clamped to it, so the arrays have
``min(k, len(index))`` columns. An approximate index may find fewer than ``k`` items for a query
(too few items in the probed lists); the missing slots hold id -1 and score -inf, at the end.

Tie rule of the exact index, in every backend: results are ordered by descending score, ties broken
by ascending id -- the rule of :mod:`ccr_core.eval.metrics`, so the rank of an item in an exact
search equals its rank there. The NumPy / torch backends implement it exactly. FAISS keeps a heap
whose admission test is a strict ``>`` while scanning ids in increasing order, which prefers lower
ids at the k-th place in practice but is not guaranteed (blocked BLAS and per-thread heaps). So the
FAISS backend searches ``k + 1`` neighbours: when the ``k``-th and ``(k+1)``-th scores are equal it
recomputes that query's row with NumPy and applies the rule; otherwise the set is unique and only
the order inside it is re-sorted by (score desc, id asc). Scores from FAISS and NumPy may differ in
the last bits (different summation order); ties are taken as each backend computes them.
Approximate indexes get the same final re-sort of what they return, but which of several tied
items they find is FAISS's choice.

FAISS settings. Two process-wide FAISS globals decide speed: the OpenMP thread count (of every
FAISS call: training, adding, searching), and ``faiss.cvar.distance_compute_blas_threshold``, which routes a query batch either to a
per-query SIMD scan or to one BLAS matrix product. faiss-cpu <= 1.14 compares the number of queries
with it (default 20); faiss-cpu >= 1.15 compares ``n_queries * dim`` (default 128,000, i.e. 333
queries at 384-d). Each index holds ``num_threads`` and ``blas_min_queries`` (the smallest batch
that uses BLAS) and applies them only for the duration of its own FAISS call, under a lock, then
restores the previous values: nothing leaks to other code, and concurrent searches from several
threads are serialised. Defaults were measured with ``python -m benchmarks index`` on the 2-core
development machine while other jobs shared it (docs/scaling.md): one thread (a second OpenMP thread
spin-waits for a busy core, and the FAISS-bundled OpenBLAS collapses under it) and BLAS from 2
queries on; the default exact backend answers single queries with NumPy instead (see ExactIndex).
``faiss.knn`` and ``IndexFlatIP.search`` share the same code and the same two settings.

Saved layout (one folder)::

    index.faiss      the FAISS index (``embeddings.npy`` instead for exact auto / NumPy / torch)
    ids.json         the caller's item ids, row i = ids[i] (absent when none were given)
    index.json       IndexConfig (kind, dim, metric, params), the embedding model's identity, the
                     number of items, and the size and SHA-256 of each file -- written last

Every file is written to a temporary name and renamed into place; ``index.json`` last, so a folder
without it is never loaded. Loading checks sizes and (by default) hashes, refuses an index built
for another model identity (:class:`IndexMismatchError`), and memory-maps the data when asked:
``np.load(mmap_mode="r")`` for embeddings.npy, ``IO_FLAG_MMAP_IFC`` for FAISS flat codes
(exact, HNSW) and ``IO_FLAG_MMAP`` (on-disk inverted lists) for IVF kinds. A memory-mapped index
is read-only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ccr_core.io import atomic_path, read_json, sha256_file, write_json_atomic

try:  # FAISS is optional: without it only ExactIndex (NumPy / torch) is available
    import faiss
except ImportError:  # pragma: no cover - exercised on installs without faiss-cpu
    faiss = None

__all__ = [
    "IndexConfig",
    "RetrievalIndex",
    "ExactIndex",
    "IVFIndex",
    "HNSWIndex",
    "IVFPQIndex",
    "RetrievalIndexError",
    "IndexMismatchError",
    "IndexCorruptError",
    "EmptyIndexError",
    "build_index",
    "load_index",
    "l2_normalise",
    "faiss_settings",
    "faiss_blas_threshold_for",
    "default_nlist",
    "merge_shard_results",
    "INDEX_FILE",
    "AUTO_EXACT_MAX_ITEMS",
]

INDEX_FILE, FAISS_FILE, EMBEDDINGS_FILE, IDS_FILE = "index.json", "index.faiss", "embeddings.npy", "ids.json"
FORMAT = "ccr-retrieval-index"
FORMAT_VERSION = 1

# Search-time defaults, measured by benchmarks/bench_index.py on the 2-core dev machine while other
# jobs shared it (numbers in docs/scaling.md):
# OpenMP threads of this index's FAISS calls (None: FAISS's default, all cores). With 2 threads on
# the shared 2-core machine, searches were slower at every batch size and IVF-PQ training 7x slower.
DEFAULT_NUM_THREADS = 1
DEFAULT_BLAS_MIN_QUERIES = 2  # batches of >= 2 queries take the BLAS path (1 thread: BLAS wins from 2-3)
# ExactIndex(backend="auto") hands batches of >= this many queries to faiss.knn (0: never; NumPy answers all).
# 0 since 2026-11-23: on the quiet 2-core machine NumPy's 2-thread BLAS answered a batch of 10 over 100k x 384
# in 15.9 ms against faiss.knn's 23.8 ms on 1 thread (FAISS on 2 threads collapses when a core is busy). While
# other jobs loaded the machine the order flipped (52 vs 40 ms); the dashboard's machine is normally quiet.
DEFAULT_AUTO_FAISS_MIN_QUERIES = 0
# Galleries below this size get the exact index from build_index(kind="auto"): an exact single query
# cost 0.07-0.13 ms per 1,000 items at 384-d across runs (0.081 recorded), so 250k items stay near
# the 20 ms interactive budget.
AUTO_EXACT_MAX_ITEMS = 250_000
DEFAULT_NPROBE = 64  # IVF lists probed. 1M items, nlist 1024: recall@10 0.962 at 8 on the clustered set but 0.874 at 64 (0.965 at 128) on the hard one; ~4 ms
DEFAULT_HNSW_M = 32  # HNSW graph degree
DEFAULT_HNSW_EF_CONSTRUCTION = 80  # build-time beam width
DEFAULT_HNSW_EF_SEARCH = 64  # search-time beam width
DEFAULT_PQ_M = 48  # PQ sub-quantisers: 48 bytes per vector at 8 bits (384-d -> 8 dims per sub-vector)
DEFAULT_PQ_NBITS = 8
TRAIN_POINTS_PER_LIST = 64  # k-means training sample = 64 x nlist points (FAISS warns below 39)
NORM_TOLERANCE = 1e-3  # | ||row|| - 1 | allowed on add
_QUERY_CHUNK_ELEMENTS = 1 << 25  # NumPy/torch backends: at most 32M scores (128 MiB) in memory at once
_FAISS_LOCK = threading.RLock()


# --------------------------------------------------------------------------------------------------
# errors and configuration


class RetrievalIndexError(ValueError):
    """A saved index is missing, incomplete, corrupt, or cannot be used as asked."""


class IndexMismatchError(RetrievalIndexError):
    """A saved index was built for another embedding model (identity differs) or has another kind."""


class IndexCorruptError(RetrievalIndexError):
    """A saved index file is missing, truncated, or its content hash differs from index.json."""


class EmptyIndexError(RetrievalIndexError):
    """Searching an index that holds no items."""


@dataclass
class IndexConfig:
    """What is saved next to every index, together with the embedding model's identity."""

    kind: str  # "exact" | "ivf" | "hnsw" | "ivfpq"
    dim: int  # embedding dimension
    metric: str = "inner_product"  # always inner product over L2-normalised rows (= cosine)
    params: dict[str, Any] = field(default_factory=dict)  # kind-specific, see each class's defaults


def _require_faiss(what: str) -> None:
    if faiss is None:
        raise ImportError(f"{what} needs faiss-cpu (pip install faiss-cpu); ExactIndex(backend='numpy') works without it")


def _faiss_version() -> tuple[int, ...]:
    parts = []
    for piece in str(getattr(faiss, "__version__", "0")).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def faiss_blas_threshold_for(min_queries: int, dim: int) -> int:
    """The value of ``faiss.cvar.distance_compute_blas_threshold`` that sends batches of at least
    ``min_queries`` queries of dimension ``dim`` to BLAS and smaller ones to the SIMD scan.

    faiss-cpu >= 1.15 compares ``n_queries * dim`` with the threshold (facebookresearch/faiss#5022);
    older releases compare ``n_queries``.
    """
    if min_queries < 1:
        raise ValueError(f"min_queries must be >= 1, got {min_queries}")
    return int(min_queries) * int(dim) if _faiss_version() >= (1, 15) else int(min_queries)


@contextlib.contextmanager
def faiss_settings(num_threads: int | None = None, blas_threshold: int | None = None) -> Iterator[None]:
    """Set FAISS's OpenMP thread count and BLAS threshold for the block, then restore both.

    ``None`` leaves a setting as it is. The block holds a process-wide lock, because both settings
    are globals: concurrent searches from several Python threads run one after the other.
    """
    _require_faiss("faiss_settings")
    with _FAISS_LOCK:
        old_threads = faiss.omp_get_max_threads()
        old_threshold = faiss.cvar.distance_compute_blas_threshold
        try:
            if num_threads is not None:
                faiss.omp_set_num_threads(int(num_threads))
            if blas_threshold is not None:
                faiss.cvar.distance_compute_blas_threshold = int(blas_threshold)
            yield
        finally:
            faiss.cvar.distance_compute_blas_threshold = old_threshold
            faiss.omp_set_num_threads(old_threads)


# --------------------------------------------------------------------------------------------------
# input handling


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def l2_normalise(x: Any) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm, as contiguous float32 (zero rows are an error)."""
    x = np.ascontiguousarray(_to_numpy(x), dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("cannot L2-normalise an all-zero row")
    return x / norms


def _as_matrix(x: Any, dim: int | None, what: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, dim) matrix (a 1-D vector is one row), checked."""
    arr = _to_numpy(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (n, dim) matrix, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]}, but the index has dimension {dim}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} must not be empty (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{what} contain NaN or infinite values (first in row {bad})")
    return arr


def _check_normalised(emb: np.ndarray) -> None:
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb))  # (n,)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(f"embeddings must be L2-normalised (inner product = cosine); row {row} has norm "
                         f"{norms[row]:.4g}. Use ccr_core.index.l2_normalise first.")


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    if n == 0:
        raise EmptyIndexError("the index is empty: add embeddings before searching")
    return min(int(k), n)  # documented: k larger than the index is clamped to its size


# --------------------------------------------------------------------------------------------------
# exact top-k with the tie rule


def _sort_rows(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by descending score, ties by ascending id; id -1 (missing) goes last."""
    missing = ids < 0
    keyed_scores = np.where(missing, -np.inf, scores)
    keyed_ids = np.where(missing, np.iinfo(np.int64).max, ids)
    order = np.lexsort((keyed_ids, -keyed_scores), axis=-1)  # (Q, k)
    return (np.take_along_axis(keyed_scores, order, 1).astype(np.float32, copy=False),
            np.take_along_axis(ids, order, 1).astype(np.int64, copy=False))


def _row_topk_with_ties(row: np.ndarray, k: int) -> np.ndarray:
    """The ids of the top ``k`` of one score row under the tie rule (boundary ties -> lower ids)."""
    kth = np.partition(row, row.size - k)[row.size - k]
    above = np.flatnonzero(row > kth)
    equal = np.flatnonzero(row == kth)[: k - above.size]
    return np.concatenate([above, equal])


def _topk_numpy(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of ``sims`` (Q, N) under the tie rule: (scores (Q, k), ids (Q, k))."""
    n = sims.shape[1]
    if k == n:
        ids = np.broadcast_to(np.arange(n), sims.shape).copy()  # (Q, N)
        return _sort_rows(sims.copy(), ids)
    # Position n-k-1 holds the (k+1)-th largest score, positions n-k.. the k largest (any order).
    part = np.argpartition(sims, n - k - 1, axis=1)  # (Q, N)
    ids = part[:, n - k:].copy()  # (Q, k)
    scores = np.take_along_axis(sims, ids, 1)  # (Q, k)
    next_best = np.take_along_axis(sims, part[:, n - k - 1: n - k], 1)[:, 0]  # (Q,)
    # Only when the (k+1)-th equals the k-th did argpartition choose among tied items: redo those rows.
    for r in np.flatnonzero(next_best == scores.min(axis=1)):
        ids[r] = _row_topk_with_ties(sims[r], k)
        scores[r] = sims[r, ids[r]]
    return _sort_rows(scores, ids)


# --------------------------------------------------------------------------------------------------
# the interface


class RetrievalIndex:
    """Base class: item ids, validation, search_many, save/load. Subclasses implement the search."""

    kind = ""
    _data_file = FAISS_FILE

    def __init__(self, dim: int, model_identity: dict | None = None, **params: Any):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self._dim = int(dim)
        self.model_identity = dict(model_identity) if model_identity is not None else None
        self.params: dict[str, Any] = {"num_threads": DEFAULT_NUM_THREADS, "blas_min_queries": DEFAULT_BLAS_MIN_QUERIES,
                                       "auto_faiss_min_queries": DEFAULT_AUTO_FAISS_MIN_QUERIES}
        self.params.update(params)
        self._item_ids: list[str] | None = []  # None once rows were added without ids
        self._read_only = False
        self._source: Path | None = None

    # ---- what every kind shares

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def config(self) -> IndexConfig:
        return IndexConfig(kind=self.kind, dim=self.dim, params=dict(self.params))

    @property
    def item_ids(self) -> list[str] | None:
        """The caller's id of each row (row i = item_ids[i]), or None when added without ids."""
        return self._item_ids

    def __len__(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, items={len(self)}, params={self.params})"

    def add(self, emb: Any, ids: Sequence[str] | None = None) -> None:
        """Append L2-normalised rows ``emb`` (n, dim); ``ids`` are the caller's item ids (optional,
        but given for every add or for none)."""
        if self._read_only:
            raise RetrievalIndexError(f"{self!r} was memory-mapped from {self._source} and is read-only; "
                                      "load it with mmap=False to add items")
        emb = _as_matrix(emb, self.dim, "embeddings")
        _check_normalised(emb)
        if ids is not None:
            ids = [str(i) for i in ids]
            if len(ids) != emb.shape[0]:
                raise ValueError(f"got {len(ids)} ids for {emb.shape[0]} embeddings")
            if self._item_ids is None:
                raise ValueError("ids must be given for every add or for none (earlier rows have no ids)")
        elif len(self) and self._item_ids:
            raise ValueError("ids must be given for every add or for none (earlier rows have ids)")
        self._add(emb)
        if ids is None:
            self._item_ids = None
        else:
            self._item_ids = (self._item_ids or []) + ids

    def search(self, queries: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items of each query: ``scores`` (Q, k') float32 and ``ids`` (Q, k') int64 with
        ``k' = min(k, len(self))``, best first (see the module docstring for ties and -1 ids)."""
        k = _check_k(k, len(self))
        queries = _as_matrix(queries, self.dim, "queries")  # (Q, D)
        return self._search(queries, k)

    def search_many(self, batches: Sequence[Any], k: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
        """Search several query batches (e.g. every method x language of one user action) in one
        call, so that they share one pass over the gallery; returns one (scores, ids) per batch."""
        if not batches:
            return []
        k = _check_k(k, len(self))
        mats = [_as_matrix(b, self.dim, f"queries of batch {i}") for i, b in enumerate(batches)]
        scores, ids = self._search(np.concatenate(mats, axis=0), k)  # (sum Q, k)
        bounds = np.cumsum([m.shape[0] for m in mats])[:-1]
        return list(zip(np.split(scores, bounds), np.split(ids, bounds)))

    def nbytes(self) -> int:
        """Bytes of the index's data structure (vectors, codes, lists, graph), as saved."""
        raise NotImplementedError

    # ---- subclass hooks

    def _add(self, emb: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _write_data(self, path: Path) -> None:
        raise NotImplementedError

    def _read_data(self, path: Path, mmap: bool) -> None:
        raise NotImplementedError

    def _blas_threshold(self) -> int:
        return faiss_blas_threshold_for(int(self.params["blas_min_queries"]), self.dim)

    # ---- persistence

    def save(self, folder: str | os.PathLike, model_identity: dict | None = None) -> Path:
        """Write the index into ``folder`` (see the module docstring); returns the folder.

        ``model_identity`` (or the one given at construction) is required: a dict naming the model
        that produced the embeddings, e.g. ``{"method": ..., "checkpoint_sha256": ..., "backbone": ...}``.
        """
        identity = model_identity if model_identity is not None else self.model_identity
        if not identity:
            raise ValueError("save() needs the embedding model's identity (a dict, e.g. method name, checkpoint "
                             "hash and backbone identity), so that the index is never paired with another model")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = [self._data_file]
        with atomic_path(folder / self._data_file) as tmp:
            self._write_data(tmp)
        if self._item_ids:
            write_json_atomic(folder / IDS_FILE, self._item_ids)
            files.append(IDS_FILE)
        else:
            with contextlib.suppress(FileNotFoundError):
                (folder / IDS_FILE).unlink()  # a stale ids file of an earlier index
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "model_identity": identity,
            "count": len(self),
            "has_ids": bool(self._item_ids),
            "files": {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)} for name in files},
            "faiss_version": getattr(faiss, "__version__", None),
        }
        write_json_atomic(folder / INDEX_FILE, meta)  # last: its presence marks a complete index
        self.model_identity = dict(identity)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, model_identity: dict | None, mmap: bool = True, verify: bool = True) -> "RetrievalIndex":
        """Load an index saved by :meth:`save`.

        Args:
            folder: the index folder.
            model_identity: the identity of the model whose embeddings will query it; an index saved
                with another identity raises :class:`IndexMismatchError`. ``None`` skips the check
                (inspection tools only).
            mmap: memory-map the data instead of reading it (the index is then read-only).
            verify: check each file's SHA-256 (sizes are always checked).
        Returns:
            The index, of the class recorded in ``index.json`` (``cls`` must be it or this base).
        """
        folder = Path(folder)
        meta_path = folder / INDEX_FILE
        if not meta_path.is_file():
            raise RetrievalIndexError(f"{folder} is not a saved index (no {INDEX_FILE}; an interrupted save leaves none)")
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise RetrievalIndexError(f"{meta_path} is not a {FORMAT} file")
        if meta.get("format_version") != FORMAT_VERSION:
            raise RetrievalIndexError(f"{meta_path} has format version {meta.get('format_version')}, this code reads {FORMAT_VERSION}")
        config = IndexConfig(**meta["config"])
        kinds = {c.kind: c for c in (ExactIndex, IVFIndex, HNSWIndex, IVFPQIndex)}
        if config.kind not in kinds:
            raise RetrievalIndexError(f"{meta_path}: unknown index kind {config.kind!r}")
        klass = kinds[config.kind]
        if cls is not RetrievalIndex and cls is not klass:
            raise IndexMismatchError(f"{folder} holds a {config.kind!r} index, not a {cls.kind!r} index")
        if model_identity is not None and meta.get("model_identity") != model_identity:
            raise IndexMismatchError(f"{folder} was built for another embedding model:\n"
                                     f"{_identity_diff(meta.get('model_identity') or {}, model_identity)}\n"
                                     "rebuild the index with this model's embeddings")
        files = meta.get("files")
        if not isinstance(files, dict):
            raise IndexCorruptError(f"{meta_path} does not record the size and SHA-256 of its files")
        for name, info in files.items():
            path = folder / name
            if not path.is_file():
                raise IndexCorruptError(f"{path} is missing")
            size = path.stat().st_size
            if size != info["bytes"]:
                raise IndexCorruptError(f"{path} has {size} bytes, index.json records {info['bytes']} (truncated or replaced)")
            if verify and sha256_file(path) != info["sha256"]:
                raise IndexCorruptError(f"{path}: SHA-256 differs from index.json (modified or corrupt)")
        index = klass(config.dim, model_identity=meta.get("model_identity"), **config.params)
        unlisted = [name for name in (index._data_file, IDS_FILE if meta.get("has_ids") else None) if name and name not in files]
        if unlisted:  # a file index.json does not hash would be read unverified
            raise IndexCorruptError(f"{meta_path} does not record the size and SHA-256 of {', '.join(unlisted)}")
        try:
            index._read_data(folder / index._data_file, mmap)
        except (RuntimeError, ValueError, OSError) as exc:
            raise IndexCorruptError(f"{folder / index._data_file} could not be read: {exc}") from exc
        if len(index) != meta["count"]:
            raise IndexCorruptError(f"{folder}: the index holds {len(index)} items, index.json records {meta['count']}")
        if meta.get("has_ids"):
            ids = read_json(folder / IDS_FILE)
            if not isinstance(ids, list) or len(ids) != meta["count"]:
                raise IndexCorruptError(f"{folder / IDS_FILE} does not hold {meta['count']} ids")
            index._item_ids = [str(i) for i in ids]
        else:
            index._item_ids = None if meta["count"] else []
        index._read_only = mmap
        index._source = folder
        return index


def _identity_diff(saved: dict, wanted: dict) -> str:
    keys = sorted(set(saved) | set(wanted))
    lines = [f"  {key}: index has {saved.get(key)!r}, model has {wanted.get(key)!r}" for key in keys if saved.get(key) != wanted.get(key)]
    return "\n".join(lines) or "  (identities differ)"


def load_index(folder: str | os.PathLike, model_identity: dict | None, mmap: bool = True, verify: bool = True) -> RetrievalIndex:
    """Load any saved index; see :meth:`RetrievalIndex.load`."""
    return RetrievalIndex.load(folder, model_identity, mmap=mmap, verify=verify)


# --------------------------------------------------------------------------------------------------
# exact


class ExactIndex(RetrievalIndex):
    """Exhaustive inner-product search.

    ``backend``: ``"faiss"`` (``IndexFlatIP``), ``"numpy"`` (matmul + ``argpartition``), ``"torch"``
    (matmul + ``topk``), or ``"auto"`` (the default): the vectors live in a NumPy array (saved as
    ``embeddings.npy``, memory-mappable) and are searched with NumPy's matrix product, which uses
    every core without FAISS's OpenMP; with ``auto_faiss_min_queries`` > 0 (default 0: off), batches
    of at least that many queries go to ``faiss.knn`` over the array instead (one BLAS product on
    ``num_threads`` threads), faster only while the machine was busy (DEFAULT_AUTO_FAISS_MIN_QUERIES,
    docs/scaling.md); a matmul over FAISS-owned memory
    (``backend="faiss"``) was ~30 % slower than over a NumPy array. Without faiss, "auto" is "numpy". All backends give the
    same ids under the tie rule of the module docstring; scores may differ in the last bits.
    """

    kind = "exact"

    def __init__(self, dim: int, model_identity: dict | None = None, backend: str = "auto", **params: Any):
        if backend not in ("auto", "faiss", "numpy", "torch"):
            raise ValueError(f"backend must be 'auto', 'faiss', 'numpy' or 'torch', got {backend!r}")
        if backend == "auto" and faiss is None:
            backend = "numpy"
        if backend == "faiss":
            _require_faiss("ExactIndex(backend='faiss')")
        super().__init__(dim, model_identity, backend=backend, **params)
        self._data_file = FAISS_FILE if backend == "faiss" else EMBEDDINGS_FILE
        self._faiss = faiss.IndexFlatIP(self.dim) if backend == "faiss" else None
        self._chunks: list[np.ndarray] = []  # numpy / torch: added blocks, joined on first search
        self._emb: np.ndarray | None = None  # (N, D) numpy / torch
        self._torch_emb = None

    @property
    def backend(self) -> str:
        return self.params["backend"]

    def __len__(self) -> int:
        if self._faiss is not None:
            return int(self._faiss.ntotal)
        return sum(c.shape[0] for c in self._chunks) + (0 if self._emb is None else self._emb.shape[0])

    def embeddings(self) -> np.ndarray:
        """The stored rows (N, D) float32 -- a view, not a copy (read-only when memory-mapped)."""
        if self._faiss is not None:
            n = int(self._faiss.ntotal)
            if n == 0:
                return np.zeros((0, self.dim), np.float32)
            return faiss.rev_swig_ptr(self._faiss.get_xb(), n * self.dim).reshape(n, self.dim)
        if self._chunks:
            parts = ([self._emb] if self._emb is not None else []) + self._chunks
            self._emb = np.ascontiguousarray(np.concatenate(parts, axis=0))
            self._chunks = []
            self._torch_emb = None
        return self._emb if self._emb is not None else np.zeros((0, self.dim), np.float32)

    def nbytes(self) -> int:
        return len(self) * self.dim * 4

    def _add(self, emb: np.ndarray) -> None:
        if self._faiss is not None:
            self._faiss.add(emb)
        else:
            self._chunks.append(emb.copy())

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "faiss":
            return self._search_faiss(queries, k)
        emb = self.embeddings()  # (N, D)
        to_faiss = int(self.params.get("auto_faiss_min_queries", DEFAULT_AUTO_FAISS_MIN_QUERIES))
        if self.backend == "auto" and 0 < to_faiss <= queries.shape[0]:
            # FAISS's brute-force k-NN over our own array: one BLAS product, heap top-k
            n = emb.shape[0]
            with faiss_settings(self.params["num_threads"], self._blas_threshold()):
                scores, ids = faiss.knn(queries, emb, min(k + 1, n), metric=faiss.METRIC_INNER_PRODUCT)  # (Q, k+1)
            return _finish_exact(scores, ids, k, lambda r: (queries[r] @ emb.T))
        backend = "numpy" if self.backend == "auto" else self.backend
        n = emb.shape[0]
        rows = max(1, _QUERY_CHUNK_ELEMENTS // n)  # queries per chunk, bounding the (rows, N) scores
        out = [self._search_matmul(emb, queries[i: i + rows], k, backend) for i in range(0, queries.shape[0], rows)]
        return np.concatenate([s for s, _ in out]), np.concatenate([i for _, i in out])

    def _search_matmul(self, emb: np.ndarray, queries: np.ndarray, k: int, backend: str) -> tuple[np.ndarray, np.ndarray]:
        if backend == "numpy":
            return _topk_numpy(queries @ emb.T, k)  # (Q, N) -> (Q, k)
        import torch

        if self._torch_emb is None:
            with warnings.catch_warnings():  # a read-only memmap: torch warns, but nothing writes to it
                warnings.simplefilter("ignore", UserWarning)
                self._torch_emb = torch.from_numpy(emb)
        sims = torch.from_numpy(queries) @ self._torch_emb.T  # (Q, N)
        n = sims.shape[1]
        top = torch.topk(sims, min(k + 1, n), dim=1)  # sorted; topk's order among ties is unspecified
        scores, ids = top.values.numpy(), top.indices.numpy()  # (Q, k+1)
        return _finish_exact(scores, ids, k, lambda r: (queries[r] @ emb.T))

    def _search_faiss(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        with faiss_settings(self.params["num_threads"], self._blas_threshold()):
            scores, ids = self._faiss.search(queries, min(k + 1, n))  # (Q, k+1)
        emb = self.embeddings()
        return _finish_exact(scores, ids, k, lambda r: (queries[r] @ emb.T))

    def _write_data(self, path: Path) -> None:
        if self._faiss is not None:
            faiss.write_index(self._faiss, str(path))
        else:
            with open(path, "wb") as handle:  # np.save(path) would append ".npy" to the temp name
                np.save(handle, self.embeddings())

    def _read_data(self, path: Path, mmap: bool) -> None:
        if self._faiss is not None:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
            if not isinstance(index, faiss.IndexFlatIP):
                raise ValueError(f"expected an IndexFlatIP, found {type(index).__name__}")
            self._faiss = index
        else:
            emb = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            if emb.ndim != 2 or emb.shape[1] != self.dim or emb.dtype != np.float32:
                raise ValueError(f"expected a float32 (N, {self.dim}) array, found {emb.dtype} {emb.shape}")
            self._emb, self._chunks = emb, []


def _finish_exact(scores: np.ndarray, ids: np.ndarray, k: int, row_scores) -> tuple[np.ndarray, np.ndarray]:
    """From the sorted top ``k+1`` (or top ``k`` when k = N) of each query to the top ``k`` under the
    tie rule; a row whose k-th and (k+1)-th scores are equal is recomputed by ``row_scores(r)``."""
    if scores.shape[1] > k:
        boundary_tie = np.flatnonzero(scores[:, k - 1] == scores[:, k])
        scores, ids = scores[:, :k].copy(), ids[:, :k].copy()  # (Q, k)
        for r in boundary_tie:
            row = np.asarray(row_scores(r), dtype=np.float32)  # (N,)
            ids[r] = _row_topk_with_ties(row, k)
            scores[r] = row[ids[r]]
    return _sort_rows(scores, ids)


# --------------------------------------------------------------------------------------------------
# approximate (FAISS)


def default_nlist(n_items: int) -> int:
    """IVF lists for ``n_items``: the power of two nearest to sqrt(n), between 16 and 65,536
    (1M items -> 1,024 lists of ~1,000 items each)."""
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    return int(min(65536, max(16, 2 ** round(math.log2(math.sqrt(n_items))))))


class _FaissApproxIndex(RetrievalIndex):
    """Shared code of the approximate FAISS indexes: build, train on first add, search, save."""

    def __init__(self, dim: int, model_identity: dict | None = None, **params: Any):
        _require_faiss(type(self).__name__)
        super().__init__(dim, model_identity, **params)
        self._faiss = None  # built lazily for IVF kinds (nlist may come from the first add)

    def __len__(self) -> int:
        return 0 if self._faiss is None else int(self._faiss.ntotal)

    def _make(self, n_first: int):
        raise NotImplementedError

    def _apply_search_params(self, k: int) -> None:
        raise NotImplementedError

    def train(self, sample: Any) -> None:
        """Train the coarse quantiser (and PQ codebooks) on ``sample``; ``add`` does it with a
        seeded sample of its first batch when this was not called."""
        sample = _as_matrix(sample, self.dim, "training sample")
        _check_normalised(sample)
        if self._faiss is None:
            self._faiss = self._make(sample.shape[0])
        if not self._faiss.is_trained:
            self._train(sample)

    def _train(self, sample: np.ndarray) -> None:
        nlist = int(self.params.get("nlist", 1))
        if sample.shape[0] < nlist:
            raise ValueError(f"training needs at least nlist={nlist} vectors, got {sample.shape[0]}; use fewer lists "
                             f"(default_nlist) or an ExactIndex for a gallery this small")
        limit = int(self.params.get("train_size") or self._default_train_size())
        if sample.shape[0] > limit:
            pick = np.sort(np.random.default_rng(0).choice(sample.shape[0], limit, replace=False))
            sample = sample[pick]
        with faiss_settings(self.params["num_threads"]):
            self._faiss.train(sample)

    def _default_train_size(self) -> int:
        return TRAIN_POINTS_PER_LIST * int(self.params.get("nlist", 1))

    def _add(self, emb: np.ndarray) -> None:
        if self._faiss is None:
            self._faiss = self._make(emb.shape[0])
        if not self._faiss.is_trained:
            self._train(emb)
        with faiss_settings(self.params["num_threads"]):
            self._faiss.add(emb)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._apply_search_params(k)
        with faiss_settings(self.params["num_threads"], self._blas_threshold()):
            scores, ids = self._faiss.search(queries, k)  # (Q, k)
        return _sort_rows(scores, ids)

    def nbytes(self) -> int:
        return 0 if self._faiss is None else self._estimated_nbytes()

    def _estimated_nbytes(self) -> int:
        raise NotImplementedError

    def _write_data(self, path: Path) -> None:
        if self._faiss is None:
            self._faiss = self._make(1)
        faiss.write_index(self._faiss, str(path))

    def _read_flags(self, mmap: bool) -> int:
        return faiss.IO_FLAG_MMAP if mmap else 0

    def _read_data(self, path: Path, mmap: bool) -> None:
        index = faiss.read_index(str(path), self._read_flags(mmap))
        expected = self._faiss_class()
        if not isinstance(index, expected):
            raise ValueError(f"expected a {expected.__name__}, found {type(index).__name__}")
        self._faiss = index

    def _faiss_class(self):
        raise NotImplementedError


class IVFIndex(_FaissApproxIndex):
    """IVF-Flat: a k-means coarse quantiser with ``nlist`` lists (default :func:`default_nlist` of
    the first batch added); a query scans the ``nprobe`` nearest lists exactly. Memory = the float32
    vectors + 8-byte ids; memory-mappable."""

    kind = "ivf"

    def __init__(self, dim: int, model_identity: dict | None = None, nlist: int | None = None, nprobe: int = DEFAULT_NPROBE,
                 train_size: int | None = None, **params: Any):
        super().__init__(dim, model_identity, nlist=nlist, nprobe=int(nprobe), train_size=train_size, **params)

    @property
    def nprobe(self) -> int:
        return int(self.params["nprobe"])

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"nprobe must be >= 1, got {value}")
        self.params["nprobe"] = int(value)

    def _make(self, n_first: int):
        if self.params["nlist"] is None:
            self.params["nlist"] = default_nlist(n_first)
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, int(self.params["nlist"]), faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()  # the IVF index owns (and frees) the quantiser
        return index

    def _faiss_class(self):
        return faiss.IndexIVFFlat

    def _apply_search_params(self, k: int) -> None:
        self._faiss.nprobe = min(self.nprobe, int(self._faiss.nlist))

    def _estimated_nbytes(self) -> int:
        return len(self) * (self.dim * 4 + 8) + int(self._faiss.nlist) * self.dim * 4


class IVFPQIndex(IVFIndex):
    """IVF-PQ: IVF lists holding ``pq_m``-byte product-quantised codes (8 bits per sub-quantiser),
    for galleries whose float32 vectors do not fit in memory. Scores are approximate (PQ
    reconstruction), so recall is lower than IVF-Flat at the same nprobe."""

    kind = "ivfpq"

    def __init__(self, dim: int, model_identity: dict | None = None, nlist: int | None = None, nprobe: int = DEFAULT_NPROBE,
                 pq_m: int = DEFAULT_PQ_M, pq_nbits: int = DEFAULT_PQ_NBITS, train_size: int | None = None, **params: Any):
        if dim % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the dimension {dim}")
        super().__init__(dim, model_identity, nlist=nlist, nprobe=nprobe, train_size=train_size, pq_m=int(pq_m), pq_nbits=int(pq_nbits), **params)

    def _make(self, n_first: int):
        if self.params["nlist"] is None:
            self.params["nlist"] = default_nlist(n_first)
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, int(self.params["nlist"]), int(self.params["pq_m"]),
                                 int(self.params["pq_nbits"]), faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()
        return index

    def _train(self, sample: np.ndarray) -> None:
        need = 2 ** int(self.params["pq_nbits"])
        if sample.shape[0] < need:
            raise ValueError(f"PQ training needs at least {need} vectors (2**pq_nbits), got {sample.shape[0]}")
        super()._train(sample)

    def _default_train_size(self) -> int:  # the PQ codebooks (2**nbits centroids each) need a sample too
        return TRAIN_POINTS_PER_LIST * max(int(self.params["nlist"]), 2 ** int(self.params["pq_nbits"]))

    def _faiss_class(self):
        return faiss.IndexIVFPQ

    def _estimated_nbytes(self) -> int:
        ksub = 2 ** int(self.params["pq_nbits"])
        return len(self) * (int(self.params["pq_m"]) + 8) + int(self._faiss.nlist) * self.dim * 4 + self.dim * ksub * 4


class HNSWIndex(_FaissApproxIndex):
    """HNSW-Flat: a navigable small-world graph of degree ``M`` over the float32 vectors; no training.
    Memory = vectors + ~``2*M`` 4-byte links per item. The graph is read into memory on load (only the
    vectors are memory-mapped)."""

    kind = "hnsw"

    def __init__(self, dim: int, model_identity: dict | None = None, M: int = DEFAULT_HNSW_M,
                 ef_construction: int = DEFAULT_HNSW_EF_CONSTRUCTION, ef_search: int = DEFAULT_HNSW_EF_SEARCH, **params: Any):
        super().__init__(dim, model_identity, M=int(M), ef_construction=int(ef_construction), ef_search=int(ef_search), **params)
        self._faiss = self._make(0)

    def _make(self, n_first: int):
        index = faiss.IndexHNSWFlat(self.dim, int(self.params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(self.params["ef_construction"])
        return index

    def _train(self, sample: np.ndarray) -> None:  # HNSW needs no training
        pass

    def _faiss_class(self):
        return faiss.IndexHNSWFlat

    def _read_flags(self, mmap: bool) -> int:
        return faiss.IO_FLAG_MMAP_IFC if mmap else 0

    def _apply_search_params(self, k: int) -> None:
        # HNSW returns at most efSearch candidates, so a larger k widens the beam for this search
        self._faiss.hnsw.efSearch = max(int(self.params["ef_search"]), k)

    def _estimated_nbytes(self) -> int:
        return len(self) * (self.dim * 4 + 2 * int(self.params["M"]) * 4 + 8)


# --------------------------------------------------------------------------------------------------
# sharding


def merge_shard_results(results: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k results into the global top-k.

    Args:
        results: one ``(scores (Q, k_s), ids (Q, k_s))`` per shard, ids local to the shard.
        offsets: the global id of each shard's row 0 (shards hold consecutive item ranges).
        k: results wanted per query; every shard must have been searched with this ``k``.
    Returns:
        ``(scores (Q, k'), ids (Q, k'))`` with global ids, ``k' = min(k, total columns)``, under the
        module's tie rule -- so merging exact shards gives exactly the unsharded exact result.
    """
    if not results or len(results) != len(offsets):
        raise ValueError("need one offset per shard result, and at least one shard")
    scores = np.concatenate([np.asarray(s, np.float32) for s, _ in results], axis=1)  # (Q, sum k_s)
    ids = np.concatenate([np.where(np.asarray(i) >= 0, np.asarray(i, np.int64) + off, -1) for (_, i), off in zip(results, offsets)], axis=1)
    scores, ids = _sort_rows(scores, ids)
    return scores[:, :k], ids[:, :k]


# --------------------------------------------------------------------------------------------------
# choosing a kind


def build_index(embeddings: Any, kind: str = "auto", ids: Sequence[str] | None = None, model_identity: dict | None = None,
                **params: Any) -> RetrievalIndex:
    """Build an index over L2-normalised ``embeddings`` (N, D).

    ``kind="auto"`` picks :class:`ExactIndex` below ``AUTO_EXACT_MAX_ITEMS`` items and
    :class:`IVFIndex` (``default_nlist(N)`` lists, ``DEFAULT_NPROBE`` probes) from there on: IVF
    builds in a fraction of HNSW's time on few cores, can be memory-mapped, and met the 1M-item
    targets (docs/scaling.md). ``params`` go to the chosen class (e.g. ``nprobe=32``).
    """
    emb = _as_matrix(embeddings, None, "embeddings")
    classes = {"exact": ExactIndex, "ivf": IVFIndex, "hnsw": HNSWIndex, "ivfpq": IVFPQIndex}
    if kind == "auto":
        kind = "exact" if emb.shape[0] < AUTO_EXACT_MAX_ITEMS else "ivf"
    if kind not in classes:
        raise ValueError(f"kind must be 'auto' or one of {sorted(classes)}, got {kind!r}")
    index = classes[kind](emb.shape[1], model_identity=model_identity, **params)
    index.add(emb, ids)
    return index
