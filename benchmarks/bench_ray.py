"""The Ray executor's overhead per grid run (issue target: <= 5% of a demo-world baseline run).

The same four demo-world baseline runs (164 steps each, seeds 0-3, the grid's "published" setting) are run by
the local executor (one after another in this process) and by the Ray executor on Ray's local test cluster of
two 1-CPU nodes (two runs per node), both with one torch thread per run, each into an empty runs folder of a
temporary workspace that links the built demo world's bundle and caches (read only).

Overhead of a run on Ray: the time its node spent on it beyond training and evaluating it -- from its submission
(or the end of the node's previous run) until its result was back in the driver, minus the run's own seconds in
the worker. A node's first run also starts the worker process and loads the workbench (a one-off per worker,
reported apart); the later runs are the steady state, the target's row. The local executor's own per-run cost
(its loop around the run) is reported beside it.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result
from ccr_core.paths import REPO_ROOT, workspace_dir
from ccr_core.study.grid import grid

WORLD = "demo-world"
SEEDS = (0, 1, 2, 3)
TARGET = 0.05  # overhead per run / the run's own time
GRID_RUNS = len(grid(WORLD))  # the demo-world grid, for the amortised row


def _workspace(tmp: Path) -> Path:
    """A workspace whose bundles and caches are the built demo world's (links) and whose runs folder is empty."""
    source = workspace_dir()
    ws = tmp / "workspace"
    ws.mkdir(parents=True)
    for name in ("bundles", "features", "text_states"):
        if (source / name).exists():
            (ws / name).symlink_to(source / name)
    return ws


def run() -> list[Result]:
    import ray
    from ray.cluster_utils import Cluster

    from ccr_core.study import executors
    from ccr_core.io import read_json
    from ccr_core.study.grid import Run

    if not (workspace_dir() / "bundles" / WORLD / "manifest.json").exists():
        return [Result(f"{WORLD} not built", float("nan"), "", note="make demo")]
    runs = [Run(WORLD, "published", "baseline", 0.0, seed) for seed in SEEDS]
    saved = {k: os.environ.get(k) for k in ("CCR_WORKSPACE", "PYTHONPATH")}
    with tempfile.TemporaryDirectory(prefix="ccr-bench-ray-") as tmp:
        try:
            os.environ["CCR_WORKSPACE"] = str(_workspace(Path(tmp) / "local"))
            local = executors.LocalExecutor(threads=1)
            local_walls, start = [], time.perf_counter()
            for one in runs:  # one at a time, to time the loop around each run
                begin = time.perf_counter()
                local.run([one], progress=False)
                local_walls.append(time.perf_counter() - begin)
            local_total = time.perf_counter() - start
            local_seconds = [read_json(r.folder() / "result.json")["budget"] for r in runs]
            local_run_s = [b["train_seconds"] + b["eval_seconds"] for b in local_seconds]

            os.environ["CCR_WORKSPACE"] = str(_workspace(Path(tmp) / "ray"))
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), saved["PYTHONPATH"]]))
            begin = time.perf_counter()
            node = {"num_cpus": 1, "object_store_memory": 100 * 1024 ** 2}
            cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
            cluster.add_node(**node)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
            cluster_start = time.perf_counter() - begin
            try:
                on_ray = executors.RayExecutor(threads=1)
                begin = time.perf_counter()
                done = on_ray.run(runs, progress=False)
                ray_total = time.perf_counter() - begin
            finally:
                ray.shutdown()
                cluster.shutdown()
            if on_ray.failed:
                raise RuntimeError(f"runs failed on Ray: {on_ray.failed}")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    own = {label: r["budget"]["train_seconds"] + r["budget"]["eval_seconds"] for label, r in done.items()}  # as local_run_s
    timings = sorted(on_ray.timings.items(), key=lambda kv: kv[1]["received"])
    cold, warm, free_at = [], [], {}
    for label, t in timings:  # per node, in the order its runs came back
        since = max(t["submitted"], free_at.get(t["node"], 0.0))
        (warm if t["node"] in free_at else cold).append(t["received"] - since - own[label])
        free_at[t["node"]] = t["received"]
    base = statistics.mean(local_run_s)
    local_loop = statistics.mean(w - s for w, s in zip(local_walls, local_run_s))
    warm_mean = statistics.mean(warm)
    amortised = (sum(cold) + (GRID_RUNS - len(cold)) * warm_mean) / GRID_RUNS
    note = f"{len(runs)} demo-world baseline runs (164 steps, seeds {SEEDS[0]}-{SEEDS[-1]}), 1 torch thread each"
    return [
        Result("local executor: one demo-world baseline run (train + evaluate)", base, "s", note=f"mean of {len(runs)}; {note}"),
        Result("local executor: its loop around a run", local_loop, "s", note="wall of LocalExecutor.run([run]) minus the run's train + eval seconds; the first run loads the workbench"),
        Result("Ray, 2-node local cluster: start (2 raylets, connect)", cluster_start, "s", note="ray.cluster_utils.Cluster, 1 CPU per node; once per grid"),
        Result("Ray: a node's first run, overhead (worker start + imports + workbench load + scheduling)", statistics.mean(cold), "s",
               note=f"mean of {len(cold)} nodes; once per worker"),
        Result("Ray: overhead per run, steady state", warm_mean, "s", note="result back in the driver minus (submission or the node's previous result) minus the run's seconds in the worker"),
        Result("Ray: overhead per run, steady state / local run", 100 * warm_mean / base, "%", f"<= {100 * TARGET:.0f}%", warm_mean <= TARGET * base,
               note=f"{len(warm)} runs"),
        Result(f"Ray: overhead per run, amortised over the {GRID_RUNS}-run demo grid on 2 nodes", 100 * amortised / base, "%", f"<= {100 * TARGET:.0f}%",
               amortised <= TARGET * base, note="(first-run overhead of each node + steady overhead of the other runs) / runs"),
        Result("Ray: world caches loaded in a worker before the runs", sum(on_ray.prepare_seconds.values()), "s",
               note="once per grid and world (not in the per-run rows)"),
        Result("Ray: run in the worker vs local (train + evaluate, two runs at once on 2 cores)", statistics.mean(own.values()), "s", note=f"local {base:.1f} s; both nodes share this machine's 2 cores"),
        Result(f"{len(runs)} runs: local executor / Ray on 2 nodes, wall", local_total / ray_total, "x", note=f"local {local_total:.0f} s, Ray {ray_total:.0f} s (cluster start not included)"),
    ]
