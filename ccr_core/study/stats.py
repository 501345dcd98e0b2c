"""Intervals and verdicts over a grid's runs: every word a table prints ("holds", "met", "above") is computed here
from an interval, never from a mean alone.

Unit of replication: the training seed. A cell's runs are keyed ``(seed, noise_seed)``; where a cell has a second draw of
noisy pairs, the draws of one seed are averaged first, so a seed counts once (two draws of one seed are not two
independent runs). A cell's interval is the 95% Student-t half-width over its seeds (``t_{0.975, n-1} · sd / √n``); a
comparison between two cells uses the per-seed paired difference and its t-interval. The intervals cover training seeds
(and, averaged within them, the draws of noisy pairs); they do not cover the choice of test split.

Verdicts:

- a claim "a is better than b" *holds* when the interval of the difference excludes 0 on the claimed side, *does not
  hold* when it excludes 0 on the other side, and is *not resolved* otherwise;
- a target "at least x" is *met* when the whole interval is at or above x, *not met* when the whole interval is
  below x, and *not resolved* otherwise; one run (no interval) is never a verdict.

Multiple comparisons: :func:`holm` adjusts the p-values of one table's claims (Holm-Bonferroni), so a reader can see
which verdicts survive the number of questions asked.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ccr_core.study import records

Unit = int  # the training seed
Run = tuple  # (seed, noise_seed): one run of a cell


def t_interval(values) -> tuple[float, float]:
    """Mean and the 95% Student-t half-width over the values; half-width nan for a single value.

    >>> round(t_interval([1.0, 2.0, 3.0])[1], 3)
    2.484
    """
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def t_p_value(values) -> float:
    """Two-sided p-value of the one-sample t-test of mean 0 (nan below 2 values; 0 or 1 for constant values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    sd = x.std(ddof=1)
    if sd == 0:
        return 1.0 if x.mean() == 0 else 0.0
    return float(2 * stats.t.sf(abs(x.mean()) / (sd / math.sqrt(x.size)), x.size - 1))


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan stays nan and does not count as a test).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    out = [float("nan")] * len(p_values)
    running, m = 0.0, len(tested)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = round(running, 12)
    return out


def paired(a: dict, b: dict) -> tuple[float, float, int]:
    """Mean and 95% half-width of the per-unit differences a − b over the units both have; and how many."""
    units = sorted(set(a) & set(b))
    mean, hw = t_interval([a[u] - b[u] for u in units])
    return mean, hw, len(units)


def paired_differences(a: dict, b: dict) -> list[float]:
    return [a[u] - b[u] for u in sorted(set(a) & set(b))]


def units_label(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def verdict(mean: float, hw: float, n: int, better: str = "higher") -> str:
    """"holds" / "does not hold" / "not resolved (...)" for the claim "a is better than b" from the difference's interval."""
    if n < 2 or math.isnan(hw):
        return f"not resolved ({units_label(n)}, no interval)"
    if hw == 0 and mean == 0:
        return "identical in every seed"
    lo, hi = mean - hw, mean + hw
    sign = 1 if better == "higher" else -1
    if sign * lo > 0 and sign * hi > 0:
        return "holds"
    if sign * lo < 0 and sign * hi < 0:
        return "does not hold"
    return f"not resolved at {units_label(n)}"


def threshold_verdict(mean: float, hw: float, n: int, threshold: float) -> str:
    """"met" / "not met" / "not resolved (...)" for the target "the quantity is at least ``threshold``"."""
    if n < 2 or math.isnan(hw):
        return f"not resolved ({units_label(n)}, no interval)"
    if mean - hw >= threshold:
        return "met"
    if mean + hw < threshold:
        return "not met"
    return f"not resolved at {units_label(n)}"


def difference_word(mean: float, hw: float, n: int) -> str:
    """A table cell's word for a − b: "above" / "below" / "identical" / "not resolved" (the interval contains 0)."""
    v = verdict(mean, hw, n)
    return {"holds": "above", "does not hold": "below", "identical in every seed": "identical"}.get(v, "not resolved")


def format_interval(stat: tuple[float, float] | None, digits: int = 1) -> str:
    """``"12.3 ± 1.4"`` (``"12.3"`` without an interval, ``""`` without a value)."""
    if stat is None or stat[0] is None or math.isnan(stat[0]):
        return ""
    mean, hw = stat
    return f"{mean:.{digits}f}" + ("" if math.isnan(hw) else f" ± {hw:.{digits}f}")


def format_mean(stat: tuple[float, float] | None) -> str:
    """A mean without its interval (training seconds depend on the machine's load, not on the method alone)."""
    return "" if stat is None or math.isnan(stat[0]) else f"{stat[0]:.0f}"


def format_difference(a: dict, b: dict, digits: int = 1) -> str:
    """A table cell for the per-unit paired difference a − b: "+x ± hw (above / not resolved / below / identical)"."""
    mean, hw, n = paired(a, b)
    if n == 0:
        return ""
    if n == 1:
        return f"{mean:+.{digits}f} (1 run, no interval)"
    return f"{mean:+.{digits}f} ± {hw:.{digits}f} ({difference_word(mean, hw, n)})"


# ----------------------------------------------------------------------------------------------------
# per-run numbers and cells
# ----------------------------------------------------------------------------------------------------
def target_sumr(result: dict) -> float | None:
    """Mean SumR over the non-English query groups of native (or the only) test captions."""
    values = [rep["SumR"] for g, rep in result["groups"].items() if g != "en" and "/" not in g]
    return sum(values) / len(values) if values else None


def run_of(result: dict) -> Run:
    """``(seed, noise_seed)`` of a record."""
    return (result["seed"], result.get("noise_seed", result.get("train_config", {}).get("noise_seed", 0)))


def run_metrics(result: dict) -> dict[str, float]:
    """The per-run numbers the tables aggregate: SumR per group, target SumR, MRV, detector AUROCs, budget."""
    out = {f"SumR {g}": rep["SumR"] for g, rep in result["groups"].items()}
    out["target SumR"] = target_sumr(result)
    mrv = result.get("mrv", {})
    for key in ("mrv_mean", "mrv_i2t", "mrv_t2i"):
        if key in mrv:
            out[key] = mrv[key]
    for name, report in result.get("detectors", {}).items():
        for key in ("auroc", "auprc", "precision_at_n_noisy"):
            out[f"{name} {key}"] = report[key]
    for key in ("steps", "target_exposures", "train_seconds"):
        if result.get("budget", {}).get(key) is not None:
            out[key] = result["budget"][key]
    scored = records.scored_budget(result)
    out["scored steps"] = scored["steps"]
    if scored.get("target_exposures") is not None:
        out["scored target exposures"] = scored["target_exposures"]
    best = result.get("best_epoch_result")
    if best:
        for g, rep in best["groups"].items():
            out[f"best-epoch SumR {g}"] = rep["SumR"]
    return out


def cells(results: list[dict]) -> dict[tuple, dict]:
    """``{(setting, method, noise): {"runs": [(seed, draw)], "per_run": {metric: {(seed, draw): v}}, "units": [seed],
    "per_unit": {metric: {seed: mean over its draws}}, "stats": {metric: (mean, hw) over seeds}}}``."""
    grouped: dict[tuple, dict] = {}
    for r in results:
        cell = grouped.setdefault((r["setting"], r["method"], r["noise_rate"]), {"runs": [], "per_run": {}})
        run = run_of(r)
        cell["runs"].append(run)
        for metric, value in run_metrics(r).items():
            if value is not None:
                cell["per_run"].setdefault(metric, {})[run] = value
    for cell in grouped.values():
        cell["runs"].sort()
        cell["seeds"] = cell["units"] = sorted({run[0] for run in cell["runs"]})
        cell["draws"] = sorted({run[1] for run in cell["runs"]})
        cell["per_unit"] = {metric: {seed: float(np.mean([v for (s, _), v in by_run.items() if s == seed]))
                                     for seed in sorted({s for s, _ in by_run})}
                            for metric, by_run in cell["per_run"].items()}
        cell["stats"] = {m: t_interval(list(by_unit.values())) for m, by_unit in cell["per_unit"].items()}
    return grouped


def kept_share(table: dict, setting: str, method: str, noise: float) -> dict[Unit, float]:
    """Per unit: target SumR at ``noise`` as a percentage of the same seed's clean target SumR."""
    clean, noisy = table.get((setting, method, 0.0)), table.get((setting, method, noise))
    if not clean or not noisy:
        return {}
    c, n = clean["per_unit"].get("target SumR", {}), noisy["per_unit"].get("target SumR", {})
    return {seed: 100.0 * v / c[seed] for seed, v in sorted(n.items()) if c.get(seed)}


def draw_spread(cell: dict, metric: str) -> tuple[float, int] | None:
    """Mean over seeds of |draw 1 − draw 0| for one metric (how much a second draw of noisy pairs moves a run), and
    over how many seeds; None where the cell has one draw."""
    values = cell["per_run"].get(metric, {})
    seeds = sorted({s for s, d in values if d == 1 and (s, 0) in values})
    if not seeds:
        return None
    return float(np.mean([abs(values[(s, 1)] - values[(s, 0)]) for s in seeds])), len(seeds)
