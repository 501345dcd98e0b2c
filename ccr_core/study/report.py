"""RESULTS.md's comparison sections, written from the runs' records: the grid's tables, the research answers, each
method against the floor, the targets. Every verdict word comes from :mod:`ccr_core.study.stats`.

Only runs scored at the end of their budget enter a table or an answer (every method's scored model then saw the same
steps); a record scored at an earlier best validation epoch is listed as set aside, with the steps its model saw.
"""
from __future__ import annotations

import math

from ccr_core.methods import BASELINE, REFERENCE, method_label, method_sort_key, methods_with
from ccr_core.study.grid import PROTOCOL, SETTINGS, grid
from ccr_core.study.stats import (at_end_of_budget, cells, draw_spread, format_difference, format_interval, format_mean,
                                  holm, kept_share, paired, paired_differences, scored_budget, t_interval, t_p_value,
                                  threshold_verdict, units_label, verdict)

DETECTORS = (("cosine", "raw cosine (trivial)"), ("pair_loss", "per-pair loss (trivial, NCR)"),
             ("uncertainty", "UML u = B/S"), ("mismatch", "UML DECL score (trains with)"))

# A world's reference floor and goal, stated for that world only: on Flickr8k-ML, frozen e5 + EfficientNet-Lite0 with
# one linear map per side trained on en + zh MT scored these SumR; the goal is the best method 15% above them.
REFERENCE_FLOOR_SUMR = {"flickr8k-ml": {"en": 251.0, "zh": 160.0, "zh/human-translation": 236.0}}
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


def research_answers(world: str, table: dict) -> list[str]:
    """The research questions, answered from the per-run paired differences; Holm within each question."""
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
                if method != BASELINE and own:
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
    """Per group: does the best method (by mean, noise 0, either setting) reach 1.15 × the world's reference floor?"""
    reference = REFERENCE_FLOOR_SUMR.get(world)
    if not reference:
        return []
    out = [f"**Does the best method reach {GOAL_FACTOR:.2f} × the reference floor?** ({world}; reference: frozen e5 + "
           "EfficientNet-Lite0, one linear map per side, en + zh MT; grid runs at noise 0, intervals over seeds)", "",
           "| group | reference floor | goal | best method | its SumR | verdict |", "|---|---|---|---|---|---|"]
    for group, floor in reference.items():
        scored = [(cell["stats"][f"SumR {group}"], key) for key, cell in table.items()
                  if key[2] == 0 and key[1] != REFERENCE and f"SumR {group}" in cell["stats"]]
        if not scored:
            continue
        (mean, hw), key = max(scored, key=lambda s: s[0][0])
        n = len(table[key]["per_unit"][f"SumR {group}"])
        goal = GOAL_FACTOR * floor
        out.append(f"| {group} | {floor:.0f} | {goal:.1f} | {key[1]} ({key[0]}) | {format_interval((mean, hw))} | "
                   f"{threshold_verdict(mean, hw, n, goal)} |")
    return out + [""]


def budget_lines(world: str, kept: list[dict]) -> list[str]:
    """The budget as recorded: steps and exposures of the scored models, per language where the runs recorded it."""
    scored = [scored_budget(r) for r in kept]
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


def not_run_lines(missing: list, results: list[dict]) -> list[str]:
    """The grid's runs without a record, grouped, each group with its cost measured from the records of the same
    (setting, method) on this world (on this machine, one run at a time), and the total."""
    cost = run_seconds(results)
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
                         f"{measured[0] / 60:.1f} min a run, measured on {measured[1]} recorded runs)")
        else:
            unknown.append(f"{method} {setting}")
            parts.append(f"{method} {setting} ({len(rs)} runs: noise {noise}; cost not measured yet)")
    text = (f"**Not run yet**, {len(missing)} runs, ≈ {total / 3600:.1f} h of this machine by the recorded run times"
            + (f" (plus {', '.join(unknown)}, not measured)" if unknown else "") + ": " + "; ".join(parts) + ".")
    return [text, ""]


def _draw_cells(draws: dict) -> str:
    return "; ".join(f"{setting} at noise " + ", ".join(f"{x:g}" for x in rates) for setting, rates in draws.items())


def protocol_markdown(world: str, results: list[dict]) -> list[str]:
    """RESULTS.md's comparison section of one world."""
    if not results:
        return []
    kept = [r for r in results if at_end_of_budget(r)]
    set_aside = [r for r in results if not at_end_of_budget(r)]
    table = cells(kept)
    proto = PROTOCOL[world]
    done = {(r["setting"], r["method"], r["noise_rate"], r.get("noise_seed", 0), r["seed"]) for r in kept}
    missing = [r for r in grid(world) if (r.setting, r.method, r.noise, r.noise_seed, r.seed) not in done]
    seeds = sorted({r["seed"] for r in kept})
    out = [f"### {world}: equal-budget protocol ({len(kept)} of {len(kept) + len(missing)} runs)", "",
           *budget_lines(world, kept),
           f"Seeds {', '.join(map(str, seeds))}; noisy pairs drawn with noise seed 0 (the same pairs for every method and seed)"
           + (f", and a second draw (noise seed 1) in {_draw_cells(proto.noise_draws)}" if proto.noise_draws else "")
           + ". Cells: mean ± 95% t-interval over runs. Frozen backbones (e5-small, EfficientNet-Lite0) in both settings: the papers "
             "fine-tune their text encoders.",
           f"Regenerate: `python -m ccr_core.experiments --world {world}` (resumable); runs under `workspace/runs/protocol/{world}/`.", ""]
    if set_aside:
        by = {}
        for r in set_aside:
            by.setdefault((r["setting"], r["method"], r["noise_rate"]), []).append(scored_budget(r)["steps"])
        out += ["**Set aside** (scored at their best validation epoch, before the end of the budget, by an older runner; not "
                "comparable at equal budget): " + "; ".join(f"{m} {s} noise {n:g} ({len(v)} runs, scored after {', '.join(f'{x:,}' for x in sorted(set(v)))} steps)"
                                                            for (s, m, n), v in sorted(by.items())) + ".", ""]
    if missing:
        out += not_run_lines(missing, results)
    groups = sorted({k.split(" ", 1)[1] for c in table.values() for k in c["stats"] if k.startswith("SumR ")})
    for setting in SETTINGS:
        keys = _ordered(table, setting)
        if not any(k[0] == setting for k in keys):
            continue
        title = "as published (each method's own heads)" if setting == "published" else "common encoder (the floor's linear heads for every objective)"
        out += [f"#### {title}", "",
                "| method | noise | runs | target SumR | en SumR | MRV (mean i2t/t2i) | kept % | scored steps | train s (mean) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for key in keys:
            cell = table[key]
            st = cell["stats"]
            share = kept_share(table, key[0], key[1], key[2]) if key[2] else {}
            draws = f" ({len(cell['seeds'])} seeds × {len(cell['draws'])} draws)" if len(cell["draws"]) > 1 else ""
            steps = sorted(set(cell["per_unit"]["scored steps"].values()))
            out.append(f"| {key[1]}{' (same model in both settings)' if key[1] == 'floor' and setting == 'published' else ''} | {key[2]:g} | "
                       f"{len(cell['units'])}{draws} | {format_interval(st.get('target SumR'))} | {format_interval(st.get('SumR en'))} | "
                       f"{format_interval(st.get('mrv_mean'), 2)} | {format_interval(t_interval(list(share.values()))) if share else ''} | "
                       f"{', '.join(f'{s:,}' for s in steps)} | {format_mean(st.get('train_seconds'))} |")
        out += ["", "<details><summary>SumR per language (and at the best validation epoch, a second, labelled number)</summary>", "",
                "| method | noise | " + " | ".join(groups) + " |", "|---|---|" + "---|" * len(groups)]
        for key in keys:
            st = table[key]["stats"]
            out.append(f"| {key[1]} | {key[2]:g} | " + " | ".join(format_interval(st.get(f"SumR {g}")) for g in groups) + " |")
            if any(f"best-epoch SumR {g}" in st for g in groups):
                out.append(f"| {key[1]} (best val. epoch) | {key[2]:g} | " + " | ".join(format_interval(st.get(f"best-epoch SumR {g}")) for g in groups) + " |")
        out += ["", "</details>", ""]
    spreads = [(key, spread) for key, cell in sorted(table.items()) if (spread := draw_spread(cell, "target SumR"))]
    if spreads:
        out += ["**A second draw of noisy pairs** (noise seed 1 beside 0, same seeds): mean |draw 1 − draw 0| of target SumR per seed — "
                + "; ".join(f"{k[1]} {k[0]} {k[2]:g}: {s:.1f} ({n} seeds)" for k, (s, n) in spreads)
                + ". Cells with two draws pool both in their intervals.", ""]
    out += detector_table(table)
    out += research_answers(world, table)
    out += against_floor(table)
    out += uml_targets(table, world)
    out += floor_goal(world, table)
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
