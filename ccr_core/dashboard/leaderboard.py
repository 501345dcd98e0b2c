"""Leaderboard tab: R@K / SumR per query group (language and caption source) and MRV for every model,
from ``evaluate_model``. Results come from a ``metrics.json`` shipped beside a checkpoint when it is
stamped with the same weights hash, else from the world cache (``eval/``, stamped the same way), else
they are computed once and cached. Tables download as CSV and JSON."""
from __future__ import annotations

import math
import threading
from pathlib import Path

import pandas as pd

from ccr_core.dashboard.world import InputError, ModelEntry, World, bundle_stamp, safe_name
from ccr_core.io import read_json, write_json_atomic
from ccr_core.methods import method_sort_key

METRICS = ("SumR", "mean_recall", "t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_MedR", "i2t_MedR")
COLUMNS = ["model", "method", "train noise", "group", "queries", "images", "t2i_R@1", "t2i_R@5", "t2i_R@10",
           "i2t_R@1", "i2t_R@5", "i2t_R@10", "SumR", "SumR over seeds (95% CI)", "fused SumR", "MRV i2t", "MRV t2i", "MRV mean"]
_eval_lock = threading.Lock()  # one evaluation at a time (they share two CPU cores)


def model_result(world: World, model: ModelEntry) -> dict:
    """``evaluate_model``'s result for one model (shipped metrics.json, world cache, or computed)."""
    memo = world.memo.setdefault("eval", {})
    key = (model.name, model.checkpoint_hash)
    if key in memo:
        return memo[key]
    with _eval_lock:
        if key in memo:
            return memo[key]
        result = None
        for shipped in (model.trained.folder / "metrics.json", model.trained.folder.parent / "metrics.json"):
            if shipped.exists():
                data = read_json(shipped)
                if data.get("checkpoint_sha256") in (None, model.checkpoint_hash) and "groups" in data:
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
            from ccr_core.evaluate import evaluate_model

            result = evaluate_model(model.trained, world.benches[model.text_config])
            write_json_atomic(path, {"checkpoint_sha256": model.checkpoint_hash, "bundle": bundle_stamp(world), "result": result})
        result = {**result, "model": model.label}
        memo[key] = result
        return result


def all_results(world: World) -> list[dict]:
    return [model_result(world, m) for m in world.model_list()]


def protocol_cells(world: World) -> dict:
    """The equal-budget grid's cells for this world (``ccr_core.protocol.cells`` of results/protocol-<world>.json),
    or {} when it has not been run; read once per world."""
    if "protocol_cells" not in world.memo:
        from ccr_core import protocol
        from ccr_core.paths import REPO_ROOT

        path = REPO_ROOT / "results" / f"protocol-{world.name}.json"
        world.memo["protocol_cells"] = protocol.cells(read_json(path)) if path.exists() else {}
    return world.memo["protocol_cells"]


def fine_tuned_cells(world: World) -> dict:
    """The fine-tuned runs' cells (results/fine-tuned-<world>.json, common encoder), or {}; read once per world."""
    if "fine_tuned_cells" not in world.memo:
        from ccr_core import protocol
        from ccr_core.paths import REPO_ROOT

        path = REPO_ROOT / "results" / f"fine-tuned-{world.name}.json"
        world.memo["fine_tuned_cells"] = protocol.cells(read_json(path)) if path.exists() else {}
    return world.memo["fine_tuned_cells"]


def _interval(world: World, model: ModelEntry, group: str) -> str | None:
    """'mean ± half-width (n seeds)' of the model's method at its noise rate, published setting (the floor: common);
    a model with fine-tuned backbone tops: its fine-tuned runs' (common encoder)."""
    meta = getattr(getattr(model, "trained", None), "meta", None) or {}
    if meta.get("visual_trainable_blocks") or meta.get("text_trainable_layers"):
        cell = fine_tuned_cells(world).get(("common", model.method, float(model.noise)))
    else:
        cell = protocol_cells(world).get(("common" if model.method == "floor" else "published", model.method, float(model.noise)))
    stat = cell["stats"].get(f"SumR {group}") if cell else None
    if not stat:
        return None
    mean, hw = stat
    n = len(cell["seeds"])
    return f"{mean:.1f}" + ("" if hw != hw else f" ± {hw:.1f}") + f" ({n} seed{'s' if n != 1 else ''})"


def plus_minus(stat: tuple[float, float] | None, digits: int = 1) -> str:
    """'mean ± half-width' of a (mean, half-width) pair; '' without a mean, the mean alone without a width."""
    if stat is None or stat[0] is None or math.isnan(stat[0]):
        return ""
    mean, hw = stat
    return f"{mean:.{digits}f}" + ("" if hw is None or math.isnan(hw) else f" ± {hw:.{digits}f}")


def interval_table(world: World) -> pd.DataFrame:
    """One row per cell of the equal-budget grid: target and English SumR, MRV and kept share, mean ± 95% CI."""
    from ccr_core import protocol

    table = protocol_cells(world)
    rows = []
    for (setting, method, noise), cell in sorted(table.items(), key=lambda kv: (kv[0][0], method_sort_key(kv[0][1]), kv[0][2])):
        st = cell["stats"]
        share = protocol.kept_share(table, setting, method, noise) if noise else {}
        rows.append({"setting": setting, "method": method, "train noise": noise, "seeds": len(cell["seeds"]),
                     "target SumR": plus_minus(st.get("target SumR")), "en SumR": plus_minus(st.get("SumR en")),
                     "MRV mean": plus_minus(st.get("mrv_mean"), 2), "kept %": plus_minus(protocol.t_interval(list(share.values()))) if share else "",
                     "UML DECL AUROC": plus_minus(st.get("mismatch auroc"), 3), "1 − cosine AUROC": plus_minus(st.get("cosine auroc"), 3)})
    return pd.DataFrame(rows, columns=["setting", "method", "train noise", "seeds", "target SumR", "en SumR", "MRV mean", "kept %",
                                       "UML DECL AUROC", "1 − cosine AUROC"])


def noise_plot(world: World, setting: str = "common"):
    """Target SumR against the noise rate per method (mean ± 95% CI over seeds), or None without a grid."""
    from ccr_core import protocol
    from ccr_core.paths import REPO_ROOT

    path = REPO_ROOT / "results" / f"protocol-{world.name}.json"
    return protocol.noise_figure(world.name, read_json(path), setting) if path.exists() else None


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


def groups(world: World) -> list[str]:
    return sorted({g for r in all_results(world) for g in r.get("groups", {})})


def leaderboard_figures(df: pd.DataFrame, metric: str = "SumR"):
    """(bar chart of ``metric`` per group and model, bar chart of MRV per model)."""
    import plotly.express as px
    import plotly.graph_objects as go

    if metric not in df.columns:
        raise InputError(f"Unknown metric {metric!r}.")
    bars = px.bar(df.sort_values(["group", "model"]), x="group", y=metric, color="model", barmode="group",
                  hover_data=["method", "train noise", "queries"], template="plotly_white",
                  title=f"{metric} per query group (language / caption source)")
    bars.update_layout(height=420, legend=dict(orientation="h", y=-0.2), margin=dict(t=60, l=50, r=20, b=40))
    per_model = df.drop_duplicates("model")
    mrv = go.Figure()
    for name, col in (("image → text", "MRV i2t"), ("text → image", "MRV t2i")):
        mrv.add_trace(go.Bar(x=per_model["model"], y=per_model[col], name=name, text=per_model[col], textposition="outside"))
    mrv.update_layout(barmode="group", template="plotly_white", height=420, title="MRV: spread of ranks across languages (lower is better)",
                      legend=dict(orientation="h", y=-0.2), margin=dict(t=60, l=50, r=20, b=40), yaxis_title="MRV")
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


def build_tab(world: World, page) -> None:
    """The Leaderboard tab: the results table, recall and MRV charts, CSV and JSON downloads."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded

    chosen_groups = groups(world)
    with gr.Tab("Leaderboard", id="leaderboard") as tab:
        with gr.Row():
            sort = gr.Dropdown(COLUMNS, value="SumR", label="Sort by")
            metric = gr.Dropdown(list(METRICS), value="SumR", label="Chart metric")
            group_pick = gr.CheckboxGroup(chosen_groups, value=chosen_groups, label="Query groups (language / caption source)")
        status = gr.Markdown()
        table = gr.Dataframe(interactive=False, label="Results (click a header to sort)", elem_id="lb-table")
        with gr.Row():
            bars = gr.Plot(label="Recall", elem_id="lb-bars")
            mrv = gr.Plot(label="MRV", elem_id="lb-mrv")
        with gr.Row():
            csv_file = gr.DownloadButton("Download CSV", elem_id="lb-csv")
            json_file = gr.DownloadButton("Download JSON", elem_id="lb-json")
        gr.Markdown("**The equal-budget comparison** (every method at the same steps and target-language exposures, 3 seeds, "
                    "mean ± 95% interval; `python -m ccr_core.experiments`). The table above is one seed per method.")
        intervals = gr.Dataframe(interactive=False, label="Grid cells: mean ± 95% CI over seeds", elem_id="lb-intervals")
        noise_fig = gr.Plot(label="Target SumR against the noise rate (common encoder)", elem_id="lb-noise")

    @guarded(8)
    def do_leaderboard(sort_by, chart_metric, picked):
        df = leaderboard_table(world, sort_by, picked or None)
        bar_fig, mrv_fig = leaderboard_figures(df, chart_metric)
        csv_path, json_path = export(world, df)
        text = f"{df['model'].nunique()} models × {df['group'].nunique()} query groups, test split of **{world.name}**."
        grid = interval_table(world)
        if grid.empty:
            text += " No equal-budget grid has been run for this world yet, so no intervals."
        return text, df, bar_fig, mrv_fig, str(csv_path), str(json_path), grid, noise_plot(world)

    gr.on([tab.select, sort.change, metric.change, group_pick.change], do_leaderboard, [sort, metric, group_pick],
          [status, table, bars, mrv, csv_file, json_file, intervals, noise_fig], api_name="leaderboard")
