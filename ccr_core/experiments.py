"""The experiments behind ``RESULTS.md`` and the shipped checkpoints, one resumable command per world:

    python -m ccr_core.experiments --world demo-world          # the demo-world grid (docs/methods.md §8)
    python -m ccr_core.experiments --world flickr8k-ml         # the real-photo grid
    python -m ccr_core.experiments --world demo-world --budget # time a few steps per method, print the grid's cost
    python -m ccr_core.experiments --world demo-world --ship   # copy each method's seed-0 model into checkpoints/
    python -m ccr_core.experiments --world flickr8k-ml --ablations  # one config change per stated cause of a gap
    python -m ccr_core.experiments --plots                     # docs/protocol-<world>.png (needs chromium)
    python -m ccr_core.experiments --markdown-only             # rewrite RESULTS.md and README's table from results/*.json
    python -m ccr_core.experiments --world demo-world --executor ray --address auto  # each run a Ray task (docs/scaling.md)

The grid (:mod:`ccr_core.study`): every method at the same steps, in the "published" setting (own heads) and the
"common encoder" setting (the floor's heads), at 3 seeds, over the world's noise rates, each run scored at the end of
its budget; finished runs are skipped, killed ones resume. Per-run records are merged into
``results/protocol-<world>.json`` (a rerun replaces its older record). ``--ship`` evaluates the shipped float16 copies
and merges their numbers into ``results/<world>.json``, the table of the models the dashboard serves. RESULTS.md and
README's headline table are written from those files alone.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from ccr_core.study import executors
from ccr_core.io import read_json, write_json_atomic, write_text_atomic
from ccr_core.methods import PLUGIN_ENV, REFERENCE, load_plugins, method_sort_key
from ccr_core.paths import REPO_ROOT
from ccr_core.study import grid as study_grid
from ccr_core.study import runner
from ccr_core.study.plots import write_plots
from ccr_core.study.report import protocol_markdown
from ccr_core.study.shipped import RESULTS_DIR, results_markdown, ship
from ccr_core.study.stats import at_end_of_budget, cells, format_difference, format_interval, units_label
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


def _merge_into(path: Path, results: list[dict]) -> list[dict]:
    merged = runner.merge_results(read_json(path) if path.exists() else [], results)
    if merged:
        write_json_atomic(path, merged)
    return merged


def run_ablations(world: str, progress: bool = True, seeds=None, executor=None) -> list[dict]:
    """The world's ablation runs (resumable like the grid), merged into ``results/ablations-<world>.json``."""
    run_all(study_grid.ablation_runs(world, seeds), progress, executor)
    return _merge_into(RESULTS_DIR / f"ablations-{world}.json", runner.collect_ablations(world))


def run_fine_tuned(world: str, progress: bool = True, seeds=None, methods=None, executor=None) -> list[dict]:
    """The world's fine-tuned runs (seed 0 unless ``seeds``), merged into ``results/fine-tuned-<world>.json``."""
    if world not in study_grid.FINE_TUNED:
        raise SystemExit(f"{world}: no fine-tuned setting in study.grid.FINE_TUNED (worlds with one: {', '.join(study_grid.FINE_TUNED)})")
    run_all(study_grid.fine_tuned_runs(world, seeds=tuple(seeds or (0,)), methods=methods), progress, executor)
    return _merge_into(RESULTS_DIR / f"fine-tuned-{world}.json", runner.collect_fine_tuned(world))


def write_protocol_results(world: str) -> list[dict]:
    """The world's finished run folders merged into ``results/protocol-<world>.json`` (records of runs not in this
    workspace stay; a run done again replaces its record)."""
    return _merge_into(RESULTS_DIR / f"protocol-{world}.json", runner.collect(world))


def _read(name: str):
    path = RESULTS_DIR / name
    return read_json(path) if path.exists() else None


def render_results_md() -> str:
    """RESULTS.md from results/*.json: the comparison sections, then the shipped models' table."""
    shipped = {p.stem: read_json(p) for p in sorted(RESULTS_DIR.glob("*.json")) if not p.stem.startswith(("protocol-", "ablations-", "fine-tuned-"))}
    lines = ["# Results", "",
             "Two kinds of numbers. **The comparison** (first): every method at the same budget, in two settings, at 3 seeds with "
             "95% intervals (`ccr_core/study/`, docs/methods.md §8); only those support research answers, and every verdict word "
             "(holds, met, above, not resolved) is computed from an interval. **The shipped models** (after it): the one seed-0 "
             "model per method the dashboard serves, evaluated as shipped (float16).", "",
             "## The comparison", ""]
    tuned_runs = {}
    for world in WORLDS:
        results = _read(f"protocol-{world}.json")
        if not results:
            continue
        lines += protocol_markdown(world, results)
        if (ablations := _read(f"ablations-{world}.json")):
            lines += ablation_markdown(world, results, ablations)
        if (tuned := _read(f"fine-tuned-{world}.json")):
            lines += fine_tuned_markdown(world, results, tuned)
            tuned_runs[world] = tuned
        if (study_grid_plot := REPO_ROOT / "docs" / f"protocol-{world}.png").exists():
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
        results = [r for r in (_read(f"protocol-{world}.json") or []) if at_end_of_budget(r)]
        table = cells(results)
        floor = table.get(("common", REFERENCE, 0.0))
        for method in sorted({k[1] for k in table if k[0] == "common"}, key=method_sort_key):
            clean, noisy = table.get(("common", method, 0.0)), table.get(("common", method, 0.4))
            if clean is None:
                continue
            versus = "" if method == REFERENCE or floor is None else format_difference(clean["per_unit"]["target SumR"], floor["per_unit"]["target SumR"])
            noisy_cell = f"{format_interval(noisy['stats']['target SumR'])} ({units_label(len(noisy['units']))})" if noisy else "not run"
            out.append(f"| {world} | {method} | {format_interval(clean['stats']['target SumR'])} ({units_label(len(clean['units']))}) | "
                       f"{noisy_cell} | {versus} |")
    return "\n".join(out)


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
    parser.add_argument("--plots", action="store_true", help="render docs/protocol-<world>.png (headless chromium)")
    parser.add_argument("--markdown-only", action="store_true", help="only rewrite RESULTS.md and README's headline table from results/*.json")
    parser.add_argument("--ablations", action="store_true", help="run the world's ablations (study.grid.ABLATIONS: one config change "
                        "each, testing a stated cause of a gap) instead of its grid, into results/ablations-<world>.json")
    parser.add_argument("--fine-tuned", action="store_true", help="run the world's fine-tuned setting (study.grid.FINE_TUNED: every method "
                        "in the common encoder with backbone tops trained, seed 0 unless --seeds) into results/fine-tuned-<world>.json; "
                        "with --ship, those models replace the frozen ones in checkpoints/<world>/ (the frozen floor and baseline-en stay)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import a module that registers methods (for --methods)")
    executors.add_arguments(parser)
    args = parser.parse_args(argv)
    executor = executors.from_args(args)
    if args.plugin:

        load_plugins(args.plugin)
        os.environ[PLUGIN_ENV] = ",".join(filter(None, [os.environ.get(PLUGIN_ENV, ""), *args.plugin]))  # and in every worker
    narrow = {"methods": args.methods, "settings": args.settings, "seeds": args.seeds, "noise": args.noise, "draws": args.draws}
    if args.budget:
        for world in args.world:
            print_budget(world, progress=not args.quiet)
        return 0
    if args.fine_tuned and not args.markdown_only:
        for world in args.world:
            run_fine_tuned(world, progress=not args.quiet, seeds=args.seeds, methods=args.methods, executor=executor)
            if args.ship:
                ship(world, progress=not args.quiet, methods=args.methods, fine_tuned=True)
    elif args.ablations and not args.markdown_only:
        for world in args.world:
            run_ablations(world, progress=not args.quiet, seeds=args.seeds, executor=executor)
    elif not args.markdown_only:
        for world in args.world:
            start = time.perf_counter()
            run_grid(world, progress=not args.quiet, executor=executor, **narrow)
            print(f"== {world} grid done in {time.perf_counter() - start:.0f} s", flush=True)
            if args.ship:
                ship(world, progress=not args.quiet, methods=args.methods)
    if args.plots:
        for path in write_plots(RESULTS_DIR, WORLDS):
            print(f"wrote {path}")
    print(f"wrote {write_results_md()}")
    print(f"wrote {write_readme_table()}")
    return 1 if executor.failed else 0  # failed runs were reported; the rest is written


if __name__ == "__main__":
    sys.exit(main())
