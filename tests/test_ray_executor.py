"""The grid on Ray (ccr_core/study/executors.py), on Ray's local test cluster: two nodes of one CPU each on this
machine, started once for the module. A tiny grid runs across both nodes; a worker killed in the middle of a
run is retried; a run that fails is retried, then reported while the others finish; and the tables equal the
local executor's bit for bit (training and evaluation seconds aside: they are measured, not computed)."""
from __future__ import annotations

import copy
import functools
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from ccr_core.study import executors
from ccr_core.io import read_json
from ccr_core.study import records
from ccr_core.study import grid as study_grid
from ccr_core.study import runner
from ccr_core.study.grid import PROTOCOL, Run, WorldProtocol
from ccr_core.study.report import protocol_markdown

from conftest import make_tiny_bundle

pytestmark = pytest.mark.slow  # one Ray cluster start (~15 s) and a grid on it: about a minute in all

REPO = Path(__file__).resolve().parent.parent
WORLD = "tiny-ray"
TIMING = ("train_seconds", "eval_seconds", "captions_per_s", "seconds")  # measured on the machine, not computed


@pytest.fixture(scope="module")
def cluster():
    """A 2-node Ray cluster on this machine (its workers import this checkout's ccr_core)."""
    import ray
    from ray.cluster_utils import Cluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), saved]))  # inherited by the nodes' workers
    node = {"num_cpus": 1, "object_store_memory": 100 * 1024 ** 2}
    nodes = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    nodes.add_node(**node)
    try:
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture
def tiny_world(tmp_path, monkeypatch):
    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    monkeypatch.setitem(PROTOCOL, WORLD, WorldProtocol(
        train={"batch_size": 4, "lr": 1e-3, "targets_per_batch": 0, "text_backbone": "tiny-text", "visual_backbone": "tiny-visual"},
        steps=6, noise={"common": (0.0, 0.5), "published": (0.0,)}, methods=("floor", "baseline"), seeds=(0, 1), data=str(bundle)))
    return tmp_path


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _tables(results: list[dict]) -> str:
    """RESULTS.md's protocol section of the results, with the measured seconds zeroed."""
    results = copy.deepcopy(results)
    for r in results:
        r["budget"]["train_seconds"] = r["budget"]["eval_seconds"] = 0.0
    return "\n".join(protocol_markdown(WORLD, results))


def test_tiny_grid_on_two_nodes_survives_a_killed_worker_and_equals_the_local_tables(cluster, tiny_world, monkeypatch):
    runs = study_grid.grid(WORLD)
    assert len(runs) == 2 * 2 + 2  # floor (common, 2 noise rates; the baseline's model there), baseline (published), 2 seeds

    monkeypatch.setenv("CCR_WORKSPACE", str(tiny_world / "local"))
    executors.LocalExecutor(threads=1).run(runs, progress=False)
    local = runner.collect(WORLD)
    assert len(local) == len(runs)

    monkeypatch.setenv("CCR_WORKSPACE", str(tiny_world / "ray"))
    broken = Run(WORLD, "common", "no-such-method", 0.0, 0)  # fails in the worker: retried once, then reported
    victim = runs[-3]  # killed in the middle of its training
    killed = {}

    grid_over = threading.Event()

    def kill_the_victims_worker():  # watches until the grid is over (no fixed deadline: a loaded machine starts runs late)
        folder = victim.folder()
        while not grid_over.is_set() and not killed:
            tries = executors.attempts(folder)
            if tries and not (folder / "result.json").exists():
                killed.update(tries[0])
                os.kill(tries[0]["pid"], signal.SIGKILL)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_victims_worker, daemon=True)
    killer.start()
    ray_executor = executors.RayExecutor(threads=1, retries=1)
    done = ray_executor.run(runs + [broken], progress=False)
    grid_over.set()
    killer.join(timeout=5)

    # the killed run was retried (in a new worker process) and finished; the broken one was tried twice and reported
    assert killed, "the victim run was never seen running"
    victim_attempts = executors.attempts(victim.folder())
    assert len(victim_attempts) == 2 and victim_attempts[1]["pid"] != killed["pid"]
    assert ray_executor.timings[victim.label]["attempt"] == 2
    assert set(done) == {r.label for r in runs} and list(ray_executor.failed) == [broken.label]
    assert "unknown method 'no-such-method'" in ray_executor.failed[broken.label]
    assert len(executors.attempts(broken.folder())) == 2
    # both nodes ran runs
    nodes = {a["node"] for r in runs for a in executors.attempts(r.folder())}
    assert len(nodes) == 2 and len(cluster.list_all_nodes()) == 2

    # the same numbers, run by run, and the same tables
    on_ray = runner.collect(WORLD)
    assert [_without_timing(r) for r in on_ray] == [_without_timing(r) for r in local]
    assert _tables(on_ray) == _tables(local) and "| floor = baseline (one model in this setting) | 0.5 | 2 |" in _tables(local)

    # a finished run is never redone: a second sitting submits nothing
    stamps = {r.label: r.folder().joinpath("result.json").stat().st_mtime_ns for r in runs}
    again = executors.RayExecutor(threads=1, retries=0)
    assert again.run(runs, progress=False) == {} and not again.failed
    assert stamps == {r.label: r.folder().joinpath("result.json").stat().st_mtime_ns for r in runs}


def test_experiments_command_takes_the_ray_executor(cluster, tiny_world, monkeypatch, capsys):
    """``python -m ccr_core.experiments --world W --executor ray``: the runs on the cluster, results aggregated
    as with the local executor; a failed run makes the exit status 1 after everything else is written."""
    from ccr_core import experiments

    monkeypatch.setenv("CCR_WORKSPACE", str(tiny_world / "ws"))
    monkeypatch.setattr(records, "repo_results_dir", lambda: tiny_world / "results")
    monkeypatch.setattr(experiments, "REPO_ROOT", tiny_world)
    monkeypatch.setattr(experiments, "WORLDS", (WORLD,))
    shutil.copy(REPO / "README.md", tiny_world / "README.md")
    monkeypatch.setattr(experiments, "write_readme_table", functools.partial(experiments.write_readme_table, tiny_world / "README.md"))
    # both of the protocol's seeds: a table shows a cell only with all of its runs
    assert experiments.main(["--world", WORLD, "--methods", "floor", "--seeds", "0", "1", "--executor", "ray", "--quiet"]) == 0
    assert experiments.main(["--world", WORLD, "--publish"]) == 0  # a second command: publishing trains nothing
    results = read_json(tiny_world / "results" / f"protocol-{WORLD}.json")
    assert {(r["method"], r["noise_rate"]) for r in results} == {("floor", 0.0), ("floor", 0.5)}
    assert "| floor = baseline (one model in this setting) | 0.5 | 2 |" in (tiny_world / "RESULTS.md").read_text()
    out = capsys.readouterr().out
    assert "4 runs as Ray tasks (1 CPU, 0 GPU, 1 torch threads each; cluster: 2 CPUs" in out
    assert experiments.main(["--world", WORLD, "--methods", "no-such-method", "--seeds", "0", "--settings", "common",
                             "--noise", "0", "--executor", "ray", "--retries", "0", "--quiet"]) == 1
    assert "FAILED" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--address needs --executor ray"):
        experiments.main(["--world", WORLD, "--address", "auto"])
