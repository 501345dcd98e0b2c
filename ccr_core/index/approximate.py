"""Approximate FAISS indexes for large galleries: IVF-Flat (:class:`IVFIndex`), IVF-PQ
(:class:`IVFPQIndex`) and HNSW-Flat (:class:`HNSWIndex`), all with the interface of
:class:`ccr_core.index.base.RetrievalIndex`."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ccr_core.index.base import (DEFAULT_HNSW_EF_CONSTRUCTION, DEFAULT_HNSW_EF_SEARCH, DEFAULT_HNSW_M, DEFAULT_NPROBE, DEFAULT_PQ_M,
                                 DEFAULT_PQ_NBITS, TRAIN_POINTS_PER_LIST, RetrievalIndex, _as_matrix, _check_normalised, _require_faiss,
                                 _sort_rows, faiss, faiss_settings)


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
