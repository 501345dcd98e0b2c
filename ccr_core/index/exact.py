"""Exhaustive inner-product search (:class:`ExactIndex`): the reference every other kind is
measured against, and what galleries up to ``AUTO_EXACT_MAX_ITEMS`` items use."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ccr_core.index.base import (DEFAULT_AUTO_FAISS_MIN_QUERIES, EMBEDDINGS_FILE, FAISS_FILE, RetrievalIndex, _QUERY_CHUNK_ELEMENTS,
                                 _as_matrix, _require_faiss, _row_topk_with_ties, _sort_rows, _topk_numpy, faiss, faiss_settings)


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

    @classmethod
    def over(cls, embeddings: Any, ids: Sequence[str] | None = None, **params: Any) -> "ExactIndex":
        """An exact index holding ``embeddings`` (N, D), L2-normalised float32 rows, e.g. a model's gallery:
        ``ExactIndex.over(image_emb).search(query_emb, k)`` gives the top-``k`` (scores, rows) per query
        under the tie rule (descending score, then ascending row), the order of :mod:`ccr_core.metrics`."""
        matrix = _as_matrix(embeddings, None, "embeddings")  # (N, D) float32, or a clear error
        index = cls(matrix.shape[1], **params)
        index.add(matrix, ids)
        return index

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
