"""Load: concurrent gradio_client clients against the dashboard process (fixture ``app_process``),
zero errors, p50/p95 reported; and a long UMAP recompute on the Embedding-space tab (its own
concurrency queue) does not stall searches. The full 20 x 20 run on the demo world is
``python -m benchmarks.bench_load`` (figures in docs/reliability.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from conftest import process_rss_mb

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ is a package at the repository root
    sys.path.insert(0, str(REPO))

from benchmarks.bench_load import hammer, search_during_projection  # noqa: E402

CLIENTS, QUERIES = 5, 5


def test_concurrent_clients_are_all_served(app_process):
    pid = app_process["proc"].pid
    hammer(app_process["url"], 1, 2)  # warm-up
    before = process_rss_mb(pid)
    stats = hammer(app_process["url"], CLIENTS, QUERIES)
    after = process_rss_mb(pid)
    print(f"\n[load] {stats.summary()}; app RSS {before:.0f} -> {after:.0f} MiB")
    assert not stats.errors, stats.errors[:3]
    assert stats.served == CLIENTS * QUERIES
    assert stats.percentile(95) < 20.0  # generous: a busy 2-core CI machine
    assert after - before < 300


def test_umap_recompute_does_not_stall_searches(app_process):
    stall = search_during_projection(app_process["url"], n_projections=3)
    print(f"\n[projection] {stall.summary()}")
    assert all(not s.startswith("⚠") and "computed" in s for s in stall.statuses), stall.statuses
    assert stall.during, "no search answered while the projections ran"
    assert max(stall.during) < 15.0  # each search still answers (generous bound for a busy CI machine)
    assert float(np.median(stall.during)) < max(5.0, 20 * float(np.median(stall.before)))
