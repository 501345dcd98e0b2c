"""RESULTS.md's comparison sections, written from the runs' records: the grid's tables, the research answers, each
method against the floor, the targets. Every verdict word comes from :mod:`ccr_core.study.stats`.

Every table and answer reads its records through :func:`ccr_core.study.records.table_records`: runs scored at the end
of the world's protocol budget, so every row saw the same steps; a cell is shown with all its runs. Each cell says how
many of its runs had converged by the learning-curve rule (:func:`ccr_core.study.records.converged`).

In the common setting the baseline is the floor's model (:func:`ccr_core.study.grid.same_as_floor`): the table shows one
row for both, and the research answers' "baseline" there is that row; no claim compares the two.
"""
from __future__ import annotations

import math

from ccr_core.methods import BASELINE, REFERENCE, method_label, method_sort_key, methods_with
from ccr_core.study import records
from ccr_core.study.grid import PROTOCOL, SETTINGS, grid, pilot_runs, same_as_floor
from ccr_core.study.plots import PLOT_DIR
from ccr_core.study.stats import (cells, draw_spread, format_difference, format_interval, format_mean,
                                  holm, kept_share, paired, paired_differences, t_interval, t_p_value,
                                  threshold_verdict, units_label, verdict)

DETECTORS = (("cosine", "raw cosine (trivial)"), ("pair_loss", "per-pair loss (trivial, NCR)"),
             ("uncertainty", "UML u = B/S"), ("mismatch", "UML DECL score (trains with)"))

# The goal on Flickr8k-ML: the best method 15% above the grid's own floor (frozen e5 + EfficientNet-Lite0, one linear map
# per side, at the same budget), per query group; the floor's number comes from its records.
GOAL_WORLDS = ("flickr8k-ml",)
GOAL_FACTOR = 1.15
# UML's targets (set for the demo world, reported on every world): share kept at 40% noise, clean cost, detector.
UML_KEEP_POINTS, UML_CLEAN_COST_PCT, UML_DETECTOR_AUROC = 5.0, -3.0, 0.95
# The methods whose own published claims a research question tests (a question is about one named method).
UML = "uml"  # its detector and its targets
NRCCR = "nrccr"  # robust to real machine-translation noise


def _methods_in(table: dict, setting: str, noise: float) -> list[str]:
    return sorted({k[1] for k in table if k[0] == setting and k[2] == noise}, key=method_sort_key)


def _ordered(table: dict, setting: str) -> list[tuple]:
    keys = [k for k in table if k[0] == setting or (k[1] == REFERENCE and setting == "published")]
    return sorted(keys, key=lambda k: (method_sort_key(k[1]), k[2]))


def claim_lines(claims: list[tuple]) -> list[str]:
    """One line per claim ``(label, a, b, better, unit, digits)``, paired a − b, with its verdict and its Holm-adjusted p
    within this list (the claims one research question asks)."""
    p_values = [t_p_value(paired_differences(a, b)) for _, a, b, *_ in claims]
    adjusted = holm(p_values)
    out = []
    for (label, a, b, better, unit, digits), p_adj in zip(claims, adjusted):
        mean, hw, n = paired(a, b)
        if n == 0:
            out.append(f"- {label}: no runs yet.")
            continue
        word = verdict(mean, hw, n, better)
        holm_note = "" if math.isnan(p_adj) else f"; Holm p {'< 0.001' if p_adj < 0.001 else f'= {p_adj:.3f}'}" + (" (not after Holm)" if word in ("holds", "does not hold") and p_adj >= 0.05 else "")
        spread = "" if math.isnan(hw) else f" ± {hw:.{digits}f}"
        out.append(f"- {label}: difference {mean:+.{digits}f}{spread}{unit} ({units_label(n)}{holm_note}) — **{word}**")
    return out


def with_common_baseline(table: dict) -> dict:
    """The table with the common setting's baseline cells taken from the floor's (the same model there: no claim may
    compare the two)."""
    out = dict(table)
    for (setting, method, rate), cell in table.items():
        if setting == "common" and method == REFERENCE:
            for other in {k[1] for k in table} | {BASELINE}:
                if other != REFERENCE and _is_floor_alias(other):
                    out.setdefault(("common", other, rate), cell)
    return out


def _is_floor_alias(method: str) -> bool:
    return same_as_floor(method, "common")


def research_answers(world: str, table: dict) -> list[str]:
    """The research questions, answered from the per-seed paired differences; Holm within each question. In the common
    setting the baseline is the floor's row; claims that compare a model with itself are not asked."""
    table = with_common_baseline(table)
    out = ["#### Research answers (paired differences over runs, 95% t-intervals)", "",
           "Each answer is one interval: **holds** / **does not hold** when it excludes 0, **not resolved** when it contains 0 "
           "(the data cannot tell the two apart; it does not mean they are equal). Many questions are asked at once, so each "
           "claim also carries its Holm-adjusted p-value within its question; a verdict marked \"not after Holm\" would not "
           "survive that correction. Intervals cover training seeds and, where a cell has two, draws of noisy pairs; not the "
           "choice of test split.", ""]
    for setting in SETTINGS:
        for rate in sorted({k[2] for k in table if k[0] == setting and k[2] > 0}):
            base = kept_share(table, setting, BASELINE, rate)
            if not base:
                continue
            claims = []
            for method in _methods_in(table, setting, rate) + ([REFERENCE] if setting == "published" else []):
                own = kept_share(table, "common" if method == REFERENCE else setting, method, rate)
                if method != BASELINE and own and not (setting == "common" and (method == REFERENCE or _is_floor_alias(method))):
                    claims.append((f"{method} − {BASELINE}", own, base, "higher", " pts", 2))
            if claims:
                out += [f"**{setting}, {rate:.0%} noise: which methods keep more target SumR than the baseline?** (share kept, points)",
                        *claim_lines(claims), ""]
    for setting, method in [(s, m) for s in SETTINGS for m in methods_with(targets_per_batch=0)]:  # every language at once
        a, b = table.get((setting, method, 0.0)), table.get((setting, BASELINE, 0.0))
        if a and b and "mrv_mean" in a["per_unit"]:
            out += [f"**{setting}: does {method_label(method)} lower MRV at equal budget?** (mean MRV of both directions, noise 0)",
                    *claim_lines([(f"{method} − {BASELINE}", a["per_unit"]["mrv_mean"], b["per_unit"]["mrv_mean"], "lower", "", 2)]), ""]
    if world == "flickr8k-ml":
        for setting in SETTINGS:
            a, b = table.get((setting, NRCCR, 0.0)), table.get((setting, BASELINE, 0.0))
            if a and b and "SumR zh" in a["per_unit"]:
                out += [f"**{setting}: does NRCCR beat the baseline under real MT noise?** (native Chinese SumR; trained on Baidu/Google MT)",
                        *claim_lines([("nrccr − baseline", a["per_unit"]["SumR zh"], b["per_unit"]["SumR zh"], "higher", "", 2)]), ""]
    for setting in SETTINGS:
        for rate in sorted({k[2] for k in table if k[1] == UML and k[2] > 0}):
            uml, base = table.get((setting, UML, rate)), table.get((setting, BASELINE, rate))
            if not (uml and base and "mismatch auroc" in uml["per_unit"] and "cosine auroc" in uml["per_unit"]):
                continue
            mine = uml["per_unit"]
            claims = [("UML DECL score − UML's own cosine", mine["mismatch auroc"], mine["cosine auroc"], "higher", "", 3),
                      ("UML DECL score − UML's own per-pair loss", mine["mismatch auroc"], mine.get("pair_loss auroc", {}), "higher", "", 3),
                      ("UML DECL score − baseline cosine", mine["mismatch auroc"], base["per_unit"].get("cosine auroc", {}), "higher", "", 3),
                      ("UML u − UML's own cosine", mine["uncertainty auroc"], mine["cosine auroc"], "higher", "", 3)]
            out += [f"**{setting}, {rate:.0%} noise: does UML's detector beat the trivial detectors?** (AUROC on the injected "
                    f"noisy pairs; the fair trivial reference is the same model's own cosine, "
                    f"{format_interval(uml['stats']['cosine auroc'], 3)}; the baseline's cosine is "
                    f"{format_interval(base['stats'].get('cosine auroc'), 3)})", *claim_lines(claims), ""]
    return out


def against_floor(table: dict, setting: str = "common", noise: float = 0.0) -> list[str]:
    """Each method against the floor, per query language (paired per run): above, below, or not resolved."""
    floor = table.get(("common", REFERENCE, noise))
    if not floor:
        return []
    groups = sorted(k.split(" ", 1)[1] for k in floor["per_unit"] if k.startswith("SumR "))
    rows = []
    for method in _methods_in(table, setting, noise):
        cell = table[(setting, method, noise)]
        if method == REFERENCE:
            continue
        row = [format_difference(cell["per_unit"].get(f"SumR {g}", {}), floor["per_unit"][f"SumR {g}"]) for g in groups]
        rows.append(f"| {method} | " + " | ".join(row) + " |")
    if not rows:
        return []
    return [f"#### Against the floor ({setting} setting, noise {noise:g}): method − floor SumR per query language, paired per run", "",
            "\"above\" / \"below\": the 95% interval of the difference excludes 0; \"not resolved\": it contains 0, so these runs "
            "cannot tell the method from the floor (not the same as \"equal\").", "",
            "| method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups), *rows, ""]


def target_line(label: str, mean: float, hw: float, n: int, threshold: float, unit: str = "", digits: int = 1, signed: bool = True) -> str:
    """``- label: +x ± h unit (n runs) against the target ≥ t — **met / not met / not resolved ...**`` (verdict from the interval)."""
    sign = "+" if signed else ""
    spread = "" if math.isnan(hw) else f" ± {hw:.{digits}f}"
    return (f"- {label}: {mean:{sign}.{digits}f}{spread}{unit} ({units_label(n)}) against the target ≥ {threshold:{sign}.{digits}f}{unit} — "
            f"**{threshold_verdict(mean, hw, n, threshold)}**")


def uml_targets(table: dict, world: str) -> list[str]:
    """UML's three targets (set for the demo world; the same comparisons on every world), each from its interval."""
    table = with_common_baseline(table)
    out = []
    for setting in SETTINGS:
        uml, base = kept_share(table, setting, UML, 0.4), kept_share(table, setting, BASELINE, 0.4)
        if not uml or not base:
            continue
        mean, hw, n = paired(uml, base)
        clean_u, clean_b = table[(setting, UML, 0.0)]["per_unit"]["target SumR"], table[(setting, BASELINE, 0.0)]["per_unit"]["target SumR"]
        ratio = [100.0 * (clean_u[u] / clean_b[u] - 1) for u in sorted(set(clean_u) & set(clean_b))]
        rm, rhw = t_interval(ratio)
        out += [f"**UML's targets, {setting} setting** ({world}, 40% noise"
                + ("" if world == "demo-world" else "; set for the demo world, the same comparisons here") + "):",
                target_line("UML's kept share − the baseline's", mean, hw, n, UML_KEEP_POINTS, " points"),
                target_line("UML's clean target SumR against the baseline's", rm, rhw, len(ratio), UML_CLEAN_COST_PCT, "%")]
        auc = table.get((setting, UML, 0.4), {}).get("per_unit", {}).get("mismatch auroc")
        if auc:
            am, ahw = t_interval(list(auc.values()))
            out.append(target_line("UML's own detector AUROC", am, ahw, len(auc), UML_DETECTOR_AUROC, digits=3, signed=False))
        out.append("")
    return out


def floor_goal(world: str, table: dict) -> list[str]:
    """Per group: does the best method (by mean, noise 0, either setting) reach 1.15 × the grid's own floor?"""
    floor = table.get(("common", REFERENCE, 0.0))
    if world not in GOAL_WORLDS or not floor:
        return []
    out = [f"**Does the best method reach {GOAL_FACTOR:.2f} × the floor?** ({world}; the floor: frozen e5 + EfficientNet-Lite0, "
           "one linear map per side, this grid's common-setting runs at noise 0; intervals over seeds)", "",
           "| group | floor | goal | best method | its SumR | verdict |", "|---|---|---|---|---|---|"]
    for group in sorted(k.split(" ", 1)[1] for k in floor["stats"] if k.startswith("SumR ")):
        reference = floor["stats"][f"SumR {group}"][0]
        scored = [(cell["stats"][f"SumR {group}"], key) for key, cell in table.items()
                  if key[2] == 0 and key[1] != REFERENCE and f"SumR {group}" in cell["stats"]]
        if not scored:
            continue
        (mean, hw), key = max(scored, key=lambda s: s[0][0])
        n = len(table[key]["per_unit"][f"SumR {group}"])
        goal = GOAL_FACTOR * reference
        out.append(f"| {group} | {reference:.1f} | {goal:.1f} | {key[1]} ({key[0]}) | {format_interval((mean, hw))} | "
                   f"{threshold_verdict(mean, hw, n, goal)} |")
    return out + [""]


def budget_lines(world: str, kept: list[dict]) -> list[str]:
    """The budget as recorded: steps and exposures of the scored models, per language where the runs recorded it."""
    scored = [records.scored_budget(r) for r in kept]
    steps = sorted({b["steps"] for b in scored})
    exposures = sorted({b.get("target_exposures") for b in scored} - {None})
    by_lang: dict[str, set] = {}
    for b in scored:
        for lang, n in (b.get("exposures_by_language") or {}).items():
            by_lang.setdefault(lang, set()).add(n)
    proto = PROTOCOL[world]
    text = (f"Every scored model: {', '.join(f'{s:,}' for s in steps)} optimiser steps (recorded) at batch {proto.train['batch_size']}, "
            f"scored at the end of its budget; target-language caption updates "
            f"{', '.join(f'{e:,}' for e in exposures) if exposures else 'not recorded'}.")
    if by_lang:
        text += (" Per language (a batch holds the target languages its pairs share, so languages differ): "
                 + "; ".join(f"{lang} {', '.join(f'{n:,}' for n in sorted(ns))}" for lang, ns in sorted(by_lang.items())) + ".")
    elif kept:
        text += " Per-language exposures: not recorded by these runs."
    return [text]


def run_seconds(results: list[dict]) -> dict[tuple, tuple[float, int]]:
    """Measured cost of one run per (setting, method): mean recorded training + evaluation seconds, over how many runs."""
    spent: dict[tuple, list[float]] = {}
    for r in results:
        budget = r.get("budget", {})
        if budget.get("train_seconds") is not None:
            spent.setdefault((r["setting"], r["method"]), []).append(budget["train_seconds"] + (budget.get("eval_seconds") or 0.0))
    return {key: (sum(v) / len(v), len(v)) for key, v in spent.items()}


def not_run_lines(missing: list, results: list[dict], pilot: list[dict] = (), steps: int = 0) -> list[str]:
    """The grid's runs without a record, grouped, each group with its cost measured from the records of the same
    (setting, method) on this world (on this machine, one run at a time), and the total. A group with no grid record
    yet is costed from its ``pilot`` runs, scaled from their steps to the grid's ``steps``."""
    cost = run_seconds(results)
    for r in pilot:
        key, spent = (r["setting"], r["method"]), r.get("budget", {})
        if key not in cost and spent.get("train_seconds") and steps:
            runs = [p for p in pilot if (p["setting"], p["method"]) == key]
            scaled = [(p["budget"]["train_seconds"] + (p["budget"].get("eval_seconds") or 0.0)) * steps / p["budget"]["steps"] for p in runs]
            cost[key] = (sum(scaled) / len(scaled), f"{len(scaled)} pilot runs, scaled to {steps:,} steps")
    by: dict[tuple, list] = {}
    for r in missing:
        by.setdefault((r.setting, r.method), []).append(r)
    parts, total, unknown = [], 0.0, []
    for (setting, method), rs in sorted(by.items(), key=lambda kv: (kv[0][0], method_sort_key(kv[0][1]))):
        noise = ", ".join(sorted({f"{r.noise:g}" + (f" draw {r.noise_seed}" if r.noise_seed else "") for r in rs}))
        measured = cost.get((setting, method))
        if measured:
            total += measured[0] * len(rs)
            parts.append(f"{method} {setting} ({len(rs)} runs: noise {noise}; ≈ {measured[0] * len(rs) / 60:.0f} min at "
                         f"{measured[0] / 60:.1f} min a run, measured on {measured[1]}" + (" recorded runs)" if isinstance(measured[1], int) else ")"))
        else:
            unknown.append(f"{method} {setting}")
            parts.append(f"{method} {setting} ({len(rs)} runs: noise {noise}; cost not measured yet)")
    text = (f"**Not run yet**, {len(missing)} runs, ≈ {total / 3600:.1f} h of this machine by the recorded run times"
            + (f" (plus {', '.join(unknown)}, not measured)" if unknown else "") + ": " + "; ".join(parts) + ".")
    return [text, ""]


def _draw_cells(draws: dict) -> str:
    return "; ".join(f"{setting} at noise " + ", ".join(f"{x:g}" for x in rates) for setting, rates in draws.items())


def protocol_markdown(world: str, results: list[dict]) -> list[str]:
    """RESULTS.md's comparison section of one world (with no runs yet: what is to run)."""
    proto = PROTOCOL[world]
    kept = records.for_tables(results, world)
    other_budgets = sorted({records.scored_steps(r) for r in results} - {proto.steps})
    table = cells(kept)
    marks = convergence_by_cell(kept)
    done = {(r["setting"], r["method"], r["noise_rate"], r.get("noise_seed", 0), r["seed"]) for r in kept}
    missing = [r for r in grid(world) if (r.setting, r.method, r.noise, r.noise_seed, r.seed) not in done]
    seeds = sorted({r["seed"] for r in kept})
    regenerate = (f"Regenerate: `python -m ccr_core.experiments --world {world}` (resumable; runs under "
                  f"`<CCR_WORKSPACE>/runs/protocol/{world}/`), then `--publish`.")
    if not kept:  # nothing to tabulate yet: what the grid will run, and its cost
        return [f"### {world}: equal-budget protocol (0 of {len(missing)} runs)", "",
                f"{proto.steps:,} optimiser steps per run at batch {proto.train.get('batch_size')}, 3 seeds. " + regenerate, "",
                *not_run_lines(missing, results, records.load("pilot", world), proto.steps)]
    out = [f"### {world}: equal-budget protocol ({len(kept)} of {len(kept) + len(missing)} runs)", "",
           *budget_lines(world, kept),
           f"Seeds {', '.join(map(str, seeds))}; noisy pairs drawn with noise seed 0 (the same pairs for every method and seed)"
           + (f", and a second draw (noise seed 1) in {_draw_cells(proto.noise_draws)}" if proto.noise_draws else "")
           + ". Cells: mean ± 95% t-interval over seeds (a seed's two draws averaged first). Frozen backbones (e5-small, "
             "EfficientNet-Lite0) in both settings: the papers fine-tune their text encoders. In the common setting the baseline "
             "is the floor's model (same loss, τ, heads and initialisation), so one row shows both.",
           regenerate, ""]
    if other_budgets:
        out += [f"Records of other budgets ({', '.join(f'{s:,}' for s in other_budgets)} steps) are kept in results/ but are in no "
                "table here: a table holds one scored budget.", ""]
    if missing:
        out += not_run_lines(missing, results, records.load("pilot", world), proto.steps)
    groups = sorted({k.split(" ", 1)[1] for c in table.values() for k in c["stats"] if k.startswith("SumR ")})
    for setting in SETTINGS:
        keys = _ordered(table, setting)
        if not any(k[0] == setting for k in keys):
            continue
        title = "as published (each method's own heads)" if setting == "published" else "common encoder (the floor's linear heads for every objective)"
        out += [f"#### {title}", "",
                "| method | noise | seeds | target SumR | en SumR | MRV (mean i2t/t2i) | kept % | scored steps | converged | train s (mean) |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for key in keys:
            cell = table[key]
            st = cell["stats"]
            share = kept_share(table, key[0], key[1], key[2]) if key[2] else {}
            draws = f" ({len(cell['seeds'])} seeds × {len(cell['draws'])} draws)" if len(cell["draws"]) > 1 else ""
            steps = sorted({int(v) for v in cell["per_run"]["scored steps"].values()})
            out.append(f"| {_row_name(key[1], setting)} | {key[2]:g} | "
                       f"{len(cell['units'])}{draws} | {format_interval(st.get('target SumR'))} | {format_interval(st.get('SumR en'))} | "
                       f"{format_interval(st.get('mrv_mean'), 2)} | {format_interval(t_interval(list(share.values()))) if share else ''} | "
                       f"{', '.join(f'{s:,}' for s in steps)} | {marks.get(key, '')} | {format_mean(st.get('train_seconds'))} |")
        out += ["", "<details><summary>SumR per language (and at the best validation epoch, a second, labelled number)</summary>", "",
                "| method | noise | " + " | ".join(groups) + " |", "|---|---|" + "---|" * len(groups)]
        for key in keys:
            st = table[key]["stats"]
            note = "" if not marks.get(key, "").startswith(("not converged", "no curve")) else f" ({marks[key]})"
            out.append(f"| {key[1]}{note} | {key[2]:g} | " + " | ".join(format_interval(st.get(f"SumR {g}")) for g in groups) + " |")
            if any(f"best-epoch SumR {g}" in st for g in groups):
                out.append(f"| {key[1]} (best val. epoch) | {key[2]:g} | " + " | ".join(format_interval(st.get(f"best-epoch SumR {g}")) for g in groups) + " |")
        out += ["", "</details>", ""]
    spreads = [(key, spread) for key, cell in sorted(table.items()) if (spread := draw_spread(cell, "target SumR"))]
    if spreads:
        out += ["**A second draw of noisy pairs** (noise seed 1 beside 0, same seeds): mean |draw 1 − draw 0| of target SumR per seed — "
                + "; ".join(f"{k[1]} {k[0]} {k[2]:g}: {s:.1f} ({n} seeds)" for k, (s, n) in spreads)
                + ". Cells with two draws average them within each seed before the interval.", ""]
    out += detector_table(table)
    out += research_answers(world, table)
    out += against_floor(table)
    out += uml_targets(table, world)
    out += floor_goal(world, table)
    return out


def _row_name(method: str, setting: str) -> str:
    if method == REFERENCE and setting == "published":
        return f"{REFERENCE} (same model in both settings)"
    if method == REFERENCE and setting == "common":
        aliases = [m for m in (BASELINE,) if _is_floor_alias(m)]
        return f"{REFERENCE} = {', '.join(aliases)} (one model in this setting)" if aliases else REFERENCE
    return method


def convergence_by_cell(kept: list[dict]) -> dict[tuple, str]:
    """Per cell: "yes" when every run's curve had flattened at its budget (:func:`ccr_core.study.records.converged`),
    "not converged (k of n runs)" when some had not, "no curve" when its records have none."""
    by: dict[tuple, list] = {}
    for r in kept:
        by.setdefault((r["setting"], r["method"], r["noise_rate"]), []).append(records.converged(r))
    out = {}
    for key, verdicts in by.items():
        if any(v is None for v in verdicts):
            out[key] = "no curve"
        elif all(verdicts):
            out[key] = "yes"
        else:
            out[key] = f"not converged ({sum(1 for v in verdicts if not v)} of {len(verdicts)} runs)"
    return out


def detector_table(table: dict) -> list[str]:
    noisy_keys = [k for k in table if k[2] > 0 and any(f"{d} auroc" in table[k]["stats"] for d, _ in DETECTORS)]
    if not noisy_keys:
        return []
    out = ["#### Noise detectors on the injected noisy pairs (AUROC; AUPRC and precision@(number of noisy pairs) in brackets)", "",
           "The trivial detectors -- 1 − cosine of the pair and its per-pair contrastive loss in its training batch -- are computed for "
           "every model, UML's included (its own cosine is the fair reference for its DECL score); UML adds u = B/S and the DECL score "
           "it trains with.", "",
           "| setting | method | noise | " + " | ".join(label for _, label in DETECTORS) + " |", "|---|---|---|" + "---|" * len(DETECTORS)]
    for key in sorted(noisy_keys, key=lambda k: (k[0], k[2], method_sort_key(k[1]))):
        st = table[key]["stats"]
        row = [f"{format_interval(st[f'{name} auroc'], 3)} ({st[f'{name} auprc'][0]:.2f}, {st[f'{name} precision_at_n_noisy'][0]:.2f})"
               if f"{name} auroc" in st else "" for name, _ in DETECTORS]
        out.append(f"| {key[0]} | {key[1]} | {key[2]:g} | " + " | ".join(row) + " |")
    return out + [""]


def _orders_by_budget(curves: dict, old: int, new: int, new_name: str, old_name: str = "the grid's earlier budget") -> list[str]:
    """The methods' order by validation target SumR in each (setting, noise) at the old budget and at ``new``: which
    orderings -- and so which verdicts -- the budget decides (seed 0, one run per method: no interval)."""
    rows = []
    for setting, noise in sorted({(k[0], k[2]) for k in curves}):
        keys = [k for k in curves if k[0] == setting and k[2] == noise]
        at = {budget: {k[1]: records.value_at(records.curve_values(curves[k]), budget) for k in keys} for budget in (old, new)}
        if len(keys) < 2 or any(v is None for values in at.values() for v in values.values()):
            continue
        order = {b: sorted(values, key=lambda m: -values[m]) for b, values in at.items()}
        shown = {b: " > ".join(f"{m} {at[b][m]:.0f}" for m in order[b]) for b in order}
        rows.append(f"| {setting} | {noise:g} | {shown[old]} | {shown[new]} | {'same' if order[old] == order[new] else '**changed**'} |")
    if not rows:
        return []
    return ["", f"The methods' order by validation target SumR at {old_name} ({old:,} steps) and at {new_name} "
                f"({new:,} steps), seed 0 (one run each, no interval): where the order changes, a verdict at {old:,} steps was "
                "the budget's, not the method's.", "",
            f"| setting | noise | at {old:,} steps | at {new:,} steps | order |", "|---|---|---|---|---|", *rows, ""]


def pilot_markdown(world: str, pilot: list[dict]) -> list[str]:
    """The pilot's learning curves: where each method's validation target SumR flattens, the budget at which every method
    has converged by the rule (:func:`ccr_core.study.records.converged_budget`), and which methods had not converged at
    the grid's current budget."""
    proto = PROTOCOL[world]
    old = proto.earlier_steps or proto.steps  # the budget whose verdicts the pilot checks
    planned = len(pilot_runs(world))
    head = [f"### {world}: the pilot (learning curves that decide the budget)", ""]
    how = (f"Seed 0 of every method, both settings, clean and 40% noise, {proto.pilot_steps:,} steps with a validation point every "
           f"{proto.eval_every} steps (`python -m ccr_core.experiments --world {world} --pilot`, resumable). A run has converged at "
           f"budget B when its validation target SumR gains at most {records.CONVERGENCE_GAIN:.0%} (relative) from 0.75 B to B.")
    if not pilot:
        return head + [how + f" **Not run yet** ({planned} runs).", ""]
    curves = {(r["setting"], r["method"], r["noise_rate"]): r for r in pilot if r.get("curve")}
    chosen, own = records.converged_budget(curves)
    marks = sorted({s for r in curves.values() for s, _ in records.curve_values(r)})
    shown = [s for s in marks if s in (old, proto.steps, proto.pilot_steps) or s % (4 * proto.eval_every) == 0]
    out = head + [how + f" {len(curves)} of {planned} pilot runs done.", "",
                  "| setting | method | noise | " + " | ".join(f"{s:,}" for s in shown) + f" | gain in the last quarter of {old:,} steps | converged from |",
                  "|---|---|---|" + "---|" * len(shown) + "---|---|"]
    for key in sorted(curves, key=lambda k: (k[0], method_sort_key(k[1]), k[2])):
        points = records.curve_values(curves[key])
        at = dict(points)
        gain = records.late_gain(points, old)
        out.append(f"| {key[0]} | {key[1]} | {key[2]:g} | " + " | ".join(f"{at[s]:.1f}" if s in at else "" for s in shown)
                   + f" | {'' if gain is None else f'{gain:+.1%}'} | {'not within the pilot' if own[key] is None else f'{own[key]:,} steps'} |")
    undertrained = sorted({f"{k[1]} ({k[0]}, noise {k[2]:g})" for k, r in curves.items() if records.converged(r, old) is False})
    old_name = "the grid's earlier budget" if old != proto.steps else "the grid's current budget"
    out += ["", f"At {old_name} ({old:,} steps{f'; it now runs {proto.steps:,}' if old != proto.steps else ''}) these pilot runs were still gaining more than "
                f"{records.CONVERGENCE_GAIN:.0%}: {', '.join(undertrained) if undertrained else 'none'}."]
    new_name = ("the converged budget" if len(curves) >= planned else "the budget the finished pilot runs have converged by") if chosen else "the pilot's end"
    out += _orders_by_budget(curves, old, chosen or proto.pilot_steps, new_name, old_name)
    if len(curves) < planned and chosen is not None and chosen == proto.steps:
        left = planned - len(curves)
        out.append(f"**Budget**: the grid runs {chosen:,} steps, the smallest at which every finished pilot run has converged. The "
                   f"{left} pilot run{'s' if left != 1 else ''} left can only raise it (a budget must be one every run has converged "
                   f"by); a grid run whose own curve still gains more than {records.CONVERGENCE_GAIN:.0%} at {chosen:,} steps is "
                   "marked \"not converged\" wherever its number appears.")
    elif len(curves) < planned:
        left = planned - len(curves)
        out.append(f"**Budget not chosen yet**: {left} pilot run{'s are' if left != 1 else ' is'} still to run.")
    elif chosen is None:
        out.append("**No budget within the pilot** at which every method has converged: "
                   + ", ".join(f"{k[1]} ({k[0]}, {k[2]:g})" for k, v in own.items() if v is None) + " still gain at its end.")
    else:
        out.append(f"**Converged budget**: {chosen:,} steps, the smallest at which every pilot run has converged.")
    if (PLOT_DIR / f"pilot-{world}.png").exists():
        out += ["", f"![validation target SumR against steps, {world} pilot](docs/pilot-{world}.png)"]
    return out + [""]
