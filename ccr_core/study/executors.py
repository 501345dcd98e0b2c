"""Where the comparison grid's runs execute: one after another in this process (``local``, the default), or as
independent Ray tasks on a cluster (``ray``), each with its CPU/GPU needs.

Both executors do the same thing per run -- :func:`execute` on a :class:`RunSpec` -- and leave the same resumable run
folder (``ccr_core.study.runner``): a finished run (its ``result.json``, or its record committed in ``results/``) is
never redone, a killed one resumes from ``last/``. A Ray task gets everything it needs in its arguments (the run, its
world's protocol, the workspace, the plugins, the torch thread count) rather than from module globals of the driver,
so a grid defined or patched in the driver runs the same on every node. With the same thread count a run's numbers do
not depend on where it ran (the tables are bit for bit those of the local executor, training seconds aside).

Every attempt at a run appends a line to ``<run folder>/attempts.jsonl`` (host, process, node, executor), so a
retried run says so. Ray retries a task whose worker died or that raised, ``retries`` times; a run that still
fails is reported at the end (label and error) and the other runs go on.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ccr_core.io import file_lock, read_json, try_file_lock
from ccr_core.methods import load_plugins, plugin_modules
from ccr_core.paths import RESULT_FILE, workspace_dir
from ccr_core.study import grid as study_grid
from ccr_core.study import runner
from ccr_core.study.stats import target_sumr

EXECUTORS = ("local", "ray")
ATTEMPTS = "attempts.jsonl"
RUN_LOCK = ".training.lock"  # held by the process training the run (the kernel drops it when that process dies)


@dataclass(frozen=True)
class RunSpec:
    """One grid run and what any process needs to do it exactly as the driver would."""

    run: "study_grid.Run"
    world: "study_grid.WorldProtocol"  # PROTOCOL[run.world] in the driver
    epoch_steps: int  # study_grid.steps_per_epoch(run.world, batch size), computed where the bundle is
    workspace: str  # CCR_WORKSPACE of the driver
    folder: str  # run.folder() in the driver: the worker checks it computes the same
    plugins: tuple = ()  # method plugin modules to import (entry points load by themselves)
    threads: int = 0  # torch CPU threads for the run (0: leave torch's setting)

    @classmethod
    def of(cls, run: "study_grid.Run", threads: int = 0) -> "RunSpec":

        world = study_grid.PROTOCOL[run.world]
        return cls(run, world, study_grid.steps_per_epoch(run.world, world.train["batch_size"]), str(workspace_dir()),
                   str(run.folder()), tuple(plugin_modules()), threads)


class _Installed:
    """Within: the spec's world protocol, epoch length, workspace and thread count in this process's globals
    (restored after), so ``runner.run_one`` computes the driver's config and folder."""

    def __init__(self, spec: RunSpec):
        self.spec = spec

    def __enter__(self):
        import torch


        spec = self.spec
        load_plugins(spec.plugins)
        key = (spec.run.world, spec.world.train["batch_size"])
        self.saved = (study_grid.PROTOCOL.get(spec.run.world), study_grid._EPOCH_STEPS.get(key), os.environ.get("CCR_WORKSPACE"),
                      torch.get_num_threads())
        study_grid.PROTOCOL[spec.run.world] = spec.world
        study_grid._EPOCH_STEPS[key] = spec.epoch_steps
        os.environ["CCR_WORKSPACE"] = spec.workspace
        if spec.threads:
            torch.set_num_threads(spec.threads)
        return self

    def __exit__(self, *exc):
        import torch

        spec, (world, steps, workspace, threads) = self.spec, self.saved
        key = (spec.run.world, spec.world.train["batch_size"])
        for mapping, name, value in ((study_grid.PROTOCOL, spec.run.world, world), (study_grid._EPOCH_STEPS, key, steps)):
            if value is None:
                mapping.pop(name, None)
            else:
                mapping[name] = value
        if workspace is None:
            os.environ.pop("CCR_WORKSPACE", None)
        else:
            os.environ["CCR_WORKSPACE"] = workspace
        torch.set_num_threads(threads)


_WORKER_BENCHES: dict = {}  # (workspace, world protocol) -> runner.Workbenches: loaded once per worker process


def execute(spec: RunSpec, benches: "runner.Workbenches | None" = None, executor: str = "local", progress: bool = False) -> dict:
    """Train (or resume) and evaluate one run as the driver defined it; return its ``result.json`` and timing
    (``{"result", "seconds", "attempt"}``). A finished run is read, not redone."""
    with _Installed(spec):
        run = spec.run
        folder = run.folder()
        if str(folder) != spec.folder:
            raise RuntimeError(f"{run.label}: this process computes run folder {folder}, the driver {spec.folder} "
                               "(a different ccr_core, plugin or bundle here?)")
        if (record := runner.finished_record(run)) is not None:  # trained here, or committed in results/
            now = time.time()
            return {"result": record, "seconds": 0.0, "attempt": 0, "started": now, "finished": now}
        attempt = _record_attempt(folder, executor)
        if benches is None:
            key = (spec.workspace, repr(spec.world))
            benches = _WORKER_BENCHES.setdefault(key, runner.Workbenches(progress=False))
        started, start = time.time(), time.perf_counter()
        result = runner.run_one(run, benches, progress=progress)
        return {"result": result, "seconds": time.perf_counter() - start, "attempt": attempt, "started": started, "finished": time.time()}


def _record_attempt(folder: Path, executor: str) -> int:
    """Append this attempt to the run folder's attempt log; return its number (1 for the first)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ATTEMPTS
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname(), "pid": os.getpid(), "executor": executor}
    if executor == "ray":
        import ray

        record["node"] = ray.get_runtime_context().get_node_id()
    with open(path, "a", encoding="utf-8") as f:  # one short line per attempt: appends do not interleave
        f.write(json.dumps(record) + "\n")
    return len(attempts(folder))


def attempts(folder: Path) -> list[dict]:
    """The attempt log of a run folder (empty when it was never started by an executor)."""
    path = Path(folder) / ATTEMPTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _result_line(label: str, outcome: dict, seconds: float, **extra) -> str:
    return json.dumps({"run": label, "target_SumR": round(target_sumr(outcome["result"]) or 0, 1), "seconds": round(seconds),
                       **extra})


class LocalExecutor:
    """The runs one after another in this process, sharing one set of workbenches (the clean caches load once)."""

    name = "local"

    def __init__(self, threads: int = 0):
        self.threads = threads  # torch threads per run (0: torch's default)
        self.failed: dict[str, str] = {}  # label -> error; the local executor stops at the first, as it always has

    def run(self, runs: list, progress: bool = True) -> dict[str, dict]:
        """Every run not finished yet; return ``{label: result}`` of those run now (or by another grid command).

        A run another process is training (it holds the run folder's lock) is left to it, and waited for at the end:
        two grid commands on one workspace -- e.g. one per core, ``--methods nrccr`` beside the whole list -- share
        the runs instead of training one run twice in one folder."""
        benches = runner.Workbenches(progress)
        done, elsewhere = {}, []
        for k, run in enumerate(runs, 1):
            if runner.finished_record(run) is not None:  # trained here, or its committed record restored
                continue
            with try_file_lock(run.folder() / RUN_LOCK) as mine:
                if not mine:
                    print(f"== [{k}/{len(runs)}] {run.label}: another process is training it; waiting for it at the end", flush=True)
                    elsewhere.append(run)
                    continue
                if (run.folder() / RESULT_FILE).exists():  # finished by the other process meanwhile
                    continue
                start = time.perf_counter()
                print(f"== [{k}/{len(runs)}] {run.label}", flush=True)
                outcome = execute(RunSpec.of(run, self.threads), benches, self.name, progress)
            done[run.label] = outcome["result"]
            print(_result_line(run.label, outcome, time.perf_counter() - start), flush=True)
        for run in elsewhere:
            with file_lock(run.folder() / RUN_LOCK):  # until the other process lets go of it
                if (run.folder() / RESULT_FILE).exists():
                    done[run.label] = read_json(run.folder() / RESULT_FILE)
                else:
                    raise RuntimeError(f"{run.label}: the other process stopped without finishing it; run the command again to resume it")
        return done


class RayExecutor:
    """Each run a Ray task (``cpus_per_run`` CPUs, ``gpus_per_run`` GPUs) on the cluster at ``address`` (None: a Ray
    instance on this machine; "auto": the cluster this machine belongs to). The repository, its environment and the
    workspace must be at the same paths on every node (a shared filesystem, as on Slurm: docs/scaling.md)."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float = 1, gpus_per_run: float = 0, retries: int = 2,
                 threads: int | None = None):
        self.address = address
        self.cpus_per_run, self.gpus_per_run, self.retries = cpus_per_run, gpus_per_run, retries
        self.threads = threads if threads is not None else max(1, int(cpus_per_run))  # one torch thread per reserved CPU
        self.failed: dict[str, str] = {}
        # label -> {"seconds": run_one in the task, "wall": submission to result, "attempt", and the wall-clock times
        # (time.time()) it was "submitted", "started" and "finished" in its worker, "received" back; its "node"}
        self.timings: dict[str, dict] = {}
        self.prepare_seconds: dict[str, float] = {}  # world -> its caches built (or loaded) in a worker before the runs

    def _connect(self):
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING", configure_logging=True)
        return ray

    def run(self, runs: list, progress: bool = True) -> dict[str, dict]:
        """Every run not finished yet, as Ray tasks; return ``{label: result}`` of those that finished now. Failures
        (after the retries) are kept in :attr:`failed` and reported; the other runs go on."""
        todo = [run for run in runs if runner.finished_record(run) is None]
        if not todo:
            return {}
        ray = self._connect()
        options = dict(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=self.retries, retry_exceptions=True)
        task = ray.remote(_ray_execute).options(**options)
        # The world's caches (features, text states) are built once, before runs read them concurrently.
        for world in sorted({run.world for run in todo}):
            first = next(run for run in todo if run.world == world)
            begin = time.perf_counter()
            try:
                ray.get(ray.remote(_ray_prepare).options(**options).remote(RunSpec.of(first, self.threads)))
            except Exception as exc:  # noqa: BLE001 -- then each run builds what it needs, and fails (reported) if it cannot
                print(f"== {world}: preparing its caches failed ({_one_line(exc)}); the runs will try themselves", flush=True)
            self.prepare_seconds[world] = time.perf_counter() - begin
        pending, submitted = {}, {}
        for run in todo:
            ref = task.remote(RunSpec.of(run, self.threads))
            pending[ref], submitted[ref] = run, time.time()
        print(f"== {len(todo)} runs as Ray tasks ({self.cpus_per_run:g} CPU, {self.gpus_per_run:g} GPU, {self.threads} torch threads each; "
              f"cluster: {ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs)", flush=True)
        done, k = {}, 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            run = pending.pop(ref)
            k += 1
            received = time.time()
            wall = received - submitted[ref]
            tries = attempts(run.folder())
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 -- a run's failure (its error or its worker's death) is reported, not fatal
                self.failed[run.label] = _one_line(exc)
                print(f"== [{k}/{len(todo)}] {run.label} FAILED after {len(tries)} attempt{'s' if len(tries) != 1 else ''}: "
                      f"{self.failed[run.label]}", flush=True)
                continue
            done[run.label] = outcome["result"]
            self.timings[run.label] = {"seconds": outcome["seconds"], "wall": wall, "attempt": outcome["attempt"], "submitted": submitted[ref],
                                       "started": outcome["started"], "finished": outcome["finished"], "received": received,
                                       "node": tries[-1].get("node") if tries else None}
            print(f"== [{k}/{len(todo)}] {run.label}", flush=True)
            print(_result_line(run.label, outcome, wall, attempts=len(tries)), flush=True)
        retried = [label for label, t in self.timings.items() if t["attempt"] > 1]
        print(f"== Ray: {len(done)} of {len(todo)} runs done" + (f", {len(retried)} after a retry ({', '.join(retried)})" if retried else "")
              + (f"; {len(self.failed)} FAILED: " + "; ".join(f"{label}: {why}" for label, why in self.failed.items()) if self.failed else ""),
              flush=True)
        return done


def _ray_execute(spec: RunSpec) -> dict:
    return execute(spec, executor="ray")


def _ray_prepare(spec: RunSpec) -> None:
    """Build the world's clean caches in a worker (its workbench stays loaded for the runs it takes next)."""
    with _Installed(spec):
        _WORKER_BENCHES.setdefault((spec.workspace, repr(spec.world)), runner.Workbenches(progress=False)).get(spec.run)


def _one_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:500]


def add_arguments(parser) -> None:
    """``--executor``, ``--address`` and the per-run resources, for ``python -m ccr_core.experiments``."""
    group = parser.add_argument_group("where the runs execute (docs/scaling.md)")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: one run after another in this process (default); ray: each run a Ray task")
    group.add_argument("--address", help="with --executor ray: the Ray cluster (auto, or HOST:PORT of its head); default: a Ray instance on this machine")
    group.add_argument("--cpus-per-run", type=float, default=1, help="with --executor ray: CPUs each run reserves (default 1)")
    group.add_argument("--gpus-per-run", type=float, default=0, help="with --executor ray: GPUs each run reserves (default 0)")
    group.add_argument("--retries", type=int, default=2, help="with --executor ray: retries of a run whose worker died or that failed (default 2)")
    group.add_argument("--threads", type=int, help="torch threads per run (local default: torch's; ray default: --cpus-per-run); "
                       "the same value in both gives the same numbers")


def from_args(args) -> "LocalExecutor | RayExecutor":
    if args.executor == "ray":
        return RayExecutor(args.address, args.cpus_per_run, args.gpus_per_run, args.retries, args.threads)
    if args.address:
        raise SystemExit("--address needs --executor ray")
    return LocalExecutor(args.threads or 0)
