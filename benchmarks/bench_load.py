"""Load on the dashboard: concurrent ``gradio_client`` clients searching the running app, and search
latency while the Embedding-space tab recomputes UMAP maps (its own concurrency queue).

The app runs as its own process (``python app.py --no-warm``) on a free localhost port, over the real
demo world when it is built (``<workspace>/bundles/demo-world`` and ``checkpoints/demo-world/*/``),
else over a temporary fixture world (tiny bundle, tiny backbones, three methods; the one
``tests/test_load.py`` uses). Each client opens its own connection, then all start together and
send their searches one after another: half are test captions (their own image is marked; no text
encoding needed), half free text (the caption lower-cased plus a word, through the text encoder).
Latency is the client's round trip for the search's answer (status, table and the galleries'
thumbnail URLs); the clients do not download the thumbnails themselves (a browser fetches those
separately, in parallel, and caches them).

    python -m benchmarks.bench_load          # prints the rows (python -m benchmarks load also rewrites RESULTS.md)
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import Result

REPO = Path(__file__).resolve().parent.parent
CLIENTS, QUERIES_PER_CLIENT = 20, 20
P95_TARGET_S = 5.0  # per search round trip, 20 concurrent clients on a 2-core machine


@dataclass
class LoadStats:
    clients: int
    queries_per_client: int
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole run

    @property
    def served(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def summary(self) -> str:
        return (f"{self.clients} clients x {self.queries_per_client} searches: {self.served} served, {len(self.errors)} errors, "
                f"p50 {self.percentile(50) * 1000:.0f} ms, p95 {self.percentile(95) * 1000:.0f} ms, max {max(self.latencies, default=0) * 1000:.0f} ms, "
                f"{self.served / self.seconds if self.seconds else 0:.1f} searches/s over {self.seconds:.1f} s")


def _choices(update) -> list[str]:
    values = update.get("choices", []) if isinstance(update, dict) else []
    return [c[1] if isinstance(c, (list, tuple)) else c for c in values]


def app_queries(url: str, n: int) -> tuple[list[str], list[str], list[str]]:
    """(model names, caption languages, ``n`` queries) read from the running app: test captions and
    free-text variants."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    methods = _choices(client.predict(api_name="/refresh_models")[0])
    labels = [label for label, _ in client.predict("all", api_name="/caption_list")["choices"]]
    texts = [label.split("] ", 1)[1].rsplit("  ·  ", 1)[0] for label in labels]  # "[de] text  ·  item"
    rng = np.random.default_rng(0)
    picked = [texts[i] for i in rng.choice(len(texts), size=n, replace=len(texts) < n)]
    queries = [t if i % 2 == 0 else f"{t.lower()} photo" for i, t in enumerate(picked)]
    langs = sorted({label[1 : label.index("]")] for label in labels})
    return methods, langs, queries


def hammer(url: str, clients: int, queries_per_client: int, methods: list[str] | None = None, k: int = 8) -> LoadStats:
    """``clients`` threads, each with its own ``gradio_client.Client``, each sending ``queries_per_client``
    searches in turn; all start together. An answer starting with ⚠ counts as an error."""
    from gradio_client import Client

    names, _, queries = app_queries(url, clients * queries_per_client)
    methods = methods or names
    stats = LoadStats(clients, queries_per_client)
    lock = threading.Lock()
    connections = [Client(url, verbose=False, download_files=False) for _ in range(clients)]
    start_together = threading.Barrier(clients + 1)

    def worker(c: int) -> None:
        start_together.wait()
        for q in range(queries_per_client):
            text = queries[c * queries_per_client + q]
            t0 = time.perf_counter()
            try:
                status, *_ = connections[c].predict(text, "auto", methods, k, api_name="/search")
                ok = not status.startswith("⚠")
                problem = None if ok else status[:200]
            except Exception as exc:  # noqa: BLE001 -- every failure is counted and reported
                problem = f"{type(exc).__name__}: {str(exc)[:200]}"
            elapsed = time.perf_counter() - t0
            with lock:
                if problem is None:
                    stats.latencies.append(elapsed)
                else:
                    stats.errors.append(problem)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    start_together.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    stats.seconds = time.perf_counter() - t0
    for conn in connections:
        conn.close()
    return stats


@dataclass
class ProjectionStall:
    before: list[float]  # search latencies (s) with nothing else running
    during: list[float]  # search latencies (s) while projections were computing
    projection_seconds: float  # wall time until every projection answered
    statuses: list[str]  # the projections' status lines

    def summary(self) -> str:
        def p(v, q):
            return float(np.percentile(v, q)) * 1000 if v else float("nan")

        return (f"{len(self.statuses)} UMAP recomputes took {self.projection_seconds:.1f} s; search p50 {p(self.before, 50):.0f} ms before, "
                f"{p(self.during, 50):.0f} ms during (p95 {p(self.during, 95):.0f} ms, max {max(self.during, default=0) * 1000:.0f} ms, "
                f"{len(self.during)} searches)")


def search_during_projection(url: str, n_projections: int = 3, sample: int = 300, methods: list[str] | None = None) -> ProjectionStall:
    """Search latency before and while ``n_projections`` pairs of UMAP maps (of ``sample`` images and
    their captions; parameters not cached before: n_neighbors 3, 4, ...) are computed through ``/projection``."""
    from gradio_client import Client

    names, langs, queries = app_queries(url, 40)
    methods = methods or names
    searcher, projector = Client(url, verbose=False, download_files=False), Client(url, verbose=False, download_files=False)

    def search(text: str) -> float:
        t0 = time.perf_counter()
        status, *_ = searcher.predict(text, "auto", methods, 8, api_name="/search")
        assert not status.startswith("⚠"), status
        return time.perf_counter() - t0

    before = [search(q) for q in queries[:8]]
    left, right = methods[0], methods[min(1, len(methods) - 1)]
    t0 = time.perf_counter()
    # A min_dist drawn afresh each run: maps cached on disk by an earlier run are not reused.
    min_dists = np.random.default_rng().uniform(0.01, 0.99, size=n_projections).round(6)
    jobs = [projector.submit(left, right, langs, "UMAP", sample, 3 + i, float(min_dists[i]), False, api_name="/projection")
            for i in range(n_projections)]
    during, i = [], 8
    while not all(j.done() for j in jobs):
        during.append(search(queries[i % len(queries)]))
        i += 1
    statuses = [j.result()[0] for j in jobs]
    seconds = time.perf_counter() - t0
    searcher.close()
    projector.close()
    return ProjectionStall(before, during, seconds, statuses)


def demo_world_ready() -> tuple[Path, Path, Path] | None:
    """(bundle, checkpoints, workspace) of the built demo world with trained checkpoints, else None."""
    from ccr_core.paths import CHECKPOINTS_DIR, workspace_dir

    workspace = workspace_dir()
    bundle, checkpoints = workspace / "bundles" / "demo-world", CHECKPOINTS_DIR / "demo-world"
    if (bundle / "manifest.json").exists() and checkpoints.is_dir() and any(checkpoints.glob("*/manifest.json")):
        return bundle, checkpoints, workspace
    return None


def run(clients: int = CLIENTS, queries_per_client: int = QUERIES_PER_CLIENT) -> list[Result]:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import launch_app_process, process_rss_mb, stop_app_process

    tmp = Path(tempfile.mkdtemp(prefix="ccr-bench-load-"))
    world = demo_world_ready()
    if world is not None:
        label = "demo world"
    else:
        from test_dashboard_logic import build_fixture_world

        paths = build_fixture_world(tmp / "world")
        world, label = (paths["bundle"], paths["checkpoints"], paths["workspace"]), "fixture world (demo world not built)"
    t0 = time.perf_counter()
    app = launch_app_process(*world, tmp / "app.log", timeout=900)
    startup = time.perf_counter() - t0
    try:
        pid = app["proc"].pid
        hammer(app["url"], 2, 2)  # warm-up: text encoder, thumbnails, first-call costs
        rss_before = process_rss_mb(pid)
        load = hammer(app["url"], clients, queries_per_client)
        rss_after = process_rss_mb(pid)
        stall = search_during_projection(app["url"])
    finally:
        stop_app_process(app)
        shutil.rmtree(tmp, ignore_errors=True)
    print(load.summary())
    print(stall.summary())
    note = f"{label}; `python app.py --no-warm` in its own process, {clients} gradio_client clients started together, each {queries_per_client} searches in turn, all models, k=8"
    n = clients * queries_per_client
    p95 = load.percentile(95)
    return [
        Result(f"requests served ({clients} clients x {queries_per_client} searches)", float(load.served), "requests", f"= {n}", load.served == n, note),
        Result("errors", float(len(load.errors)), "requests", "= 0", not load.errors, "; ".join(sorted(set(load.errors)))[:300]),
        Result("search latency p50 under load", round(load.percentile(50) * 1000, 1), "ms", "", None, "client round trip"),
        Result("search latency p95 under load", round(p95 * 1000, 1), "ms", f"<= {P95_TARGET_S * 1000:.0f} ms", p95 <= P95_TARGET_S, "client round trip"),
        Result("throughput under load", round(load.served / load.seconds, 2), "searches/s", "", None, f"{load.seconds:.1f} s wall"),
        Result("app RSS growth over the load run", round(rss_after - rss_before, 1), "MiB", "< 300 MiB", rss_after - rss_before < 300,
               f"{rss_before:.0f} -> {rss_after:.0f} MiB (VmRSS)"),
        Result("search p50 before a UMAP recompute", round(float(np.percentile(stall.before, 50)) * 1000, 1), "ms", "", None, "one client, sequential"),
        Result("search p50 during a UMAP recompute", round(float(np.percentile(stall.during, 50)) * 1000, 1) if stall.during else float("nan"), "ms",
               "", None, f"{len(stall.during)} searches while 3 UMAP maps took {stall.projection_seconds:.1f} s"),
        Result("search max during a UMAP recompute", round(max(stall.during, default=float("nan")) * 1000, 1), "ms", "<= 10000 ms",
               bool(stall.during) and max(stall.during) <= 10, "the projection has its own queue (concurrency_id='projection', limit 1)"),
        Result("app start-up", round(startup, 1), "s", "", None, "process start to first HTTP 200"),
    ]


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for row in run(*(int(a) for a in sys.argv[1:3])):
        print(row)
