"""Tests of ccr_core.index: exact search against a brute-force NumPy reference (stable tie rule),
approximate recall against exact search, save/load integrity, input validation, and that the FAISS
globals an index touches are restored."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ccr_core import index as ix
from ccr_core.index import (rank_in_scores, top_k_of_scores,
    EmptyIndexError,
    ExactIndex,
    HNSWIndex,
    IndexCorruptError,
    IndexMismatchError,
    IVFIndex,
    IVFPQIndex,
    RetrievalIndexError,
    build_index,
    l2_normalise,
    load_index,
)

faiss = pytest.importorskip("faiss")

BACKENDS = ["auto", "faiss", "numpy", "torch"]
IDENTITY = {"method": "baseline", "checkpoint_sha256": "ab" * 32, "backbone": {"name": "tiny", "dim": 37}}


def reference_topk(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: every score, stable sort on descending score (ties -> lower id), first k."""
    sims = queries.astype(np.float64) @ gallery.astype(np.float64).T  # (Q, N)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # (Q, k)
    return np.take_along_axis(sims, order, 1), order


def lattice_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors with 16 entries of +-1/4 and zeros elsewhere: every inner product is a multiple
    of 1/16, computed exactly in float32 in any summation order, so ties are real ties in every
    backend (FAISS SIMD, BLAS, NumPy, torch)."""
    out = np.zeros((n, dim), np.float32)
    for row in out:
        row[rng.choice(dim, 16, replace=False)] = rng.choice([-0.25, 0.25], 16)
    return out


def clustered(rng: np.random.Generator, n: int, dim: int, n_clusters: int) -> np.ndarray:
    centres = l2_normalise(rng.standard_normal((n_clusters, dim)))  # (C, D)
    assign = rng.integers(0, n_clusters, n)
    return l2_normalise(centres[assign] + 0.1 * rng.standard_normal((n, dim), dtype=np.float32))  # (n, D)


# --------------------------------------------------------------------------------------------------
# exact search


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,dim,n_queries,k", [(1, 37, 3, 1), (97, 37, 5, 10), (1013, 37, 17, 7), (2003, 37, 2, 2003)])
def test_exact_equals_brute_force_with_ties(backend, n, dim, n_queries, k):
    rng = np.random.default_rng(n + k)
    gallery = lattice_vectors(rng, n, dim)
    gallery[n // 2:: 7] = gallery[0]  # deliberate duplicates: exact ties at every rank
    queries = np.concatenate([gallery[:1], lattice_vectors(rng, n_queries - 1, dim)])
    index = ExactIndex(dim, backend=backend)
    index.add(gallery)
    scores, ids = index.search(queries, k)
    want_scores, want_ids = reference_topk(gallery, queries, k)
    assert ids.shape == scores.shape == (n_queries, min(k, n))
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_equals_brute_force_continuous(backend):
    rng = np.random.default_rng(7)
    gallery = l2_normalise(rng.standard_normal((3001, 65)))
    queries = l2_normalise(rng.standard_normal((23, 65)))
    index = ExactIndex(65, backend=backend)
    for part in np.array_split(gallery, 3):  # several adds
        index.add(part)
    for k in (1, 10, 50):
        scores, ids = index.search(queries, k)
        want_scores, want_ids = reference_topk(gallery, queries, k)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_topk_fixes_only_boundary_ties():
    sims = np.array([[0.5, 0.9, 0.5, 0.5, 0.1], [0.3, 0.3, 0.3, 0.3, 0.3]], np.float32)
    scores, ids = ix.base._topk_numpy(sims, 2)
    np.testing.assert_array_equal(ids, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(scores, np.float32([[0.9, 0.5], [0.3, 0.3]]))



def test_top_k_of_scores_and_rank_in_scores_follow_the_exact_index():
    """Top-k and rank from one computed score row equal ExactIndex.search and the metrics' rank, ties included."""
    from ccr_core.metrics import text_to_image_ranks

    rng = np.random.default_rng(3)
    gallery = ix.l2_normalise(rng.standard_normal((40, 16)).astype(np.float32))
    gallery[[5, 17, 30]] = gallery[9]  # four identical images: tied scores in every row
    queries = ix.l2_normalise(rng.standard_normal((6, 16)).astype(np.float32))
    queries[0] = gallery[9]  # the tied group at the top
    index = ExactIndex.over(gallery, backend="numpy")
    for q in queries:
        row = q[None, :] @ gallery.T  # (1, N)
        for k in (1, 2, 3, 7, 40, 99):
            scores, ids = top_k_of_scores(row[0], k)
            want_scores, want_ids = index.search(q[None, :], k)
            np.testing.assert_array_equal(ids, want_ids)
            np.testing.assert_array_equal(scores, want_scores)
        ranks = [rank_in_scores(row[0], t) for t in range(40)]
        np.testing.assert_array_equal(ranks, text_to_image_ranks(np.repeat(row, 40, 0), np.arange(40)))
        assert sorted(ranks) == list(range(1, 41))  # a permutation: ties broken by the lower row
    assert [rank_in_scores(queries[0] @ gallery.T, t) for t in (9, 5, 17, 30)] == [2, 1, 3, 4]
    with pytest.raises(IndexError):
        rank_in_scores(np.zeros(3, np.float32), 3)


def test_k_is_clamped_and_validated():
    index = ExactIndex(8, backend="numpy")
    with pytest.raises(EmptyIndexError):
        index.search(np.ones(8, np.float32), 1)
    index.add(l2_normalise(np.eye(8)[:3]))
    scores, ids = index.search(l2_normalise(np.ones((2, 8))), 10)
    assert ids.shape == (2, 3)  # k > n -> n columns
    for bad in (0, -1):
        with pytest.raises(ValueError, match="k must be >= 1"):
            index.search(np.ones(8, np.float32), bad)
    with pytest.raises(TypeError):
        index.search(np.ones(8, np.float32), 2.5)


@pytest.mark.parametrize("cls", [ExactIndex, IVFIndex, HNSWIndex])
def test_input_validation(cls):
    index = cls(16) if cls is not IVFIndex else cls(16, nlist=2)
    rng = np.random.default_rng(0)
    good = l2_normalise(rng.standard_normal((40, 16)))
    with pytest.raises(ValueError, match="dimension 15"):
        index.add(good[:, :15])
    with pytest.raises(ValueError, match="L2-normalised"):
        index.add(good * 2)
    bad = good.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.add(bad)
    index.add(good)
    with pytest.raises(ValueError, match="dimension 17"):
        index.search(np.ones((1, 17), np.float32), 1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.search(np.full((1, 16), np.inf, np.float32), 1)
    with pytest.raises(ValueError, match="2-D"):
        index.search(np.ones((1, 1, 16), np.float32), 1)


def test_ids_given_for_all_adds_or_none():
    index = ExactIndex(4, backend="numpy")
    index.add(np.eye(4, dtype=np.float32)[:2], ids=["a", "b"])
    with pytest.raises(ValueError, match="every add"):
        index.add(np.eye(4, dtype=np.float32)[2:])
    with pytest.raises(ValueError, match="2 embeddings"):
        index.add(np.eye(4, dtype=np.float32)[2:], ids=["c"])
    index.add(np.eye(4, dtype=np.float32)[2:], ids=["c", "d"])
    assert index.item_ids == ["a", "b", "c", "d"]


def test_search_many_equals_separate_searches():
    rng = np.random.default_rng(3)
    index = ExactIndex(33)
    index.add(l2_normalise(rng.standard_normal((5000, 33))))
    batches = [l2_normalise(rng.standard_normal((q, 33))) for q in (1, 4, 5)]
    together = index.search_many(batches, k=10)
    assert len(together) == 3
    for batch, (scores, ids) in zip(batches, together):
        want_scores, want_ids = index.search(batch, k=10)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    assert index.search_many([], k=3) == []


def test_sharded_exact_search_equals_unsharded():
    rng = np.random.default_rng(4)
    gallery = lattice_vectors(rng, 1201, 37)
    gallery[900:] = gallery[:301]  # ties across shard boundaries
    queries = lattice_vectors(rng, 9, 37)
    whole = ExactIndex(37, backend="numpy")
    whole.add(gallery)
    bounds = [0, 400, 777, 1201]
    shards = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        shard = ExactIndex(37)
        shard.add(gallery[lo:hi])
        shards.append(shard.search(queries, 10))
    scores, ids = ix.merge_shard_results(shards, bounds[:-1], 10)
    want_scores, want_ids = whole.search(queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


# --------------------------------------------------------------------------------------------------
# FAISS globals


def test_faiss_settings_are_restored():
    before = (faiss.cvar.distance_compute_blas_threshold, faiss.omp_get_max_threads())
    index = ExactIndex(32, num_threads=1, blas_min_queries=3, auto_faiss_min_queries=3)  # the 5 queries go through faiss.knn
    index.add(l2_normalise(np.random.default_rng(0).standard_normal((3000, 32))))
    index.search(l2_normalise(np.ones((5, 32))), 3)
    assert (faiss.cvar.distance_compute_blas_threshold, faiss.omp_get_max_threads()) == before
    with pytest.raises(RuntimeError):
        with ix.faiss_settings(num_threads=1, blas_threshold=7):
            assert faiss.cvar.distance_compute_blas_threshold == 7
            raise RuntimeError("boom")
    assert (faiss.cvar.distance_compute_blas_threshold, faiss.omp_get_max_threads()) == before


def test_blas_threshold_follows_faiss_semantics():
    value = ix.faiss_blas_threshold_for(3, 384)
    assert value == (3 * 384 if ix.base._faiss_version() >= (1, 15) else 3)
    with pytest.raises(ValueError):
        ix.faiss_blas_threshold_for(0, 384)


@pytest.mark.parametrize("backend", ["auto", "faiss"])
@pytest.mark.parametrize("min_queries", [1, 2, 10**6])
def test_blas_and_simd_paths_agree(backend, min_queries):
    """FAISS's BLAS and SIMD paths, and (auto) faiss.knn and NumPy, give the same ids."""
    rng = np.random.default_rng(11)
    gallery = l2_normalise(rng.standard_normal((20001, 48)))
    queries = l2_normalise(rng.standard_normal((6, 48)))
    index = ExactIndex(48, backend=backend, blas_min_queries=min_queries, auto_faiss_min_queries=min_queries)
    index.add(gallery)
    _, want_ids = reference_topk(gallery, queries, 10)
    np.testing.assert_array_equal(index.search(queries, 10)[1], want_ids)
    np.testing.assert_array_equal(index.search(queries[:1], 10)[1], want_ids[:1])


# --------------------------------------------------------------------------------------------------
# approximate search


@pytest.fixture(scope="module")
def clustered_set():
    rng = np.random.default_rng(5)
    data = clustered(rng, 20_000 + 200, 64, 200)
    gallery, queries = data[:20_000], data[20_000:]  # queries: same distribution, not gallery members
    exact = ExactIndex(64)
    exact.add(gallery)
    return gallery, queries, exact.search(queries, 10)[1]


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


@pytest.mark.parametrize("cls,params,minimum", [
    (IVFIndex, {}, 0.95),
    (HNSWIndex, {}, 0.95),
    # 32 sub-quantisers of 6 bits: recall is limited by PQ, not by the lists
    (IVFPQIndex, {"nlist": 64, "pq_m": 32, "pq_nbits": 6, "nprobe": 16, "train_size": 4096}, 0.6),
])
def test_approximate_recall(clustered_set, cls, params, minimum):
    gallery, queries, truth = clustered_set
    index = cls(64, **params)
    index.add(gallery)
    scores, ids = index.search(queries, 10)
    assert recall_at_10(ids, truth) >= minimum
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first


def test_ivf_needs_enough_training_points():
    index = IVFIndex(8, nlist=64)
    with pytest.raises(ValueError, match="nlist=64"):
        index.add(l2_normalise(np.random.default_rng(0).standard_normal((10, 8))))


def test_build_index_auto(monkeypatch):
    rng = np.random.default_rng(1)
    emb = l2_normalise(rng.standard_normal((3000, 16)))
    assert isinstance(build_index(emb), ExactIndex)
    monkeypatch.setattr(ix, "AUTO_EXACT_MAX_ITEMS", 1000)
    index = build_index(emb, ids=[str(i) for i in range(3000)])
    assert isinstance(index, IVFIndex) and index.params["nlist"] == ix.default_nlist(3000) == 64
    assert index.item_ids[-1] == "2999"
    with pytest.raises(ValueError, match="kind"):
        build_index(emb, kind="lsh")


# --------------------------------------------------------------------------------------------------
# save / load


def make(kind: str, gallery: np.ndarray):
    dim = gallery.shape[1]
    index = {
        "exact-auto": lambda: ExactIndex(dim),
        "exact-faiss": lambda: ExactIndex(dim, backend="faiss"),
        "exact-numpy": lambda: ExactIndex(dim, backend="numpy"),
        "exact-torch": lambda: ExactIndex(dim, backend="torch"),
        "ivf": lambda: IVFIndex(dim, nlist=16, nprobe=4),
        "hnsw": lambda: HNSWIndex(dim, M=8),
        "ivfpq": lambda: IVFPQIndex(dim, nlist=4, pq_m=8, pq_nbits=4),
    }[kind]()
    index.add(gallery, ids=[f"img{i}" for i in range(len(gallery))])
    return index


KINDS = ["exact-auto", "exact-faiss", "exact-numpy", "exact-torch", "ivf", "hnsw", "ivfpq"]


@pytest.fixture(scope="module")
def small_set():
    rng = np.random.default_rng(9)
    return clustered(rng, 1500, 32, 20), clustered(rng, 9, 32, 20)


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, small_set, kind, mmap):
    gallery, queries = small_set
    index = make(kind, gallery)
    want = index.search(queries, 5)
    index.save(tmp_path / "idx", IDENTITY)
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["model_identity"] == IDENTITY and meta["count"] == 1500
    assert meta["config"]["kind"] == index.kind and meta["config"]["dim"] == 32
    assert set(meta["files"]) == {index._data_file, "ids.json"}
    loaded = load_index(tmp_path / "idx", IDENTITY, mmap=mmap)
    assert type(loaded) is type(index) and len(loaded) == 1500 and loaded.dim == 32
    assert loaded.params == index.params and loaded.item_ids == index.item_ids
    got = loaded.search(queries, 5)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    if mmap:
        with pytest.raises(RetrievalIndexError, match="read-only"):
            loaded.add(gallery[:2])
    else:
        loaded.add(gallery[:2], ids=["x", "y"])
        assert len(loaded) == 1502


@pytest.mark.parametrize("kind", ["exact-auto", "exact-numpy"])
def test_numpy_storage_is_memory_mapped(tmp_path, small_set, kind):
    make(kind, small_set[0]).save(tmp_path / "idx", IDENTITY)
    loaded = ExactIndex.load(tmp_path / "idx", IDENTITY, mmap=True)
    assert isinstance(loaded.embeddings(), np.memmap)


def test_load_refuses_other_model(tmp_path, small_set):
    make("exact-faiss", small_set[0]).save(tmp_path / "idx", IDENTITY)
    other = {**IDENTITY, "checkpoint_sha256": "cd" * 32}
    with pytest.raises(IndexMismatchError, match="checkpoint_sha256"):
        load_index(tmp_path / "idx", other)
    with pytest.raises(IndexMismatchError, match="'exact' index"):
        IVFIndex.load(tmp_path / "idx", IDENTITY)


def test_save_needs_identity(tmp_path, small_set):
    with pytest.raises(ValueError, match="identity"):
        make("exact-numpy", small_set[0]).save(tmp_path / "idx")
    assert not (tmp_path / "idx" / "index.json").exists()


@pytest.mark.parametrize("kind", ["exact-faiss", "exact-numpy", "ivf"])
def test_tampered_or_truncated_files_are_refused(tmp_path, small_set, kind):
    folder = make(kind, small_set[0]).save(tmp_path / "idx", IDENTITY)
    data = folder / (ix.EMBEDDINGS_FILE if kind == "exact-numpy" else ix.FAISS_FILE)
    original = data.read_bytes()
    flipped = bytearray(original)
    flipped[-5] ^= 0xFF  # same size, different content
    data.write_bytes(bytes(flipped))
    with pytest.raises(IndexCorruptError, match="SHA-256"):
        load_index(folder, IDENTITY)
    data.write_bytes(original[: len(original) // 2])
    with pytest.raises(IndexCorruptError, match="truncated"):
        load_index(folder, IDENTITY, verify=False)  # sizes are checked even without hashing
    data.write_bytes(original)
    (folder / "ids.json").write_text('["tampered"]')
    with pytest.raises(IndexCorruptError):
        load_index(folder, IDENTITY)


def test_missing_index_json_is_refused(tmp_path, small_set):
    folder = make("exact-faiss", small_set[0]).save(tmp_path / "idx", IDENTITY)
    (folder / "index.json").unlink()
    with pytest.raises(RetrievalIndexError, match="no index.json"):
        load_index(folder, IDENTITY)


def test_resave_without_ids_removes_stale_ids(tmp_path, small_set):
    gallery = small_set[0]
    make("exact-numpy", gallery).save(tmp_path / "idx", IDENTITY)
    plain = ExactIndex(32, backend="numpy")
    plain.add(gallery[:10])
    plain.save(tmp_path / "idx", IDENTITY)
    assert not (tmp_path / "idx" / "ids.json").exists()
    assert load_index(tmp_path / "idx", IDENTITY).item_ids is None


def test_auto_exact_search_uses_numpy_by_default(monkeypatch):
    index = ExactIndex(16)
    index.add(l2_normalise(np.random.default_rng(3).standard_normal((500, 16))))
    monkeypatch.setattr(ix.faiss, "knn", lambda *a, **k: pytest.fail("auto exact search called faiss.knn"))
    index.search(l2_normalise(np.ones((10, 16))), 5)  # a batch: NumPy unless auto_faiss_min_queries > 0
    index.params["auto_faiss_min_queries"] = 2
    with pytest.raises(pytest.fail.Exception):
        index.search(l2_normalise(np.ones((10, 16))), 5)


def test_exact_index_over_a_gallery_matches_brute_force_and_the_metrics_ranks():
    from ccr_core.metrics import text_to_image_ranks

    rng = np.random.default_rng(7)
    gallery = lattice_vectors(rng, 203, 37)  # many exact ties
    queries = lattice_vectors(rng, 11, 37)
    index = ExactIndex.over(gallery, ids=[f"item{i}" for i in range(203)])
    assert len(index) == 203 and index.item_ids[5] == "item5"
    scores, ids = index.search(queries, 9)
    ref_scores, ref_ids = reference_topk(gallery, queries, 9)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    # the rank search gives each query's top hit is rank 1 under the metrics' tie rule
    assert (text_to_image_ranks(queries @ gallery.T, ids[:, 0]) == 1).all()
    with pytest.raises(ValueError, match="2-D"):
        ExactIndex.over(np.zeros((2, 3, 4), np.float32))
