"""Speed, recall and memory of ccr_core.index on synthetic 384-d galleries: the exact index against a
plain matmul + top-k, the FAISS BLAS-threshold and thread tuning behind the defaults, the 1M-item
approximate target, and the cost curve at 10k / 100k / 1M items (numbers used by docs/scaling.md).

The gallery is a clustered mixture, not uniform noise: 64 topic directions, 4,000 clusters around
them with log-normal sizes, a shared rank-32 within-cluster variation plus isotropic noise, L2-
normalised, generated in float32 chunks of 100k rows. Queries are 200 fresh draws from the same
mixture (not gallery members). Latencies are single-query wall times (p50 over queries) unless a row
says otherwise; rounds of the compared variants are interleaved so that a noisy neighbour on the
shared machine slows all of them alike.
"""
from __future__ import annotations

import gc
import time

import numpy as np
import torch

from benchmarks.common import Result
from ccr_core import index as ix
from ccr_core.index import ExactIndex, HNSWIndex, IVFIndex, IVFPQIndex

DIM = 384
K = 10
N_QUERIES = 200
LATENCY_TARGET_MS = 20.0
RECALL_TARGET = 0.95
EXACT_RATIO_TARGET = 1.5
NPROBES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
SIZES = (10_000, 100_000, 1_000_000)


# --------------------------------------------------------------------------------------------------
# data


def clustered_gallery(n: int, stream: int, seed: int = 0, n_clusters: int = 4000, n_topics: int = 64, rank: int = 32,
                      spread: float = 1.0, noise: float = 0.5, chunk: int = 100_000) -> np.ndarray:
    """``n`` rows (n, 384) float32 of the mixture described in the module docstring; ``stream``
    picks independent draws (0: gallery, 1: queries) from the same mixture (same ``seed``).
    ``spread`` and ``noise`` are the expected norms of the shared rank-32 variation and of the
    isotropic noise around unit-norm cluster centres (1.0 / 0.5: a point's cosine to its centre is
    ~0.67, its nearest neighbour's ~0.65 at 1M; ``spread=4.5`` drowns the clusters: the hard case)."""
    rng = np.random.default_rng(seed)
    topics = ix.l2_normalise(rng.standard_normal((n_topics, DIM), dtype=np.float32))  # (T, D)
    centres = topics[rng.integers(0, n_topics, n_clusters)]  # (C, D)
    centres = ix.l2_normalise(centres + rng.standard_normal((n_clusters, DIM), dtype=np.float32) * (0.9 / np.sqrt(DIM)))
    basis = rng.standard_normal((rank, DIM), dtype=np.float32) * (spread / np.sqrt(DIM * rank))  # (R, D)
    weights = rng.lognormal(0.0, 1.0, n_clusters)
    weights /= weights.sum()
    draws = np.random.default_rng([seed, stream])
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[draws.choice(n_clusters, m, p=weights)]  # (m, D)
        x += draws.standard_normal((m, rank), dtype=np.float32) @ basis
        x += draws.standard_normal((m, DIM), dtype=np.float32) * (noise / np.sqrt(DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + m] = x
    return out


# --------------------------------------------------------------------------------------------------
# measuring


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def interleaved_ms(variants: dict, rounds: int) -> dict[str, float]:
    """Median wall time (ms) of each zero-argument callable, the variants interleaved per round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm-up (page-in, lazy allocations)
        fn()
    names = list(variants)
    for r in range(rounds):
        # Rotate the order every round: whichever variant runs right after torch's matmul competes with
        # torch's OpenMP threads still spin-waiting: with a fixed order, ExactIndex() placed there took 23.7 ms and the
        # identical ExactIndex(backend="numpy") after it 15.6 ms (2026-11-23, batch of 10 at 100k).
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


def p50_single_ms(index, queries: np.ndarray, n: int) -> float:
    index.search(queries[:1], K)  # warm-up
    times = []
    for q in queries[:n]:
        start = time.perf_counter()
        index.search(q[None, :], K)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def numpy_topk(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The plain baseline: matmul, argpartition, sort the k best. (Q, K) ids."""
    sims = queries @ gallery.T  # (Q, N)
    top = np.argpartition(sims, sims.shape[1] - K, axis=1)[:, -K:]  # (Q, K), unordered
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1)
    return np.take_along_axis(top, order, 1)


def torch_topk(gallery: torch.Tensor, queries: np.ndarray) -> torch.Tensor:
    return torch.topk(torch.from_numpy(queries) @ gallery.T, K, dim=1).indices  # (Q, K)


# --------------------------------------------------------------------------------------------------
# the parts


def exact_vs_matmul(gallery: np.ndarray, queries: np.ndarray) -> list[Result]:
    """Target 1: the exact index within 1.5x of a plain matmul + top-k, at 100k x 384."""
    rows = []
    n = gallery.shape[0]
    index = ExactIndex(DIM)  # defaults: faiss, 1 thread, BLAS from 2 queries
    index.add(gallery)
    numpy_index = ExactIndex(DIM, backend="numpy")
    numpy_index.add(gallery)
    gallery_t = torch.from_numpy(gallery)
    for batch in (1, 10):
        q = queries[:batch]
        ms = interleaved_ms({
            "index": lambda: index.search(q, K),
            "index-numpy": lambda: numpy_index.search(q, K),
            "numpy": lambda: numpy_topk(gallery, q),
            "torch": lambda: torch_topk(gallery_t, q),
        }, rounds=15)
        baseline = min(ms["numpy"], ms["torch"])
        ratio = ms["index"] / baseline
        label = "1 query" if batch == 1 else f"batch of {batch}"
        note = f"{n:,} x {DIM}, k={K}; median of 15 interleaved rounds"
        rows += [
            Result(f"exact {n // 1000}k, {label}: ExactIndex (defaults)", round(ms["index"], 2), "ms",
                   note=note + ("; auto backend: NumPy" if not 0 < ix.DEFAULT_AUTO_FAISS_MIN_QUERIES <= batch
                                else "; auto backend: faiss.knn (BLAS), 1 thread")),
            Result(f"exact {n // 1000}k, {label}: ExactIndex(backend='numpy')", round(ms["index-numpy"], 2), "ms", note=note),
            Result(f"exact {n // 1000}k, {label}: numpy matmul + argpartition", round(ms["numpy"], 2), "ms", note=note),
            Result(f"exact {n // 1000}k, {label}: torch matmul + topk", round(ms["torch"], 2), "ms", note=note),
            Result(f"exact {n // 1000}k, {label}: ExactIndex / best plain top-k", round(ratio, 3), "x",
                   f"<= {EXACT_RATIO_TARGET:g}x", ratio <= EXACT_RATIO_TARGET, "best plain = faster of numpy and torch"),
        ]
    # search_many: the 10 query batches of one user action (methods x languages) in one call
    batches = [queries[i:i + 1] for i in range(10)]
    ms = interleaved_ms({
        "many": lambda: index.search_many(batches, K),
        "loop": lambda: [index.search(b, K) for b in batches],
    }, rounds=9)
    rows += [Result(f"exact {n // 1000}k: search_many(10 batches of 1) / 10 search() calls", round(ms["many"] / ms["loop"], 3), "x",
                    note=f"{ms['many']:.1f} ms vs {ms['loop']:.1f} ms; median of 9")]
    return rows


def faiss_tuning(gallery: np.ndarray, queries: np.ndarray) -> list[Result]:
    """The measurements behind DEFAULT_BLAS_MIN_QUERIES and DEFAULT_NUM_THREADS (100k x 384)."""
    rows = []
    variants, cases = {}, {}
    for threads in (1, 2):
        for path, min_queries in (("SIMD scan", 10**6), ("BLAS", 1)):
            idx = ExactIndex(DIM, backend="faiss", num_threads=threads, blas_min_queries=min_queries)
            idx.add(gallery)
            cases[(threads, path)] = idx
    numpy_index = ExactIndex(DIM, backend="numpy")
    numpy_index.add(gallery)
    batch_sizes = (1, 2, 3, 5, 10, 20)
    for batch in batch_sizes:
        for (threads, path), idx in cases.items():
            variants[(batch, threads, path)] = (lambda i=idx, q=queries[:batch]: i.search(q, K))
        variants[(batch, "numpy")] = (lambda q=queries[:batch]: numpy_index.search(q, K))
    ms = interleaved_ms(variants, rounds=7)
    crossover = None
    for batch in batch_sizes:
        simd, blas = ms[(batch, 1, "SIMD scan")], ms[(batch, 1, "BLAS")]
        if crossover is None and blas < simd:
            crossover = batch
        parts = ", ".join(f"{t} thr {p} {ms[(batch, t, p)]:.1f}" for t in (1, 2) for p in ("SIMD scan", "BLAS"))
        best = min(ms[(batch, t, p)] for t in (1, 2) for p in ("SIMD scan", "BLAS"))
        rows.append(Result(f"faiss flat 100k, batch {batch}: best of threads x path", round(best, 2), "ms",
                           note=f"{parts}; ExactIndex(backend='numpy') {ms[(batch, 'numpy')]:.1f} (ms, median of 7)"))
    rows.append(Result("faiss BLAS crossover (1 thread): smallest batch where BLAS beats the SIMD scan",
                       float(crossover or 0), "queries", note=f"default blas_min_queries = {ix.DEFAULT_BLAS_MIN_QUERIES}, "
                       f"num_threads = {ix.DEFAULT_NUM_THREADS}; faiss {ix.faiss.__version__} default threshold "
                       f"{ix.faiss.cvar.distance_compute_blas_threshold} (n_queries x dim)"))
    return rows


def approximate_at(gallery: np.ndarray, queries: np.ndarray, label: str, full: bool) -> tuple[list[Result], dict]:
    """Exact and IVF (and, when ``full``, IVF-PQ) at one gallery size: latency, recall, memory."""
    rows, curve = [], {}
    n = gallery.shape[0]
    gc.collect()
    rss0 = rss_mib()
    start = time.perf_counter()
    exact = ExactIndex(DIM)
    exact.add(gallery)
    exact_build = time.perf_counter() - start
    exact_rss = rss_mib() - rss0
    curve["exact_ms"] = p50_single_ms(exact, queries, 20 if n >= 1_000_000 else 50)
    curve["exact_bytes"] = exact.nbytes()
    start = time.perf_counter()
    truth = exact.search(queries, K)[1]  # (200, K): ground truth, one BLAS pass
    truth_s = time.perf_counter() - start
    rows.append(Result(f"{label} exact: p50 latency", round(curve["exact_ms"], 2), "ms",
                       note=f"index {curve['exact_bytes'] / 2**20:.0f} MiB, RSS +{exact_rss:.0f} MiB, add {exact_build:.1f} s; "
                            f"{N_QUERIES}-query ground truth in {truth_s:.1f} s"))
    del exact
    gc.collect()

    rss0 = rss_mib()
    start = time.perf_counter()
    ivf = IVFIndex(DIM)  # nlist = default_nlist(n)
    ivf.train(gallery)
    train_s = time.perf_counter() - start
    ivf.add(gallery)
    build_s = time.perf_counter() - start
    ivf_rss = rss_mib() - rss0
    sweep = {}
    for nprobe in NPROBES:
        ivf.nprobe = nprobe
        sweep[nprobe] = recall_at_k(ivf.search(queries, K)[1], truth)
    chosen = next((p for p in NPROBES if sweep[p] >= RECALL_TARGET), NPROBES[-1])
    ivf.nprobe = chosen
    curve["ivf_ms"] = p50_single_ms(ivf, queries, N_QUERIES)
    curve["ivf_recall"] = sweep[chosen]
    curve["ivf_bytes"] = ivf.nbytes()
    sweep_text = ", ".join(f"{p}: {r:.3f}" for p, r in sweep.items())
    nlist = ivf.params["nlist"]
    rows.append(Result(f"{label} IVF-Flat nlist {nlist}, nprobe {chosen}: p50 latency", round(curve["ivf_ms"], 2), "ms",
                       f"<= {LATENCY_TARGET_MS:g} ms" if full else "", (curve["ivf_ms"] <= LATENCY_TARGET_MS) if full else None,
                       f"single queries, p50 of {N_QUERIES}; nprobe = smallest of {NPROBES} with recall >= {RECALL_TARGET}"))
    rows.append(Result(f"{label} IVF-Flat nlist {nlist}, nprobe {chosen}: recall@{K} vs exact", round(curve["ivf_recall"], 4), "",
                       f">= {RECALL_TARGET}" if full else "", (curve["ivf_recall"] >= RECALL_TARGET) if full else None,
                       f"{N_QUERIES} held-out queries; recall by nprobe: {sweep_text}"))
    rows.append(Result(f"{label} IVF-Flat: build time", round(build_s, 1), "s",
                       note=f"k-means on {min(n, ix.TRAIN_POINTS_PER_LIST * nlist):,} points {train_s:.1f} s + add; 1 thread"))
    rows.append(Result(f"{label} IVF-Flat: memory", round(curve["ivf_bytes"] / 2**20, 1), "MiB",
                       note=f"index size (vectors + ids + centroids); RSS +{ivf_rss:.0f} MiB during build"))
    del ivf
    gc.collect()

    if full:
        rss0 = rss_mib()
        start = time.perf_counter()
        pq = IVFPQIndex(DIM, nlist=nlist, nprobe=chosen)
        pq.add(gallery)
        pq_build = time.perf_counter() - start
        pq_rss = rss_mib() - rss0
        pq_recall = recall_at_k(pq.search(queries, K)[1], truth)
        pq_ms = p50_single_ms(pq, queries, N_QUERIES)
        curve.update(pq_ms=pq_ms, pq_recall=pq_recall, pq_bytes=pq.nbytes())
        rows.append(Result(f"{label} IVF-PQ nlist {nlist}, {ix.DEFAULT_PQ_M} B codes, nprobe {chosen}: p50 latency", round(pq_ms, 2), "ms",
                           note=f"recall@{K} {pq_recall:.3f} (PQ-limited, no re-ranking); build {pq_build:.1f} s"))
        rows.append(Result(f"{label} IVF-PQ: memory", round(pq.nbytes() / 2**20, 1), "MiB",
                           note=f"codes + ids + centroids + codebooks; RSS +{pq_rss:.0f} MiB during build"))
        del pq
        gc.collect()
    return rows, curve


def hnsw_at(gallery: np.ndarray, queries: np.ndarray, label: str) -> list[Result]:
    exact = ExactIndex(DIM)
    exact.add(gallery)
    truth = exact.search(queries, K)[1]
    start = time.perf_counter()
    hnsw = HNSWIndex(DIM)
    hnsw.add(gallery)
    build = time.perf_counter() - start
    recall = recall_at_k(hnsw.search(queries, K)[1], truth)
    ms = p50_single_ms(hnsw, queries, N_QUERIES)
    return [Result(f"{label} HNSW M {ix.DEFAULT_HNSW_M}, efSearch {ix.DEFAULT_HNSW_EF_SEARCH}: p50 latency", round(ms, 3), "ms",
                   note=f"recall@{K} {recall:.3f}; build {build:.1f} s (efConstruction {ix.DEFAULT_HNSW_EF_CONSTRUCTION}, 1 thread); "
                        f"memory {hnsw.nbytes() / 2**20:.0f} MiB")]


def hard_case(n: int) -> list[Result]:
    """IVF on a gallery whose clusters are drowned by a shared low-rank variation (spread 4.5): how
    far nprobe has to go when the data is not well clustered."""
    gallery = clustered_gallery(n, stream=0, spread=4.5, noise=0.35)
    queries = clustered_gallery(N_QUERIES, stream=1, spread=4.5, noise=0.35)
    exact = ExactIndex(DIM)
    exact.add(gallery)
    truth_scores, truth = exact.search(queries, K)
    del exact
    gc.collect()
    ivf = IVFIndex(DIM)
    ivf.add(gallery)
    del gallery
    sweep = {}
    for nprobe in NPROBES:
        ivf.nprobe = nprobe
        sweep[nprobe] = recall_at_k(ivf.search(queries, K)[1], truth)
    chosen = next((p for p in NPROBES if sweep[p] >= RECALL_TARGET), NPROBES[-1])
    ivf.nprobe = chosen
    ms = p50_single_ms(ivf, queries, N_QUERIES)
    sweep_text = ", ".join(f"{p}: {r:.3f}" for p, r in sweep.items())
    return [Result(f"1M hard (spread 4.5) IVF-Flat nlist {ivf.params['nlist']}, nprobe {chosen}: p50 latency", round(ms, 2), "ms",
                   note=f"recall@{K} {sweep[chosen]:.3f}; recall by nprobe: {sweep_text}; "
                        f"median top-1 cosine {np.median(truth_scores[:, 0]):.2f}")]


def run() -> list[Result]:
    rows: list[Result] = []
    start = time.perf_counter()
    gallery = clustered_gallery(SIZES[-1], stream=0)  # (1M, 384), 1.5 GB
    queries = clustered_gallery(N_QUERIES, stream=1)  # (200, 384)
    gen_s = time.perf_counter() - start
    g100k = np.ascontiguousarray(gallery[:100_000])

    rows += exact_vs_matmul(g100k, queries)
    rows += faiss_tuning(g100k, queries)
    rows += hnsw_at(np.ascontiguousarray(gallery[:SIZES[0]]), queries, f"{SIZES[0] // 1000}k")

    curves = {}
    for n in SIZES:
        label = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
        sub = gallery if n == gallery.shape[0] else np.ascontiguousarray(gallery[:n])
        part, curves[n] = approximate_at(sub, queries, label, full=(n == SIZES[-1]))
        rows += part

    top1 = ExactIndex(DIM, backend="numpy")
    top1.add(gallery[:100_000])
    top1_cos = float(np.median(top1.search(queries, 1)[0]))
    del gallery, g100k, sub, top1
    gc.collect()
    rows += hard_case(SIZES[-1])

    per_1k_ms = curves[SIZES[-1]]["exact_ms"] / (SIZES[-1] / 1000)
    rows.append(Result("exact single-query cost per 1,000 items (1M gallery)", round(per_1k_ms, 4), "ms",
                       note=f"largest gallery within {LATENCY_TARGET_MS:g} ms by linear extrapolation: "
                            f"{LATENCY_TARGET_MS / per_1k_ms * 1000:,.0f} items; build_index auto switches at "
                            f"{ix.AUTO_EXACT_MAX_ITEMS:,}"))
    rows.append(Result("synthetic 1M x 384 gallery generation", round(gen_s, 1), "s",
                       note=f"4,000 clusters / 64 topics, spread 1.0, noise 0.5, float32 chunks of 100k; median top-1 "
                            f"cosine of a query in the first 100k: {top1_cos:.2f}"))
    return rows


if __name__ == "__main__":
    for result in run():
        print(result)
