"""RESULTS.md's sections on variants of a grid cell: ablations (one config change testing a stated cause of a gap) and
the fine-tuned setting (backbone tops trained), each compared with the cell it changes, paired per run."""
from __future__ import annotations

from ccr_core.methods import REFERENCE, method_sort_key
from ccr_core.study.grid import ABLATIONS, FINE_TUNED
from ccr_core.study.stats import cells, format_difference, format_interval, format_mean, t_interval


def fine_tuned_markdown(world: str, grid_results: list[dict], tuned_results: list[dict]) -> list[str]:
    """Each method with its backbone tops fine-tuned (:data:`FINE_TUNED`) against the same method frozen (the grid's
    common-encoder cell at noise 0, same seeds), per query language."""
    tune = FINE_TUNED.get(world)
    if tune is None or not tuned_results:
        return []
    frozen, tuned = cells(grid_results), cells(tuned_results)
    groups = sorted({g for r in tuned_results for g in r["groups"]})
    out = [f"#### Fine-tuned backbone tops ({world}): the papers' setting", "",
           f"Every method in the common encoder at noise 0, as in the grid (same steps, batch, pairs), with {tune.why} "
           f"(`{', '.join(f'{k}={v:g}' for k, v in tune.train)}`). `python -m ccr_core.experiments --world {world} --fine-tuned` "
           f"(seed 0; `--seeds 0 1 2` for more; resumable). *frozen*: the grid's run of the same method and seed(s), "
           "backbones frozen. *change*: fine-tuned − frozen, paired per seed (one seed gives no interval and no verdict). "
           "Every row was scored at the end of the same budget (last column).", "",
           "| method | backbones | seeds | " + " | ".join(f"{g} SumR" for g in groups) + " | scored steps | train s |",
           "|---|---|---|" + "---|" * len(groups) + "---|---|"]
    for key in sorted(tuned, key=lambda k: method_sort_key(k[1])):
        method = key[1]
        ft = tuned[key]
        units = set(ft["units"])
        base = frozen.get(("common", method, 0.0))
        same = {m: {u: v for u, v in by.items() if u in units} for m, by in base["per_unit"].items()} if base else {}
        steps = _steps(ft)
        out.append(f"| {method} | fine-tuned | {len(ft['seeds'])} | " + " | ".join(format_interval(ft["stats"].get(f"SumR {g}")) for g in groups)
                   + f" | {steps} | {format_mean(ft['stats'].get('train_seconds'))} |")
        if base:
            base_steps = ", ".join(f"{s:,}" for s in sorted({int(v) for v in same.get("scored steps", {}).values()}))
            out.append(f"| {method} | frozen | {len(units & set(base['units']))} | "
                       + " | ".join(format_interval(t_interval(list(same.get(f"SumR {g}", {}).values()))) for g in groups)
                       + f" | {base_steps} | {format_mean(t_interval(list(same.get('train_seconds', {}).values())))} |")
            out.append(f"| {method} | change | | " + " | ".join(format_difference(ft["per_unit"].get(f"SumR {g}", {}), same.get(f"SumR {g}", {}))
                                                               for g in groups) + " | | |")
    short = {k[1]: 3 - len(c["seeds"]) for k, c in tuned.items() if len(c["seeds"]) < 3}
    if short:
        minutes = {m: t_interval(list(tuned[("common", m, 0.0)]["per_unit"].get("train_seconds", {}).values()))[0] / 60 for m in short}
        total = sum(minutes[m] * n for m, n in short.items())
        out += ["", f"**Not run yet**: {sum(short.values())} runs to reach 3 seeds, ≈ {total / 60:.1f} h of this machine by the recorded "
                    "training times (" + "; ".join(f"{m} {n} × {minutes[m]:.0f} min" for m, n in sorted(short.items(), key=lambda kv: method_sort_key(kv[0])))
                + ")."]
    return out + [""]


def _steps(cell: dict) -> str:
    return ", ".join(f"{s:,}" for s in sorted({int(v) for v in cell["per_run"]["scored steps"].values()}))


def ablation_markdown(world: str, grid_results: list[dict], ablation_results: list[dict]) -> list[str]:
    """Each ablation against the grid cell it changes and against the floor, per query language (paired per run)."""
    if not ablation_results:
        return []
    table = cells(grid_results)
    out = [f"#### Ablations ({world}): a stated cause of a gap, tested", "",
           f"Each ablation changes one method's config and runs like the grid's cell (same steps, seeds and pairs); "
           f"`python -m ccr_core.experiments --world {world} --ablations` (resumable). Differences paired per seed, 95% t-intervals; "
           "\"not resolved\": the interval contains 0.", ""]
    for a in ABLATIONS.get(world, ()):
        mine = [r for r in ablation_results if r.get("variant") == a.name and r["method"] == a.method and r["noise_rate"] == a.noise]
        if not mine:
            continue
        variant = cells(mine)[(a.setting, a.method, a.noise)]
        base, floor = table.get((a.setting, a.method, a.noise)), table.get(("common", REFERENCE, a.noise))
        groups = sorted(k.split(" ", 1)[1] for k in variant["per_unit"] if k.startswith("SumR "))
        change = ", ".join(f"{k} {v}" for k, v in a.overrides)
        at = f" at noise {a.noise:g}" if a.noise else ""
        out += [f"**{a.method} + {a.name}**{at} ({change}; {len(variant['seeds'])} seeds). {a.question}", "",
                "| query language | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups),
                "| ablation SumR | " + " | ".join(format_interval(variant["stats"].get(f"SumR {g}")) for g in groups) + " |"]
        others = [(f"ablation − {a.method}", base), ("ablation − floor", floor)]
        if a.against:
            earlier = [r for r in ablation_results if r.get("variant") == a.against and r["method"] == a.method]
            if earlier:
                others.insert(1, (f"ablation − {a.method}+{a.against}", cells(earlier)[(a.setting, a.method, a.noise)]))
        for label, other in others:
            if not other:
                continue
            row = [format_difference(variant["per_unit"].get(f"SumR {g}", {}), other["per_unit"].get(f"SumR {g}", {})) for g in groups]
            out.append(f"| {label} | " + " | ".join(row) + " |")
        scored = [f"ablation {_steps(variant)}"] + [f"{label.split(' − ')[1]} {_steps(other)}" for label, other in others if other]
        out += ["", f"Steps the scored models saw: {'; '.join(scored)}.", ""]
    return out
