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
by ascending id -- the rule of :mod:`ccr_core.metrics`, so the rank of an item in an exact
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

from typing import Any, Sequence

from ccr_core.index.approximate import HNSWIndex, IVFIndex, IVFPQIndex, default_nlist
from ccr_core.index.base import (AUTO_EXACT_MAX_ITEMS, INDEX_FILE, EmptyIndexError, IndexConfig, IndexCorruptError, IndexMismatchError,
                                 RetrievalIndex, RetrievalIndexError, _as_matrix, faiss_blas_threshold_for, faiss_settings, l2_normalise,
                                 load_index, merge_shard_results, rank_in_scores, top_k_of_scores)
from ccr_core.index.base import faiss  # noqa: F401  (the faiss module, or None without faiss-cpu)
from ccr_core.index.base import (DEFAULT_AUTO_FAISS_MIN_QUERIES, DEFAULT_BLAS_MIN_QUERIES, DEFAULT_HNSW_EF_CONSTRUCTION,  # noqa: F401  (tuned
                                 DEFAULT_HNSW_EF_SEARCH, DEFAULT_HNSW_M, DEFAULT_NPROBE, DEFAULT_NUM_THREADS, DEFAULT_PQ_M,  # defaults and file
                                 DEFAULT_PQ_NBITS, EMBEDDINGS_FILE, FAISS_FILE, TRAIN_POINTS_PER_LIST)  # names, read by benchmarks/bench_index.py)
from ccr_core.index.exact import ExactIndex

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
    "top_k_of_scores",
    "rank_in_scores",
    "INDEX_FILE",
    "AUTO_EXACT_MAX_ITEMS",
]


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
