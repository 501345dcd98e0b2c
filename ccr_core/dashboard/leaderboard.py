"""Leaderboard tab: R@K / SumR per query group (language and caption source) and MRV for every model,
from ``evaluate_model``. Results come from a ``result.json`` shipped beside a checkpoint when it is
stamped with the same weights hash, else from the world cache (``eval/``, stamped the same way), else
they are computed once and cached. Tables download as CSV and JSON."""
from __future__ import annotations

import math
import threading
from pathlib import Path

import pandas as pd

from ccr_core.dashboard.colours import CHART_FONT, FAMILY_COLOURS, chart_layout, family, is_main, method_colour, model_style
from ccr_core.dashboard.world import InputError, ModelEntry, World, bundle_stamp, safe_name
from ccr_core.io import read_json, write_json_atomic
from ccr_core import paths  # paths.REPO_ROOT read at call time: tests point it at their own results/
from ccr_core.eval.retrieval import evaluate_model
from ccr_core.methods import BASELINE, REFERENCE, method_sort_key
from ccr_core.study.plots import curve_figure, noise_figure
from ccr_core.study import records
from ccr_core.study.report import convergence_by_cell
from ccr_core.study.stats import cells, format_interval, kept_share, paired, t_interval, target_sumr, verdict

METRICS = ("SumR", "mean_recall", "t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_MedR", "i2t_MedR")
COLUMNS = ["model", "method", "train noise", "group", "queries", "images", "t2i_R@1", "t2i_R@5", "t2i_R@10",
           "i2t_R@1", "i2t_R@5", "i2t_R@10", "SumR", "SumR over seeds (95% CI)", "fused SumR", "MRV i2t", "MRV t2i", "MRV mean"]
_eval_lock = threading.Lock()  # one evaluation at a time (they share two CPU cores)


def model_result(world: World, model: ModelEntry) -> dict:
    """``evaluate_model``'s result for one model (its shipped result.json, world cache, or computed)."""
    memo = world.memo.setdefault("eval", {})
    key = (model.name, model.checkpoint_hash)
    if key in memo:
        return memo[key]
    with _eval_lock:
        if key in memo:
            return memo[key]
        result = None
        # its own folder's record (a shipped model), else its run folder's (``ccr train``, a grid run: that record scored
        # ``last/``, so it must name these weights)
        for shipped, unstamped_ok in ((model.trained.folder / paths.RESULT_FILE, True), (model.trained.folder.parent / paths.RESULT_FILE, False)):
            if shipped.exists():
                data = read_json(shipped)
                if data.get("checkpoint_sha256", None if unstamped_ok else "") in (None, model.checkpoint_hash) and "groups" in data:
                    result = data
                    break
        path = world.cache_dir / "eval" / f"{safe_name(model.name)}-{model.checkpoint_hash[:12]}.json"
        if result is None and path.exists():
            cached = read_json(path)
            if cached.get("checkpoint_sha256") == model.checkpoint_hash and cached.get("bundle") == bundle_stamp(world):
                result = cached["result"]
        if result is None:
            if model.captions is None:  # its test captions are still being encoded: no rows yet (not memoised)
                return {"model": model.label, "groups": {}, "pending": model.captions_wait() if model.captions_wait else ""}
            result = evaluate_model(model.trained, world.benches[model.backbones])
            write_json_atomic(path, {"checkpoint_sha256": model.checkpoint_hash, "bundle": bundle_stamp(world), "result": result})
        result = {**result, "model": model.label}
        memo[key] = result
        return result


def all_results(world: World) -> list[dict]:
    return [model_result(world, m) for m in world.model_list()]


def protocol_cells(world: World) -> dict:
    """The equal-budget grid's cells for this world (``ccr_core.study.stats.cells`` of results/protocol-<world>.json),
    or {} when it has not been run; read once per world."""
    if "protocol_cells" not in world.memo:
        kept = _protocol_table_records(world)
        world.memo["protocol_cells"] = cells(kept) if kept else {}
    return world.memo["protocol_cells"]


def _protocol_table_records(world: World) -> list[dict]:
    """The records results/protocol-<world>.json puts in tables (``records.world_table_records``), [] when there is
    none; read once per world for the cells and their convergence marks."""
    if "protocol_table_records" not in world.memo:
        path = paths.REPO_ROOT / "results" / f"protocol-{world.name}.json"
        world.memo["protocol_table_records"] = records.world_table_records("protocol", world.name, path.parent) if path.exists() else []
    return world.memo["protocol_table_records"]


def protocol_convergence(world: World) -> dict:
    """Per cell of the equal-budget grid: "yes", or "not converged (k of n runs)" (``study.report.convergence_by_cell``,
    the rule RESULTS.md marks with); read once per world."""
    if "protocol_convergence" not in world.memo:
        world.memo["protocol_convergence"] = convergence_by_cell(_protocol_table_records(world))
    return world.memo["protocol_convergence"]


def fine_tuned_cells(world: World) -> dict:
    """The fine-tuned runs' cells (results/fine-tuned-<world>.json, common encoder), or {}; read once per world."""
    if "fine_tuned_cells" not in world.memo:
        path = paths.REPO_ROOT / "results" / f"fine-tuned-{world.name}.json"
        world.memo["fine_tuned_cells"] = cells(read_json(path)) if path.exists() else {}
    return world.memo["fine_tuned_cells"]


def grid_cell(world: World, model: ModelEntry) -> tuple[str, dict | None]:
    """(setting, cell) of the equal-budget grid that stands for the model's method at its noise rate: the
    published setting, else the common-encoder one (the floor is common only); a model with fine-tuned
    backbone tops: its fine-tuned runs'. ("", None) where the grid has no such runs."""
    meta = getattr(getattr(model, "trained", None), "meta", None) or {}
    if meta.get("visual_trainable_blocks") or meta.get("text_trainable_layers"):  # as ModelEntry.fine_tuned, for any model-like object
        cell = fine_tuned_cells(world).get(("common", model.method, float(model.noise)))
        return ("fine-tuned", cell) if cell else ("", None)
    table = protocol_cells(world)
    for setting in ("published", "common"):
        cell = table.get((setting, model.method, float(model.noise)))
        if cell:
            return setting, cell
    return "", None


def _interval(world: World, model: ModelEntry, group: str) -> str | None:
    """'mean ± half-width (n seeds)' of the model's method at its noise rate (``grid_cell``)."""
    _, cell = grid_cell(world, model)
    stat = cell["stats"].get(f"SumR {group}") if cell else None
    if not stat:
        return None
    n = len(cell["seeds"])
    return f"{format_interval(stat)} ({n} seed{'s' if n != 1 else ''})"


def interval_table(world: World) -> pd.DataFrame:
    """One row per cell of the equal-budget grid: target and English SumR, MRV and kept share, mean ± 95% CI."""
    table = protocol_cells(world)
    rows = []
    for (setting, method, noise), cell in sorted(table.items(), key=lambda kv: (kv[0][0], method_sort_key(kv[0][1]), kv[0][2])):
        st = cell["stats"]
        share = kept_share(table, setting, method, noise) if noise else {}
        rows.append({"setting": setting, "method": method, "train noise": noise, "seeds": len(cell["seeds"]),
                     "converged": protocol_convergence(world).get((setting, method, noise), ""),
                     "target SumR": format_interval(st.get("target SumR")), "en SumR": format_interval(st.get("SumR en")),
                     "MRV mean": format_interval(st.get("mrv_mean"), 2), "kept %": format_interval(t_interval(list(share.values()))) if share else "",
                     "UML DECL AUROC": format_interval(st.get("mismatch auroc"), 3), "1 − cosine AUROC": format_interval(st.get("cosine auroc"), 3)})
    return pd.DataFrame(rows, columns=["setting", "method", "train noise", "seeds", "converged", "target SumR", "en SumR", "MRV mean", "kept %",
                                       "UML DECL AUROC", "1 − cosine AUROC"])


def noise_plot(world: World, setting: str = "common"):
    """Target SumR against the noise rate per method (mean ± 95% CI over seeds), or None without a grid."""
    path = paths.REPO_ROOT / "results" / f"protocol-{world.name}.json"
    return noise_figure(world.name, read_json(path), setting) if path.exists() else None


def curve_plot(world: World):
    """The learning curves (validation target SumR against steps, family colours, dashed at 40% noise) of the world's
    pilot runs, else of its grid's seed-0 runs that have curves; None when no record has a curve."""
    from ccr_core.study.grid import PROTOCOL

    runs = [r for r in records.load("pilot", world.name, records.repo_results_dir()) if r.get("curve")]
    if not runs:
        runs = [r for r in records.world_table_records("protocol", world.name, records.repo_results_dir())
                if r.get("curve") and r["seed"] == 0 and not r.get("noise_seed")]
    if not runs:
        return None
    proto = PROTOCOL.get(world.name)
    return curve_figure(world.name, runs, proto.steps if proto else None)


def leaderboard_table(world: World, sort_by: str = "SumR", groups: list[str] | None = None) -> pd.DataFrame:
    """One row per model x query group, sorted by ``sort_by`` (descending; ranks and MRV ascending). Beside each
    shipped (seed-0) SumR: the mean ± 95% CI over the equal-budget grid's seeds for that method and noise rate."""
    rows = []
    for m in world.model_list():
        r = model_result(world, m)
        mrv = r.get("mrv", {})
        for group, rep in r.get("groups", {}).items():
            if groups and group not in groups:
                continue
            rows.append({
                "model": m.label, "method": m.method, "train noise": m.noise, "group": group,
                "queries": rep["n_captions"], "images": rep["n_images"],
                **{k: round(rep[k], 2) for k in ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "SumR")},
                "SumR over seeds (95% CI)": _interval(world, m, group),
                "fused SumR": round(rep["fused"]["SumR"], 2) if "fused" in rep else None,
                "MRV i2t": round(mrv["mrv_i2t"], 3) if "mrv_i2t" in mrv else None,
                "MRV t2i": round(mrv["mrv_t2i"], 3) if "mrv_t2i" in mrv else None,
                "MRV mean": round(mrv["mrv_mean"], 3) if "mrv_mean" in mrv else None,
            })
    df = pd.DataFrame(rows, columns=COLUMNS)
    if sort_by not in df.columns:
        raise InputError(f"Cannot sort by {sort_by!r}; choose one of: {', '.join(COLUMNS)}.")
    ascending = sort_by.startswith("MRV") or sort_by in ("model", "method", "group", "train noise")
    return df.sort_values([sort_by, "model", "group"], ascending=[ascending, True, True], kind="stable").reset_index(drop=True)


RANKING_COLUMNS = ["rank", "model", "target SumR", "target SumR over seeds (95% CI)", "vs baseline (paired, 95% CI)", "verdict", "converged",
                   "MRV mean", "method", "train noise", "ranked by"]


def _verdict_words(mean: float, hw: float, n: int) -> str:
    """The comparison with the baseline in plain words ("better", "worse", "not resolved ...")."""
    word = verdict(mean, hw, n, "higher")
    return {"holds": "better than the baseline", "does not hold": "worse than the baseline",
            "identical in every seed": "same as the baseline"}.get(word, f"difference {word}")


def _converged_cell(world: World, result: dict, setting: str, model) -> str:
    """Whether the grid runs behind a ranking row had converged (the cell's mark) and, where it had not, the run this
    model was shipped from (``records.run_record``): RESULTS.md marks the same numbers the same way."""
    cell = protocol_convergence(world).get((setting, model.method, float(model.noise)), "") if setting in ("published", "common") else ""
    memo = world.memo.setdefault("run_converged", {})  # one read of the record file per model, not per table
    key = tuple(str(result.get(k)) for k in ("protocol", "method", "setting", "noise_rate", "fine_tuned", "scored"))  # what names the run
    if key not in memo:
        memo[key] = records.run_converged(world.name, result, paths.REPO_ROOT / "results") if result.get("protocol") == "equal-budget" else None
    own = "this model's run: not converged" if memo[key] is False else ""
    return "; ".join(x for x in (cell, own) if x)


def ranking_table(world: World, show_variants: bool = True) -> pd.DataFrame:
    """One row per model, ranked by the mean of its interval (the equal-budget grid's seeds of its method at its
    noise rate), not by one checkpoint's score: a row's rank then agrees with its verdict. Each row has its own
    (seed-0) target SumR, the mean ± 95% interval, and the paired difference from the baseline at the same noise
    rate with its verdict -- a difference whose interval holds 0 says "not resolved". Models the grid has no
    seeds of come after, by their own score ("ranked by" says which)."""
    rows = []
    for m in world.model_list():
        if not show_variants and not is_main(m):
            continue
        r = model_result(world, m)
        own = target_sumr(r) if r.get("groups") else None
        setting, cell = grid_cell(world, m)
        interval, versus, verdict, grid_mean = "not in the equal-budget grid", "", "no seeds run", None
        if cell and cell["stats"].get("target SumR"):
            mean, hw = cell["stats"]["target SumR"]
            grid_mean = mean
            n = len(cell["seeds"])
            interval = f"{format_interval((mean, hw))} ({n} seed{'s' if n != 1 else ''}, {setting})"
            base_table = fine_tuned_cells(world) if setting == "fine-tuned" else protocol_cells(world)
            base = base_table.get(("common" if setting == "fine-tuned" else setting, BASELINE, float(m.noise)))
            if m.method == BASELINE:
                verdict = "the reference"
            elif base:
                d_mean, d_hw, d_n = paired(cell["per_unit"].get("target SumR", {}), base["per_unit"].get("target SumR", {}))
                if d_n:
                    versus = f"{d_mean:+.1f}" + ("" if math.isnan(d_hw) else f" ± {d_hw:.1f}")
                    verdict = _verdict_words(d_mean, d_hw, d_n)
        mrv = r.get("mrv", {}).get("mrv_mean")
        rows.append({"model": m.label, "method": m.method, "train noise": m.noise, "target SumR": round(own, 1) if own is not None else None,
                     "target SumR over seeds (95% CI)": interval, "vs baseline (paired, 95% CI)": versus, "verdict": verdict,
                     "converged": _converged_cell(world, r, setting, m),
                     "MRV mean": round(mrv, 3) if mrv is not None else None, "ranked by": "interval mean" if grid_mean is not None else "own score",
                     "_grid": grid_mean, "_own": own})
    df = pd.DataFrame(rows, columns=[*RANKING_COLUMNS[1:], "_grid", "_own"])
    df["_has_grid"] = df["_grid"].notna()
    df = df.sort_values(["_has_grid", "_grid", "_own", "model"], ascending=[False, False, False, True], kind="stable", na_position="last")
    df = df.drop(columns=["_grid", "_own", "_has_grid"]).reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def identical_cells(world: World, a: str = REFERENCE, b: str = BASELINE, setting: str = "common") -> list[float]:
    """The noise rates at which methods ``a`` and ``b`` scored exactly the same on every seed in ``setting`` (the
    floor and the baseline in the common encoder are one model: same loss, τ, heads and initialisation)."""
    table = protocol_cells(world)
    same = []
    for (s, method, noise), cell in table.items():
        other = table.get((s, b, noise))
        if s == setting and method == a and other and cell["per_unit"].get("target SumR") and \
                cell["per_unit"].get("target SumR") == other["per_unit"].get("target SumR"):
            same.append(noise)
    return sorted(same)


def settings_note(world: World) -> str:
    """What "common" and "published" mean, and (where the grid shows it) why floor and baseline rows are identical."""
    text = ("**Settings.** Every method is trained twice in the equal-budget grid, on the same frozen backbones: **published** is each "
            "method's own architecture (e.g. NRCCR's attention tower, the mapping heads of its paper); **common** puts every method's "
            "objective on the floor's heads (the e5 sentence embedding and the pooled image feature, one linear map each), so a "
            "difference there is a difference of objective, not of architecture. A row's interval says which setting it comes from "
            "(published where that was run, else common).")
    same = identical_cells(world)
    if same:
        text += (" **floor = baseline in the common setting:** there the baseline's objective (symmetric InfoNCE, fixed τ = 0.05) on the "
                 "floor's heads, from the same initialisation, *is* the floor, so their runs are the same model and every number is "
                 f"identical (noise {', '.join(f'{n:g}' for n in same)}). The baseline differs from the floor only in the published setting.")
    return text


def ranking_figure(world: World, df: pd.DataFrame):
    """Horizontal bars of each model's target SumR (full names readable), its family's colour, noisy ones hatched,
    with the grid's interval as a whisker where there is one."""
    import plotly.graph_objects as go

    fig = go.Figure()
    ordered = df.iloc[::-1]  # best at the top
    for _, row in ordered.iterrows():
        entry = world.registry.find(row["model"].split(" (", 1)[0])
        style = model_style(entry) if entry else {"colour": "#000", "pattern": ""}
        _, cell = grid_cell(world, entry) if entry else ("", None)
        stat = cell["stats"].get("target SumR") if cell else None
        fig.add_trace(go.Bar(y=[row["model"]], x=[row["target SumR"]], orientation="h", name=row["model"], showlegend=False,
                             marker=dict(color=style["colour"], pattern_shape=style["pattern"], line=dict(color="#333", width=0.5)),
                             error_x=dict(type="data", array=[stat[1]], visible=True, color="#333") if stat and not math.isnan(stat[1]) else None,
                             hovertemplate=f"{row['model']}<br>target SumR %{{x:.1f}}<br>{row['verdict']}<extra></extra>"))
    fig.update_layout(**chart_layout(height=max(260, 34 * len(df) + 90), title="Target-language SumR per model (whisker: 95% interval over seeds)",
                                     xaxis_title="target SumR (higher is better)", margin=dict(t=60, l=10, r=20, b=50)))
    fig.update_yaxes(automargin=True)
    return fig


def groups(world: World) -> list[str]:
    return sorted({g for r in all_results(world) for g in r.get("groups", {})})


def leaderboard_figures(df: pd.DataFrame, metric: str = "SumR", world: World | None = None):
    """(bar chart of ``metric`` per group and model, horizontal bar chart of MRV per model), each model in its
    method family's colour (noisy ones hatched), the same as in every other chart."""
    import plotly.graph_objects as go

    if metric not in df.columns:
        raise InputError(f"Unknown metric {metric!r}.")

    def style(name: str, method: str, noise: float) -> dict:
        entry = world.registry.find(name.split(" (", 1)[0]) if world is not None else None
        return model_style(entry) if entry else {"colour": method_colour(method, noise), "pattern": "/" if noise else ""}

    bars = go.Figure()
    for model, rows in df.groupby("model", sort=False):
        st = style(model, rows["method"].iloc[0], float(rows["train noise"].iloc[0]))
        bars.add_trace(go.Bar(x=rows["group"], y=rows[metric], name=model, marker=dict(color=st["colour"], pattern_shape=st["pattern"]),
                              hovertemplate=f"{model}<br>%{{x}}: %{{y}}<extra></extra>"))
    bars.update_layout(**chart_layout(height=440, barmode="group", title=f"{metric} per query group (language / caption source)", yaxis_title=metric))
    per_model = df.drop_duplicates("model").iloc[::-1]
    mrv = go.Figure()
    for (name, col), pattern in ((("image → text", "MRV i2t"), ""), (("text → image", "MRV t2i"), ".")):
        colours = [style(m, meth, float(nz))["colour"] for m, meth, nz in zip(per_model["model"], per_model["method"], per_model["train noise"])]
        mrv.add_trace(go.Bar(y=per_model["model"], x=per_model[col], name=name, orientation="h", marker=dict(color=colours, pattern_shape=pattern),
                             text=per_model[col], textposition="outside"))
    mrv.update_layout(**chart_layout(height=max(300, 44 * len(per_model) + 100), barmode="group",
                                     title="MRV: spread of ranks across languages (lower is better; dotted: text → image)", xaxis_title="MRV"))
    mrv.update_yaxes(automargin=True)
    return bars, mrv


def export(world: World, df: pd.DataFrame) -> tuple[Path, Path]:
    """Write the table as CSV and the full results as JSON into the world's export folder."""
    csv_path = world.export_dir / f"leaderboard-{safe_name(world.name)}.csv"
    json_path = world.export_dir / f"leaderboard-{safe_name(world.name)}.json"
    tmp = csv_path.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(csv_path)
    write_json_atomic(json_path, {"world": world.name, "rows": df.to_dict(orient="records"), "results": all_results(world)})
    return csv_path, json_path


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def recoloured(fig):
    """A figure from the library (traces named by method) in the dashboard's family colours and readable font."""
    if fig is None:
        return None
    for trace in fig.data:
        name = str(getattr(trace, "name", "") or "")
        if family(name) in FAMILY_COLOURS:
            colour = method_colour(name)
            if hasattr(trace, "line") and trace.line is not None:
                trace.line.color = colour
            if hasattr(trace, "marker") and trace.marker is not None:
                trace.marker.color = colour
            if hasattr(trace, "error_y") and trace.error_y is not None:
                trace.error_y.color = colour
    fig.update_layout(font=dict(size=CHART_FONT))
    return fig


VERDICT_NOTE = ("**How to read it:** rows are ranked by the **mean of the interval** (over the equal-budget grid's seeds of the same "
                "method and noise rate), not by one checkpoint: *target SumR* is this checkpoint's own score (one seed), which can lie "
                "outside the interval when that seed was a lucky or unlucky one. *vs baseline* is the paired per-seed difference from the baseline at the same "
                "noise rate: **better / worse** when its 95% interval excludes 0, **not resolved** when it includes 0 (the experiment "
                "cannot tell the two apart).")


def build_tab(world: World, page) -> None:
    """The Leaderboard tab: one row per model (interval and verdict), charts, the per-group table, downloads."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded

    chosen_groups = groups(world)
    with gr.Tab("Leaderboard", id="leaderboard") as tab:
        with gr.Row():
            variants = gr.Checkbox(value=False, label="Show variants (noise-trained, floor, English-only, trained here)", elem_id="lb-variants")
        status = gr.Markdown(elem_id="lb-status")
        ranking = gr.Dataframe(interactive=False, label="Ranking: one row per model", wrap=True, elem_id="lb-ranking")
        gr.Markdown(VERDICT_NOTE)
        gr.Markdown(settings_note(world), elem_id="lb-settings")
        ranking_plot = gr.Plot(label="Target SumR per model", elem_id="lb-ranking-plot")
        with gr.Accordion("Per query group: every model × language / caption source", open=False):
            with gr.Row():
                sort = gr.Dropdown(COLUMNS, value="SumR", label="Sort by")
                metric = gr.Dropdown(list(METRICS), value="SumR", label="Chart metric")
                group_pick = gr.CheckboxGroup(chosen_groups, value=chosen_groups, label="Query groups (language / caption source)")
            table = gr.Dataframe(interactive=False, label="Results (click a header to sort)", elem_id="lb-table")
            bars = gr.Plot(label="Recall", elem_id="lb-bars")
        mrv = gr.Plot(label="MRV", elem_id="lb-mrv")
        with gr.Row():
            csv_file = gr.DownloadButton("Download CSV", elem_id="lb-csv")
            json_file = gr.DownloadButton("Download JSON", elem_id="lb-json")
        gr.Markdown("**The equal-budget comparison** (every method at the same steps and target-language exposures, 3 seeds, "
                    "mean ± 95% interval; `python -m ccr_core.experiments`).")
        intervals = gr.Dataframe(interactive=False, label="Grid cells: mean ± 95% CI over seeds", elem_id="lb-intervals")
        noise_fig = gr.Plot(label="Target SumR against the noise rate (common encoder)", elem_id="lb-noise")
        curves = gr.Plot(label="Learning curves: validation target SumR during training (dotted: the grid's budget)", elem_id="lb-curves")
        curves_note = gr.Markdown(elem_id="lb-curves-note")

    @guarded(12)
    def do_leaderboard(sort_by, chart_metric, picked, show_variants):
        df = leaderboard_table(world, sort_by, picked or None)
        ranked = ranking_table(world, bool(show_variants))
        if not show_variants:
            df = df[df["model"].isin(set(ranked["model"]))]
        bar_fig, mrv_fig = leaderboard_figures(df, chart_metric, world)
        csv_path, json_path = export(world, df)
        text = f"{len(ranked)} models, test split of **{world.name}**" + ("" if show_variants else " (the main methods; tick *Show variants* for all)") + "."
        grid = interval_table(world)
        if grid.empty:
            text += " No equal-budget grid has been run for this world yet, so no intervals."
        curve_fig = curve_plot(world)
        curve_text = ("" if curve_fig is not None else
                      "No learning curve recorded for this world yet (`python -m ccr_core.experiments --world "
                      f"{world.name} --pilot`, then `--publish`).")
        return (text, df, bar_fig, mrv_fig, str(csv_path), str(json_path), grid, recoloured(noise_plot(world)), ranked,
                ranking_figure(world, ranked), recoloured(curve_fig), curve_text)

    gr.on([tab.select, sort.change, metric.change, group_pick.change, variants.change], do_leaderboard, [sort, metric, group_pick, variants],
          [status, table, bars, mrv, csv_file, json_file, intervals, noise_fig, ranking, ranking_plot, curves, curves_note], api_name="leaderboard")
