"""Running a grid: train (or resume) each run, score it at the end of its budget, write ``result.json``; collect them.

A run whose ``result.json`` exists is skipped and a killed run resumes from ``last/``, so a grid is resumable across
sittings. A run whose record is committed in ``results/`` (same identity, same training config) is not trained again
either, even in a new workspace: its record is restored into the run folder (``restored.json`` says from where), so a
grid that spans machines or sittings goes on from what was published. Every run is scored with the model at the end
of its budget (``last/``: the same steps for every method); the best validation epoch's model (``best/``) is scored
too and kept as a second, labelled set of numbers.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ccr_core.eval.retrieval import evaluate_model, evaluate_with_detectors
from ccr_core.io import read_json, write_json_atomic
from ccr_core.methods import METHODS
from ccr_core.paths import REPO_ROOT, RESULT_FILE, SUMMARY_FILE, TRAIN_CONFIG_FILE, workspace_dir
from ccr_core.study import records
from ccr_core.study.grid import PROTOCOL, Run, ablation_runs, fine_tuned_runs, grid
from ccr_core.training.checkpoint import weights_sha256
from ccr_core.training.inference import load_trained
from ccr_core.training.train import train
from ccr_core.training.workbench import prepare_workbench, with_noise


class Workbenches:
    """One workbench per (world, noise rate, noise draw): the clean caches are computed once, noisy bundles reuse them."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self._clean: dict = {}
        self._noisy: dict = {}

    def get(self, run: Run):
        if run.world not in self._clean:
            self._clean[run.world] = prepare_workbench(run.train_config(), workspace_dir(), progress=self.progress)
        clean = self._clean[run.world]
        if not run.noise:
            return clean
        key = (run.world, run.noise, run.noise_seed)
        if key not in self._noisy:
            self._noisy[key] = with_noise(clean, run.noise, run.noise_seed)
        return self._noisy[key]


RESTORED_FILE = "restored.json"  # in a run folder whose result.json came from a committed record, not from training here


def committed_record(run: Run, root: Path | None = None) -> tuple[Path, dict] | None:
    """The committed record of this very run, with its file: a record of any kind of the run's world in ``results/``
    (``root``) with the run's setting, variant and training config (compared by the digest that names run folders)."""
    return records.find_by_config(run.world, run.setting, run.variant, asdict(run.train_config()), root)


def finished_record(run: Run, root: Path | None = None) -> dict | None:
    """The run's record when it is finished: its folder's ``result.json``, or else its committed record
    (:func:`committed_record`), restored into the folder so that the workspace counts it as finished. None: not run."""
    folder = run.folder()
    if (folder / RESULT_FILE).exists():
        return read_json(folder / RESULT_FILE)
    found = committed_record(run, root)
    if found is None:
        return None
    path, record = found
    folder.mkdir(parents=True, exist_ok=True)
    source = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    write_json_atomic(folder / RESTORED_FILE, {"from": str(source), "restored": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_json_atomic(folder / RESULT_FILE, record)
    return record


def ensure_model(run: Run, workbenches: Workbenches, progress: bool = True) -> None:
    """Make sure the finished run's end-of-budget model is in its folder: a run whose record was restored from
    ``results/`` has none, so it is trained here, and its new record must repeat the committed numbers (a
    different torch thread count can move the last digits: that is reported, and the committed record stays)."""
    folder = run.folder()
    if (folder / "last" / "manifest.json").exists() and (folder / SUMMARY_FILE).exists():
        return
    committed = read_json(folder / RESULT_FILE) if (folder / RESULT_FILE).exists() else None
    print(f"== {run.label}: its model is not in this workspace{' (the record was restored from results/)' if committed else ''}; "
          "training it", flush=True)
    fresh = train_and_score(run, workbenches, progress)
    if committed is not None and records.numbers(fresh) != records.numbers(committed):
        groups = {g: (committed["groups"][g]["SumR"], rep["SumR"]) for g, rep in fresh.get("groups", {}).items() if g in committed.get("groups", {})}
        print(f"== {run.label}: retrained here with other numbers than the committed record (test SumR committed -> here: "
              + ", ".join(f"{g} {a:.2f} -> {b:.2f}" for g, (a, b) in groups.items()) + "); the committed record stays", flush=True)


def run_one(run: Run, workbenches: Workbenches, progress: bool = True) -> dict:
    """Train (or resume) one run, score its end-of-budget model (and its best validation epoch's), write ``result.json``.
    A finished run (:func:`finished_record`) is read, not trained."""
    if (record := finished_record(run)) is not None:
        return record
    return train_and_score(run, workbenches, progress)


def train_and_score(run: Run, workbenches: Workbenches, progress: bool = True) -> dict:
    """Train (or resume) the run in its folder and write its ``result.json`` (replacing a restored one)."""
    folder = run.folder()
    bench = workbenches.get(run)
    cfg = run.train_config()
    if not (folder / SUMMARY_FILE).exists():
        train(cfg, folder, progress=progress, bench=bench, resume=(folder / "last" / "manifest.json").exists())
    identity = {"world": run.world, "setting": run.setting, "method": run.method, "noise_rate": run.noise, "seed": run.seed,
                "noise_seed": run.noise_seed, **({"variant": run.variant} if run.variant else {})}
    return score_run(folder, bench, run.label, identity)


def score_run(folder: Path, bench, label: str, identity: dict) -> dict:
    """A trained run folder's record: its end-of-budget model (``last/``) scored on the test split, its best validation
    epoch's SumR where that was another epoch, the learning curve, the training config and ``identity`` (what names
    the run); written to ``<folder>/result.json``. The grid and ``ccr train`` write their records with it."""
    summary = read_json(folder / SUMMARY_FILE)
    result = evaluate_run(folder / "last", bench, summary, label)
    result["scored"] = records.summary_budget(summary)
    result["checkpoint_sha256"] = weights_sha256(folder / "last")  # what was scored
    if summary["best_epoch"] != summary["epochs"]:
        best = evaluate_model(load_trained(folder / "best", bench, label))
        result["best_epoch_result"] = {**records.summary_budget(summary, summary["best_epoch"]),
                                       "groups": {g: {"SumR": rep["SumR"]} for g, rep in best["groups"].items()}}
    result["curve"] = summary.get("curve", [])
    result["torch_threads"] = torch.get_num_threads()  # results can differ in the last digits across thread counts
    result.update({**identity, "train_config": read_json(folder / TRAIN_CONFIG_FILE)})
    write_json_atomic(folder / RESULT_FILE, result)
    return result


def evaluate_run(checkpoint: Path, bench, summary: dict, name: str) -> dict:
    """Test numbers of a checkpoint, its noise detectors (where the bundle has noise labels) and its run's budget."""
    start = time.perf_counter()
    model = load_trained(checkpoint, bench, name)
    result = evaluate_with_detectors(model, bench, noisy_bench=bench)
    result["budget"] = {"steps": summary["steps"], "target_exposures": summary.get("target_exposures"),
                        "exposures_by_language": summary.get("exposures_by_language"),
                        "batch_size": model.meta["train_config"]["batch_size"], "train_seconds": summary["train_seconds"],
                        "best_epoch": summary["best_epoch"], "epochs": summary["epochs"],
                        "eval_seconds": time.perf_counter() - start}
    return result


def _finished(runs, root: Path | None) -> list[dict]:
    return [read_json(run.folder(root) / RESULT_FILE) for run in runs if (run.folder(root) / RESULT_FILE).exists()]


def collect(world: str, root: Path | None = None) -> list[dict]:
    """Every finished run's ``result.json`` of the world's current grid (runs of other configs are ignored), for the
    grid's methods and any other registered method run at its budget (``--methods <a plugin>``)."""

    methods = PROTOCOL[world].methods
    return _finished(grid(world, methods=(*methods, *(m for m in METHODS.list() if m not in methods))), root)


def collect_fine_tuned(world: str, root: Path | None = None) -> list[dict]:
    """Every finished fine-tuned run's ``result.json`` of the world (seeds 0-9: the setting has no fixed seed list)."""
    return _finished(fine_tuned_runs(world, seeds=range(10)), root)


def collect_ablations(world: str, root: Path | None = None) -> list[dict]:
    """Every finished ablation run's ``result.json`` of the world (``variant`` names its ablation)."""
    return _finished(ablation_runs(world), root)


def merge_results(old: list[dict], new: list[dict]) -> list[dict]:
    """The records of ``old`` that ``new`` does not redo, then ``new`` (a rerun replaces its older record)."""
    redone = {records.run_key(r) for r in new}
    return [r for r in old if records.run_key(r) not in redone] + list(new)


# ----------------------------------------------------------------------------------------------------
# cost
# ----------------------------------------------------------------------------------------------------
def measure_seconds_per_step(world: str, workbenches: Workbenches, steps: int = 8) -> dict[tuple, float]:
    """Seconds per optimiser step of every (setting, method) of the world's grid, timed on ``steps`` steps
    after one warm-up step (a calibration for :func:`budget`; nothing is written)."""
    out = {}
    for run in grid(world, seeds=(0,), noise=(0.0,)):
        cfg = run.train_config()
        cfg.max_steps, cfg.epochs = steps + 1, 1
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, Path(tmp), progress=False, bench=workbenches.get(run),
                  on_step=lambda info: times.append(time.perf_counter()))
        out[(run.setting, run.method)] = (times[-1] - times[0]) / max(len(times) - 1, 1)
    return out


def budget(world: str, per_step: dict[tuple, float], eval_seconds: float) -> tuple[float, list[str]]:
    """Estimated seconds of the whole grid (steps × s/step + evaluation, per run), and a table of it."""
    proto = PROTOCOL[world]
    lines = ["| setting | method | runs | s/step | est. s per run | est. s |", "|---|---|---|---|---|---|"]
    total = 0.0
    runs = grid(world)
    for setting, method in sorted({(r.setting, r.method) for r in runs}):
        n = sum(1 for r in runs if (r.setting, r.method) == (setting, method))
        per_run = per_step[(setting, method)] * proto.steps + eval_seconds
        total += n * per_run
        lines.append(f"| {setting} | {method} | {n} | {per_step[(setting, method)]:.3f} | {per_run:.0f} | {n * per_run:.0f} |")
    lines.append(f"| all | | {len(runs)} | | | {total:.0f} ({total / 3600:.2f} h) |")
    return total, lines


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of the checkpoint folder ``src`` (written beside it, then renamed)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    old = dst.with_name(f".{dst.name}.old")
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
