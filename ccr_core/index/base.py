"""The interface every index kind shares (:class:`RetrievalIndex`: add, search, save, load with its
checks), its errors and saved layout, the FAISS thread and BLAS settings, the exact top-k under the tie
rule, and merging sharded results. The design is described in :mod:`ccr_core.index`."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ccr_core.io import atomic_path, read_json, sha256_file, write_json_atomic

try:  # FAISS is optional: without it only ExactIndex (NumPy / torch) is available
    import faiss
except ImportError:  # pragma: no cover - exercised on installs without faiss-cpu
    faiss = None

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
# 0 because on a quiet 2-core machine NumPy's 2-thread BLAS answered a batch of 10 over 100k x 384 in 15.9 ms
# against faiss.knn's 23.8 ms on 1 thread (FAISS on 2 threads collapses when a core is busy); only while other
# jobs loaded the machine did FAISS win (40 vs 52 ms), and the dashboard's machine is normally quiet.
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


def top_k_of_scores(scores: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores (Q, k'), ids (Q, k')) of score rows already computed, (Q, N) or (N,) for one query,
    under the exact index's tie rule (descending score, then ascending id); ``k' = min(k, N)``. What
    :class:`~ccr_core.index.ExactIndex` returns for the same rows, without computing them again.

    >>> top_k_of_scores(np.array([0.2, 0.9, 0.9, 0.1], np.float32), 2)[1].tolist()
    [[1, 2]]
    """
    sims = np.atleast_2d(np.asarray(scores, dtype=np.float32))  # (Q, N)
    return _topk_numpy(sims, _check_k(k, sims.shape[1]))


def rank_in_scores(scores: Any, target: int) -> int:
    """1-based rank of item ``target`` in one query's score row (N,) under the tie rule: one more than the
    items scoring higher plus the tied items with a lower id (the rank :mod:`ccr_core.metrics` gives).

    >>> rank_in_scores(np.array([0.5, 0.9, 0.5, 0.1], np.float32), 2)
    3
    """
    row = np.asarray(scores, dtype=np.float32).reshape(-1)  # (N,)
    if not 0 <= target < row.size:
        raise IndexError(f"target {target} is not a row of {row.size} scores")
    own = row[target]
    return int(np.count_nonzero(row > own) + np.count_nonzero(row[:target] == own) + 1)


# --------------------------------------------------------------------------------------------------
# the interface


class RetrievalIndex:
    """Base class: item ids, validation, search_many, save/load. Subclasses implement the search."""

    kind = ""
    kinds: dict[str, type] = {}  # kind name -> class, filled as each kind's class is defined (load picks by it)
    _data_file = FAISS_FILE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            RetrievalIndex.kinds[cls.kind] = cls

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
        kinds = RetrievalIndex.kinds
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
