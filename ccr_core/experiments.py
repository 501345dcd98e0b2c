"""The experiments behind ``RESULTS.md`` and the shipped checkpoints, one resumable command per world:

    python -m ccr_core.experiments --world demo-world          # the demo-world grid (docs/methods.md §8), into the workspace
    python -m ccr_core.experiments --world flickr8k-ml         # the real-photo grid
    python -m ccr_core.experiments --world demo-world --pilot  # seed 0 of every method at a long budget: the learning curves
    python -m ccr_core.experiments --world demo-world --publish  # the workspace's records into results/, RESULTS.md, README
    python -m ccr_core.experiments --world demo-world --steps 738   # the grid at another budget (before the protocol moves to it)
    python -m ccr_core.experiments --world demo-world --budget # time a few steps per method, print the grid's cost
    python -m ccr_core.experiments --world demo-world --ship   # copy each method's seed-0 model into checkpoints/
    python -m ccr_core.experiments --world demo-world --ship-finished  # the same, from the runs finished so far (no grid run)
    python -m ccr_core.experiments --world flickr8k-ml --ablations  # one config change per stated cause of a gap
    python -m ccr_core.experiments --plots                     # docs/protocol-<world>.png (needs chromium)
    python -m ccr_core.experiments --markdown-only             # rewrite RESULTS.md and README's table from results/*.json
    python -m ccr_core.experiments --world demo-world --executor ray --address auto  # each run a Ray task (docs/scaling.md)

The grid (:mod:`ccr_core.study`): every method at the same steps, in the "published" setting (own heads) and the
"common encoder" setting (the floor's heads), at 3 seeds, over the world's noise rates, each run scored at the end of
its budget, with a learning curve; finished runs are skipped, killed ones resume. Per-run records are merged into
``<CCR_WORKSPACE>/results/protocol-<world>.json``: a grid command never writes the repository. ``--publish`` merges the
workspace's records into ``results/`` (refusing to replace a committed record whose numbers differ, unless
``--replace``) and rewrites RESULTS.md and README's headline table from ``results/`` alone (:mod:`ccr_core.study.records`).
``--ship`` copies seed-0 models into ``checkpoints/`` and evaluates the shipped float16 copies into ``results/<world>.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from pathlib import Path

from ccr_core import paths
from ccr_core.study import executors
from ccr_core.io import read_json, write_json_atomic, write_text_atomic
from ccr_core.methods import PLUGIN_ENV, REFERENCE, load_plugins, method_sort_key
from ccr_core.paths import REPO_ROOT
from ccr_core.study import grid as study_grid
from ccr_core.study import records
from ccr_core.study import runner
from ccr_core.study.plots import write_plots
from ccr_core.study.report import convergence_by_cell, pilot_markdown, protocol_markdown, run_seconds
from ccr_core.study.shipped import results_markdown, ship
from ccr_core.study.stats import cells, format_difference, format_interval, units_label
from ccr_core.study.variants import ablation_markdown, fine_tuned_markdown

WORLDS = tuple(study_grid.PROTOCOL)
README_TABLE_START, README_TABLE_END = "<!-- headline table: python -m ccr_core.experiments --markdown-only -->", "<!-- end of headline table -->"


def run_grid(world: str, progress: bool = True, executor=None, **narrow) -> list[dict]:
    """Every run of the world's grid (narrowed by methods/settings/seeds/noise/draws), then its results file."""
    run_all(study_grid.grid(world, **narrow), progress, executor)
    return write_protocol_results(world)


def run_all(runs: list, progress: bool, executor=None) -> None:
    """Train and evaluate every run not finished yet, one line per run (the grid's, the ablations', the fine-tuned):
    in this process (``executors.LocalExecutor``, the default) or as the executor says (``--executor ray``)."""
    (executor or executors.LocalExecutor()).run(runs, progress)


def _merge_into(kind: str, world: str, results: list[dict]) -> list[dict]:
    """The workspace's records of one kind and world, with ``results`` merged in (a run done again replaces its
    workspace record; the repository's records change only through :func:`publish`)."""
    path = records.record_path(kind, world, records.workspace_results_dir())
    merged = runner.merge_results(read_json(path) if path.exists() else [], results)
    if merged:
        write_json_atomic(path, merged)
    return merged


def run_pilot(world: str, progress: bool = True, executor=None, methods=None) -> list[dict]:
    """The world's pilot (:func:`ccr_core.study.grid.pilot_runs`), cheapest methods first, into the workspace's
    ``pilot-<world>.json``."""
    cost = {key[1]: seconds for key, (seconds, _) in run_seconds(records.load("protocol", world)).items() if key[0] == "common"}
    # the cheapest methods first (by their recorded run times), so most curves come early
    runs = sorted(study_grid.pilot_runs(world, methods), key=lambda r: (cost.get(r.method, 0.0), r.setting != "common", r.noise))
    run_all(runs, progress, executor)
    return _merge_into("pilot", world, runner._finished(runs, None))


def run_ablations(world: str, progress: bool = True, seeds=None, executor=None) -> list[dict]:
    """The world's ablation runs (resumable like the grid), merged into the workspace's ``ablations-<world>.json``."""
    run_all(study_grid.ablation_runs(world, seeds), progress, executor)
    return _merge_into("ablations", world, runner.collect_ablations(world))


def run_fine_tuned(world: str, progress: bool = True, seeds=None, methods=None, executor=None) -> list[dict]:
    """The world's fine-tuned runs (seed 0 unless ``seeds``), merged into the workspace's ``fine-tuned-<world>.json``."""
    if world not in study_grid.FINE_TUNED:
        raise SystemExit(f"{world}: no fine-tuned setting in study.grid.FINE_TUNED (worlds with one: {', '.join(study_grid.FINE_TUNED)})")
    run_all(study_grid.fine_tuned_runs(world, seeds=tuple(seeds or (0,)), methods=methods), progress, executor)
    return _merge_into("fine-tuned", world, runner.collect_fine_tuned(world))


def write_protocol_results(world: str) -> list[dict]:
    """The world's finished run folders merged into the workspace's ``protocol-<world>.json``."""
    return _merge_into("protocol", world, runner.collect(world))


def collect_workspace(world: str) -> None:
    """The world's finished run folders of every kind (grid, pilot, ablations, fine-tuned) merged into the workspace's
    record files, so that runs of a grid or pilot still under way (or killed) can be published."""
    if not (paths.workspace_dir() / "runs").is_dir():
        return
    write_protocol_results(world)
    _merge_into("pilot", world, runner._finished(study_grid.pilot_runs(world), None))
    _merge_into("ablations", world, runner.collect_ablations(world))
    if world in study_grid.FINE_TUNED:
        _merge_into("fine-tuned", world, runner.collect_fine_tuned(world))


def publish(worlds, replace: bool = False) -> list[Path]:
    """Every kind of record of ``worlds`` from the workspace into ``results/`` (:func:`ccr_core.study.records.publish`),
    with the finished run folders collected first (:func:`collect_workspace`); all kinds are checked before any is
    written, so a conflict writes nothing."""
    for world in worlds:
        collect_workspace(world)
    return records.publish_all([(kind, world) for world in worlds for kind in records.KINDS], replace=replace)


def render_results_md() -> str:
    """RESULTS.md from results/*.json: the comparison sections, then the shipped models' table."""
    shipped = records.shipped_records()
    lines = ["# Results", "",
             "Two kinds of numbers. **The comparison** (first): every method at the same budget, in two settings, at 3 seeds with "
             "95% intervals (`ccr_core/study/`, docs/methods.md §8); only those support research answers, and every verdict word "
             "(holds, met, above, not resolved) is computed from an interval. **The shipped models** (after it): the one seed-0 "
             "model per method the dashboard serves, evaluated as shipped (float16).", "",
             "## The comparison", ""]
    tuned_runs = {}
    for world in WORLDS:
        results, pilot = records.load("protocol", world), records.load("pilot", world)
        if not results and not pilot:
            continue
        lines += pilot_markdown(world, pilot)
        lines += protocol_markdown(world, results)
        grid_rows, steps = records.for_tables(results, world), study_grid.PROTOCOL[world].steps
        for kind, render in (("ablations", ablation_markdown), ("fine-tuned", fine_tuned_markdown)):
            stored = records.load(kind, world)
            rows = records.table_records(stored, steps)
            if rows:
                lines += render(world, grid_rows, rows)
            if len(rows) < len(stored):
                lines += [f"*{kind} ({world})*: {len(stored) - len(rows)} committed records were scored at other budgets "
                          f"({', '.join(f'{s:,}' for s in sorted(records.mixed_budgets(stored) - {steps}))} steps) and are in no "
                          f"table; `python -m ccr_core.experiments --world {world} --{kind}` runs them at {steps:,} steps.", ""]
            if kind == "fine-tuned" and rows:
                tuned_runs[world] = rows
        if grid_rows and (study_grid_plot := REPO_ROOT / "docs" / f"protocol-{world}.png").exists():
            lines += [f"![target SumR against noise rate, {world}](docs/{study_grid_plot.name})", ""]
    if len(lines) == 7:
        lines += ["No protocol runs yet: `python -m ccr_core.experiments --world demo-world`.", ""]
    lines.append(results_markdown(shipped, tuned_runs).replace("# Results\n", "## The shipped models\n", 1))
    return "\n".join(lines)


def headline_table() -> str:
    """README's one table: per world, the common-encoder cell of each method at noise 0 and 40% (target SumR, mean ± 95%
    over runs scored at the end of the budget) and each method − floor at noise 0, with its verdict."""
    out = ["| world | method | target SumR, clean | target SumR, 40% noisy pairs | − floor, clean |", "|---|---|---|---|---|"]
    for world in WORLDS:
        results = records.world_table_records("protocol", world)
        table, marks = cells(results), convergence_by_cell(results)
        floor = table.get(("common", REFERENCE, 0.0))
        for method in sorted({k[1] for k in table if k[0] == "common"}, key=method_sort_key):
            clean, noisy = table.get(("common", method, 0.0)), table.get(("common", method, 0.4))
            if clean is None:
                continue
            versus = "" if method == REFERENCE or floor is None else format_difference(clean["per_unit"]["target SumR"], floor["per_unit"]["target SumR"])
            noisy_cell = (f"{format_interval(noisy['stats']['target SumR'])} ({units_label(len(noisy['units']))}"
                          f"{_mark(marks, ('common', method, 0.4))})" if noisy else "not run")
            out.append(f"| {world} | {method} | {format_interval(clean['stats']['target SumR'])} ({units_label(len(clean['units']))}"
                       f"{_mark(marks, ('common', method, 0.0))}) | {noisy_cell} | {versus} |")
    return "\n".join(out)


def _mark(marks: dict, key: tuple) -> str:
    """", not converged (k of n runs)" / ", no curve" beside a number whose runs had not flattened or cannot tell."""
    mark = marks.get(key, "")
    return "" if mark in ("", "yes") else f", {mark}"


def write_readme_table(readme: Path = REPO_ROOT / "README.md") -> Path:
    """Replace README's headline table (between its two markers) with :func:`headline_table`."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_TABLE_START) + r".*?" + re.escape(README_TABLE_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme}: the headline table's markers are missing ({README_TABLE_START!r} ... {README_TABLE_END!r})")
    write_text_atomic(readme, pattern.sub(lambda _: f"{README_TABLE_START}\n{headline_table()}\n{README_TABLE_END}", text))
    return readme


def write_results_md() -> Path:
    path = REPO_ROOT / "RESULTS.md"
    write_text_atomic(path, render_results_md())
    return path


def print_budget(world: str, progress: bool = True) -> None:
    workbenches = runner.Workbenches(progress)
    per_step = runner.measure_seconds_per_step(world, workbenches)
    runs = runner.collect(world)
    evals = [r["budget"]["eval_seconds"] for r in runs if r.get("budget", {}).get("eval_seconds")]
    eval_seconds = sum(evals) / len(evals) if evals else 30.0
    total, lines = runner.budget(world, per_step, eval_seconds)
    print("\n".join(lines))
    print(f"evaluation per run: {eval_seconds:.0f} s ({'measured on ' + str(len(evals)) + ' finished runs' if evals else 'a guess: no run finished yet'})")


def _train(args, executor, narrow: dict) -> None:
    """The training part of a command: the pilot, the fine-tuned setting, the ablations, shipping finished runs, or the
    grid (then shipping, with --ship)."""
    if args.pilot:
        for world in args.world:
            run_pilot(world, progress=not args.quiet, executor=executor, methods=args.methods)
    elif args.fine_tuned:
        for world in args.world:
            run_fine_tuned(world, progress=not args.quiet, seeds=args.seeds, methods=args.methods, executor=executor)
            if args.ship:
                ship(world, progress=not args.quiet, methods=args.methods, fine_tuned=True)
    elif args.ablations:
        for world in args.world:
            run_ablations(world, progress=not args.quiet, seeds=args.seeds, executor=executor)
    elif args.ship_finished:
        if args.threads:  # a restored run is retrained here to ship it: with the grid's thread count, it repeats its record
            import torch

            torch.set_num_threads(args.threads)
        for world in args.world:
            ship(world, progress=not args.quiet, methods=args.methods)
    else:
        for world in args.world:
            start = time.perf_counter()
            run_grid(world, progress=not args.quiet, executor=executor, **narrow)
            print(f"== {world} grid done in {time.perf_counter() - start:.0f} s", flush=True)
            if args.ship:
                ship(world, progress=not args.quiet, methods=args.methods)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccr_core.experiments", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", nargs="+", default=[], choices=WORLDS, help="worlds whose grid to run (default: none; with --markdown-only or --plots, every world's files are read)")
    parser.add_argument("--methods", nargs="+", help="only these methods (default: every method of the protocol)")
    parser.add_argument("--settings", nargs="+", choices=study_grid.SETTINGS, help="only these settings")
    parser.add_argument("--seeds", nargs="+", type=int, help="only these seeds (default 0 1 2)")
    parser.add_argument("--noise", nargs="+", type=float, help="only these noise rates")
    parser.add_argument("--draws", nargs="+", type=int, help="only these draws of noisy pairs (noise seeds; default: 0, and 1 where the world's protocol asks)")
    parser.add_argument("--budget", action="store_true", help="time a few steps of every (setting, method) and print the grid's estimated cost; trains nothing")
    parser.add_argument("--ship", action="store_true", help="after the grid, copy each method's seed-0 model (only --methods, when given) into checkpoints/<world>/ and update results/<world>.json")
    parser.add_argument("--ship-finished", action="store_true", help="as --ship, without running the grid first: ship the seed-0 models of "
                        "the grid's runs that are finished (a method whose seed-0 runs are not keeps its shipped model and says so)")
    parser.add_argument("--plots", action="store_true", help="render docs/protocol-<world>.png (headless chromium)")
    parser.add_argument("--markdown-only", action="store_true", help="only rewrite RESULTS.md and README's headline table from results/*.json")
    parser.add_argument("--pilot", action="store_true", help="run the world's pilot instead of its grid: seed 0 of every method, both "
                        "settings, clean and 40%% noise, at the pilot's long budget with a learning-curve point every eval_every steps "
                        "(study.grid.PROTOCOL), into the workspace's pilot-<world>.json; it decides the grid's budget")
    parser.add_argument("--publish", action="store_true", help="(trains nothing) merge the workspace's records of --world (default: every world) into "
                        "results/, then rewrite RESULTS.md and README's headline table; a committed record whose numbers would change "
                        "is refused (nothing is written) unless --replace")
    parser.add_argument("--replace", action="store_true", help="with --publish: replace committed records that differ")
    parser.add_argument("--ablations", action="store_true", help="run the world's ablations (study.grid.ABLATIONS: one config change "
                        "each, testing a stated cause of a gap) instead of its grid, into results/ablations-<world>.json")
    parser.add_argument("--fine-tuned", action="store_true", help="run the world's fine-tuned setting (study.grid.FINE_TUNED: every method "
                        "in the common encoder with backbone tops trained, seed 0 unless --seeds) into results/fine-tuned-<world>.json; "
                        "with --ship, those models replace the frozen ones in checkpoints/<world>/ (the frozen floor and baseline-en stay)")
    parser.add_argument("--steps", type=int, metavar="N", help="the grid's budget (and its ablations' and fine-tuned runs') instead of the "
                        "protocol's: to collect the runs of a new budget (chosen by the pilot) before the protocol moves to it. "
                        "Their records are published beside the others; tables show only the protocol's budget")
    parser.add_argument("--curve-every", type=int, metavar="N", help="steps between the grid's learning-curve points (default: the protocol's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import a module that registers methods (for --methods)")
    executors.add_arguments(parser)
    args = parser.parse_args(argv)
    executor = executors.from_args(args)
    if args.plugin:

        load_plugins(args.plugin)
        os.environ[PLUGIN_ENV] = ",".join(filter(None, [os.environ.get(PLUGIN_ENV, ""), *args.plugin]))  # and in every worker
    other_budget = args.steps is not None or args.curve_every is not None
    protocol = dict(study_grid.PROTOCOL)  # put back before the tables are written: they show the protocol's budget
    if other_budget:
        if not args.world:
            parser.error("--steps and --curve-every need --world")
        if args.pilot or args.ship or args.ship_finished:
            parser.error("--steps sets the budget of runs collected before the protocol moves to it; the pilot's budget is "
                         "study.grid.PROTOCOL's pilot_steps, and --ship ships the protocol's budget")
        if any(n is not None and n < 1 for n in (args.steps, args.curve_every)):
            parser.error("--steps and --curve-every must be at least 1")
        for world in args.world:
            proto = study_grid.PROTOCOL[world]
            study_grid.PROTOCOL[world] = dataclasses.replace(proto, steps=args.steps or proto.steps,
                                                             grid_eval_every=args.curve_every or proto.grid_eval_every)
    narrow = {"methods": args.methods, "settings": args.settings, "seeds": args.seeds, "noise": args.noise, "draws": args.draws}
    if args.budget:
        for world in args.world:
            print_budget(world, progress=not args.quiet)
        return 0
    training = not (args.markdown_only or args.publish)  # publishing and rewriting only read records: nothing is trained
    if training:
        _train(args, executor, narrow)
    if args.publish:
        try:
            for path in publish(args.world or WORLDS, replace=args.replace):
                print(f"published {path}")
        except records.PublishConflict as exc:
            print(f"not published: {exc}", file=sys.stderr)
            return 2
    if other_budget:
        study_grid.PROTOCOL.update(protocol)
    if args.plots:
        for path in write_plots(records.repo_results_dir(), WORLDS):
            print(f"wrote {path}")
    if args.publish or args.markdown_only or args.plots or args.ship or args.ship_finished:
        print(f"wrote {write_results_md()}")
        print(f"wrote {write_readme_table()}")
    else:
        print(f"records are in {records.workspace_results_dir()}; `python -m ccr_core.experiments --world {' '.join(args.world)} "
              "--publish` puts them into results/, RESULTS.md and README")
    return 1 if executor.failed else 0  # failed runs were reported; the rest is written


if __name__ == "__main__":
    sys.exit(main())
