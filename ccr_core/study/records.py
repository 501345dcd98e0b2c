"""Run records, in one place: where they live, how they are read and filtered, what budget a record's model saw,
whether its learning curve had flattened, and how a workspace's records are published into the repository.

Two places hold records of the same kinds (``protocol-<world>.json``: the grid; ``ablations-<world>.json``;
``fine-tuned-<world>.json``; ``pilot-<world>.json``; ``<world>.json``: the shipped models):

- the **workspace** (``<CCR_WORKSPACE>/results/``), where every grid command writes;
- the **repository** (``results/``), which RESULTS.md, README's table and the dashboard read. Only
  :func:`publish` writes there, and it never replaces a committed record silently: a record whose numbers differ from
  the committed one of the same run is refused unless the caller asks to replace it (``--publish --replace``).

Tables read records through :func:`table_records` only: the records of one scored budget (the world's protocol
budget), each scored at the end of that budget. A cell of a table is shown with all of its runs or not at all; no
record is kept or dropped by its outcome.
"""
from __future__ import annotations

import math
from pathlib import Path

from ccr_core import paths
from ccr_core.io import read_json, write_json_atomic
from ccr_core.methods import REFERENCE
from ccr_core.study.grid import PROTOCOL, config_digest, same_as_floor

KINDS = ("protocol", "ablations", "fine-tuned", "pilot")
CONVERGENCE_GAIN = 0.01  # a run still gaining more than 1% (relative) over the last quarter of its budget has not converged
CONVERGENCE_METRIC = "target_sumr"  # the curve's value the rule reads (validation SumR, mean over target languages)


class PublishConflict(Exception):
    """Publishing would replace committed records with different numbers."""


# ----------------------------------------------------------------------------------------------------
# where
# ----------------------------------------------------------------------------------------------------
def repo_results_dir() -> Path:
    """The repository's results (what RESULTS.md, README and the dashboard read)."""
    return paths.REPO_ROOT / "results"


def workspace_results_dir() -> Path:
    """Where the grid writes its records (``<CCR_WORKSPACE>/results``)."""
    return paths.workspace_dir() / "results"


def record_path(kind: str, world: str, root: Path | None = None) -> Path:
    """``<root>/<kind>-<world>.json`` (``kind`` "shipped": ``<root>/<world>.json``); root: the repository's results."""
    root = root or repo_results_dir()
    return root / (f"{world}.json" if kind == "shipped" else f"{kind}-{world}.json")


def load(kind: str, world: str, root: Path | None = None) -> list[dict] | dict:
    """The records of one kind and world (``[]``, or ``{}`` for "shipped", when there are none)."""
    path = record_path(kind, world, root)
    if path.exists():
        return read_json(path)
    return {} if kind == "shipped" else []


_BY_CONFIG: dict = {}  # (record file, its mtime and size) -> {(setting, variant, config digest): record}


def _by_config(path: Path) -> dict:
    """A record file's records keyed by (setting, variant, training-config digest); read once per version of the file
    (a grid asks for every run it has not finished). The first record of a key wins."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _BY_CONFIG:
        _BY_CONFIG[key] = {(r.get("setting"), r.get("variant", ""), config_digest(r["train_config"])): r
                           for r in reversed(read_json(path)) if r.get("train_config")}
    return _BY_CONFIG[key]


def find_by_config(world: str, setting: str, variant: str, train_config: dict, root: Path | None = None) -> tuple[Path, dict] | None:
    """The record, of any kind in :data:`KINDS`, of the run with this world, setting, variant and training config
    (compared by the digest that names run folders), with its file; None when ``root`` has none."""
    key = (setting, variant, config_digest(train_config))
    for kind in KINDS:
        path = record_path(kind, world, root)
        if (record := _by_config(path).get(key)) is not None:
            return path, record
    return None


def shipped_records(root: Path | None = None) -> dict[str, dict]:
    """``{world: records of its shipped models}`` for every world with a shipped-models file."""
    root = root or repo_results_dir()
    return {p.stem: read_json(p) for p in sorted(root.glob("*.json")) if not p.stem.startswith(tuple(f"{k}-" for k in KINDS))}


# ----------------------------------------------------------------------------------------------------
# what a record's model saw
# ----------------------------------------------------------------------------------------------------
def scored_budget(record: dict) -> dict:
    """What the scored model of a run saw: ``{"checkpoint", "steps", "target_exposures", ...}``.

    A record written by the runner says so (``record["scored"]``). An older record scored its best validation epoch;
    its steps are then ``steps · best_epoch / epochs`` (every epoch has the same number of full batches), and it counts
    as scored at the end of its budget only when the best epoch was the last."""
    if "scored" in record:
        return record["scored"]
    budget = record.get("budget", {})
    epochs, best = budget.get("epochs") or 1, budget.get("best_epoch") or budget.get("epochs") or 1
    exposures = budget.get("target_exposures")
    return {"checkpoint": "end of budget" if best == epochs else "best validation epoch",
            "steps": round(budget.get("steps", 0) * best / epochs),
            "target_exposures": round(exposures * best / epochs) if exposures is not None else None}


def scored_steps(record: dict) -> int:
    return int(scored_budget(record)["steps"])


def at_end_of_budget(record: dict) -> bool:
    return scored_budget(record)["checkpoint"] == "end of budget"


def run_record(world: str, shipped_row: dict, root: Path | None = None) -> dict | None:
    """The grid record a shipped model was copied from: a protocol record (a fine-tuned one for a fine-tuned model) of
    the same setting, method and noise rate, seed 0, the first draw of noisy pairs, scored at the same steps. None for a
    model shipped before the protocol, or when its record is not committed."""
    if not shipped_row.get("scored"):
        return None
    kind = "fine-tuned" if shipped_row.get("fine_tuned") else "protocol"
    want = (shipped_row.get("method"), shipped_row.get("setting"), shipped_row.get("noise_rate"), 0, 0, scored_steps(shipped_row))
    return next((r for r in load(kind, world, root) if at_end_of_budget(r) and (
        r.get("method"), r.get("setting"), r.get("noise_rate"), r.get("seed"), r.get("noise_seed", 0), scored_steps(r)) == want), None)


def run_converged(world: str, shipped_row: dict, root: Path | None = None) -> bool | None:
    """:func:`converged` for the grid run a shipped model was copied from (:func:`run_record`) at its scored steps;
    None when there is no such record or its curve cannot tell."""
    run = run_record(world, shipped_row, root)
    return None if run is None else converged(run, scored_steps(run))


def summary_budget(summary: dict, epoch: int | None = None) -> dict:
    """What the model saved at ``epoch`` saw (the run's end when None), from the trainer's summary: what a new record's
    ``scored`` holds."""
    if epoch is None or epoch == summary["epochs"]:
        return {"checkpoint": "end of budget", "steps": summary["steps"], "target_exposures": summary.get("target_exposures"),
                "exposures_by_language": summary.get("exposures_by_language")}
    entry = next(h for h in summary["history"] if h["epoch"] == epoch)
    return {"checkpoint": "best validation epoch", "epoch": epoch, "steps": entry["step"],
            "target_exposures": entry.get("target_exposures"), "exposures_by_language": entry.get("exposures_by_language")}


# ----------------------------------------------------------------------------------------------------
# the one filter every table uses
# ----------------------------------------------------------------------------------------------------
def table_records(records: list[dict], steps: int) -> list[dict]:
    """The records a table may show: scored at the end of a budget of exactly ``steps`` optimiser steps.

    Records of another budget (older grids, the pilot) are not table rows; a cell whose runs are all here is shown
    whole. Nothing is chosen by its outcome."""
    return [r for r in records if at_end_of_budget(r) and scored_steps(r) == steps]


def for_tables(records: list[dict], world: str) -> list[dict]:
    """What a table of ``world`` shows: :func:`table_records` at the world's protocol budget, without runs of a method
    that is the floor's model in its setting (the baseline in the common setting: the floor's row stands for both)."""
    def duplicate(r):  # a method no longer registered (a plugin's record) is shown as it is: same_as_floor is False
        return r["method"] != REFERENCE and same_as_floor(r["method"], r["setting"])

    if world in PROTOCOL:
        steps = PROTOCOL[world].steps
    else:  # a world without a protocol here (records brought from elsewhere): its records must share one budget
        budgets = mixed_budgets([r for r in records if at_end_of_budget(r)])
        if len(budgets) > 1:
            raise ValueError(f"{world}: records of several budgets ({sorted(budgets)} steps) and no protocol to choose one")
        steps = next(iter(budgets), 0)
    return complete_cells([r for r in table_records(records, steps) if not duplicate(r)], world)


def complete_cells(records: list[dict], world: str) -> list[dict]:
    """The records of the cells (setting, method, variant, noise rate) that hold every run the world's protocol plans for
    them: each of its seeds, with each noise draw the cell has (:attr:`WorldProtocol.noise_draws`). A cell still
    filling is in no table, so no cell is shown with some of its runs (a world without a protocol keeps every record)."""
    proto = PROTOCOL.get(world)
    if proto is None:
        return records

    def cell(r):
        return r["setting"], r["method"], r.get("variant", ""), r["noise_rate"]

    def planned(r):
        draws = (0,) if r.get("variant") else proto.draws(r["setting"], r["noise_rate"])
        return {(seed, draw) for seed in proto.seeds for draw in draws}

    have: dict = {}
    for r in records:
        have.setdefault(cell(r), set()).add((r["seed"], r.get("noise_seed", 0)))
    return [r for r in records if planned(r) <= have[cell(r)]]


def world_table_records(kind: str, world: str, root: Path | None = None) -> list[dict]:
    """The records of one kind and world that its tables show (:func:`for_tables`)."""
    return for_tables(load(kind, world, root), world)


def mixed_budgets(records: list[dict]) -> set[int]:
    """The scored step counts among ``records`` (a table's rows must have exactly one)."""
    return {scored_steps(r) for r in records}


# ----------------------------------------------------------------------------------------------------
# learning curves
# ----------------------------------------------------------------------------------------------------
def curve_values(record_or_curve, metric: str = CONVERGENCE_METRIC) -> list[tuple[int, float]]:
    """``[(step, value)]`` of a record's learning curve (or of a curve), points without the metric left out."""
    curve = record_or_curve.get("curve", []) if isinstance(record_or_curve, dict) else record_or_curve
    return [(int(p["step"]), float(p[metric])) for p in curve if p.get(metric) is not None]


def value_at(points: list[tuple[int, float]], step: float) -> float | None:
    """The curve at ``step``, linear between its points (None before the first point or after the last)."""
    if not points or step < points[0][0] or step > points[-1][0]:
        return None
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if s0 <= step <= s1:
            return v0 if s1 == s0 else v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    return points[-1][1]


def late_gain(points: list[tuple[int, float]], budget: int | None = None) -> float | None:
    """Relative gain of the curve over the last quarter of a budget: ``(v(B) − v(0.75 B)) / v(0.75 B)``; ``B`` the
    curve's last step unless given. None when the curve does not reach back to 0.75 B or has fewer than 3 points."""
    if len(points) < 3:
        return None
    budget = budget or points[-1][0]
    start, end = value_at(points, 0.75 * budget), value_at(points, budget)
    if start is None or end is None or start <= 0:
        return None
    return (end - start) / start


def converged(record_or_curve, budget: int | None = None, metric: str = CONVERGENCE_METRIC) -> bool | None:
    """The rule: a run has converged at ``budget`` when its curve gains at most 1% (relative) over the budget's last
    quarter. None: the curve cannot tell (no curve, or too few points)."""
    gain = late_gain(curve_values(record_or_curve, metric), budget)
    return None if gain is None else gain <= CONVERGENCE_GAIN


def converged_budget(curves: dict[str, list], candidates=None, metric: str = CONVERGENCE_METRIC) -> tuple[int | None, dict]:
    """The smallest budget at which every curve has converged by :func:`converged`, among ``candidates`` (default: the
    steps of the curves' points); and per curve the smallest budget at which it alone has (None: not within its curve).
    Returns ``(budget or None when some curve never converges, {name: its own smallest budget})``."""
    own = {}
    for name, curve in curves.items():
        points = curve_values(curve, metric)
        steps = sorted(candidates) if candidates is not None else [s for s, _ in points]
        own[name] = next((s for s in steps if s <= (points[-1][0] if points else 0) and converged(curve, s, metric)), None)
    if not own or any(v is None for v in own.values()):
        return None, own
    return max(own.values()), own


def convergence_mark(record: dict) -> str:
    """"" for a converged run, "not converged" for a run still gaining, "no curve" for a record without one."""
    verdict = converged(record)
    return "no curve" if verdict is None else "" if verdict else "not converged"


# ----------------------------------------------------------------------------------------------------
# publishing
# ----------------------------------------------------------------------------------------------------
def run_key(record: dict) -> tuple:
    """What identifies a run across records: world, setting, method (+ variant), noise rate and draw, seed, scored steps."""
    return (record.get("world"), record["setting"], record["method"], record.get("variant", ""), record["noise_rate"],
            record.get("noise_seed", 0), record["seed"], scored_steps(record))


VOLATILE = ("train_seconds", "eval_seconds", "seconds", "curve_seconds", "captions_per_s", "torch_threads")


def numbers(record):
    """A record without its measured times (what must be equal for two records of a run to be the same result)."""
    if isinstance(record, dict):
        return {k: numbers(v) for k, v in record.items() if k not in VOLATILE}
    if isinstance(record, list):
        return [numbers(v) for v in record]
    if isinstance(record, float) and math.isnan(record):
        return "nan"
    return record


def merge(committed: list[dict], new: list[dict], replace: bool = False) -> tuple[list[dict], list[tuple]]:
    """``committed`` with ``new`` added: a run not committed yet is added; a run committed with the same numbers is
    left as committed; a run committed with other numbers is a conflict -- replaced only with ``replace``.
    Returns ``(merged, conflicting run keys)``."""
    by_key = {run_key(r): r for r in committed}
    conflicts = []
    out = list(committed)
    for record in new:
        key = run_key(record)
        old = by_key.get(key)
        if old is None:
            out.append(record)
            by_key[key] = record
        elif numbers(old) != numbers(record):
            conflicts.append(key)
            if replace:
                out[out.index(old)] = record
                by_key[key] = record
    return out, conflicts


def _publishing(kind: str, world: str, replace: bool, source: Path | None, target: Path | None) -> tuple[Path, list[dict]] | None:
    """(target file, merged records) of publishing one kind and world; None when the workspace has none. Raises
    :class:`PublishConflict` when a committed record would change and ``replace`` is not given."""
    new = load(kind, world, source or workspace_results_dir())
    if not new:
        return None
    path = record_path(kind, world, target)
    merged, conflicts = merge(load(kind, world, target), new, replace)
    if conflicts and not replace:
        listing = "\n".join(f"  {'/'.join(str(x) for x in key)}" for key in conflicts[:20])
        raise PublishConflict(f"{path}: {len(conflicts)} committed record(s) would change (the same run with other numbers):\n"
                              f"{listing}\nNothing was written. Publish with --replace to replace them, or keep the committed ones.")
    return path, merged


def publish_all(jobs, replace: bool = False, source: Path | None = None, target: Path | None = None) -> list[Path]:
    """Merge the workspace's records of every ``(kind, world)`` into the repository's (see :func:`merge`). Every job is
    checked before any file is written, so a :class:`PublishConflict` leaves every committed file as it was."""
    planned = [found for kind, world in jobs if (found := _publishing(kind, world, replace, source, target))]
    for path, merged in planned:
        write_json_atomic(path, merged)
    return [path for path, _ in planned]


def publish(kind: str, world: str, replace: bool = False, source: Path | None = None, target: Path | None = None) -> Path | None:
    """:func:`publish_all` of one kind and world: the file written, or None when the workspace has no such records."""
    return next(iter(publish_all([(kind, world)], replace, source, target)), None)
