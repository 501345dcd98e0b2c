"""Consistency tab: MRV per model in both directions, the distribution of per-instance rank spread,
the most inconsistent test instances, and one instance's captions with a language x method heatmap
of its ranks. Rank tables are the library's (``metrics.rank_table_*``) over the same captions
``evaluate_model`` uses for MRV (one native caption per image per language), so the numbers match
the leaderboard's."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ccr_core.dashboard.colours import SEQUENTIAL_SCALE, chart_layout, main_models, model_style
from ccr_core.dashboard.world import InputError, ModelEntry, World, language_name
from ccr_core import metrics
from ccr_core.eval.retrieval import query_groups

DIRECTIONS = {"t2i": "text → image", "i2t": "image → text"}


def _mrv_captions(world: World) -> dict[str, list[int]]:
    """lang -> rows of world.captions used for MRV (the evaluation's native query group of each language)."""
    out = {}
    for group, (lang, sources) in query_groups(world.bundle, "test").items():
        if "/" in group:
            continue
        rows = [i for i, c in enumerate(world.captions)
                if c.lang == lang and any(c.source == s or (s.endswith(":") and c.source.startswith(s)) for s in sources)]
        if rows:
            out[lang] = rows
    return out


def rank_tables(world: World, model: ModelEntry) -> dict:
    """``{"languages", "items": instance item ids, "t2i": (n, L) ranks, "i2t": (n, L) ranks}`` (memoised)."""
    memo = world.memo.setdefault("rank_tables", {})
    key = (model.name, model.checkpoint_hash)
    if key not in memo:
        rows = _mrv_captions(world)
        if len(rows) < 2:
            raise InputError("Consistency needs test captions in at least two languages.")
        sims = {lang: model.caption_emb[r] @ model.image_emb.T for lang, r in rows.items()}  # lang -> (M_l, N)
        c2i = {lang: np.array([world.gallery_pos[world.captions[i].item] for i in r]) for lang, r in rows.items()}
        t2i = metrics.rank_table_text_to_image(sims, c2i)
        i2t = metrics.rank_table_image_to_text(sims, c2i)
        memo[key] = {"languages": t2i["languages"], "items": [world.gallery[j].id for j in t2i["instances"]],
                     "t2i": t2i["ranks"], "i2t": i2t["ranks"]}
    return memo[key]


def _direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise InputError(f"Direction must be one of {', '.join(DIRECTIONS)} (got {direction!r}).")
    return direction


def mrv_summary(world: World, models: Sequence[str] | None = None) -> pd.DataFrame:
    rows = []
    for m in world.select_models(models or world.model_names()):
        t = rank_tables(world, m)
        i2t, t2i = metrics.mrv(t["i2t"]), metrics.mrv(t["t2i"])
        rows.append({"model": m.label, "MRV image→text": round(i2t, 3), "MRV text→image": round(t2i, 3), "MRV mean": round((i2t + t2i) / 2, 3),
                     "languages": ", ".join(t["languages"]), "instances": len(t["items"]),
                     "share of instances ranked alike (σ = 0)": f"{100 * np.mean(np.std(t['t2i'], axis=1) == 0):.0f}%"})
    return pd.DataFrame(rows)


def spread_histogram(world: World, models: Sequence[str] | None = None, direction: str = "t2i"):
    """Per model, the distribution of its instances' rank spread σ as one horizontal box (one row per model, in its
    family's colour, its mean -- the MRV -- marked): readable for many models, unlike overlaid histograms."""
    import plotly.graph_objects as go

    direction = _direction(direction)
    fig = go.Figure()
    chosen = world.select_models(models or world.model_names())
    upper = 1.0
    for m in reversed(chosen):  # the first model at the top
        sigma = np.std(rank_tables(world, m)[direction].astype(np.float64), axis=1)
        upper = max(upper, float(np.percentile(sigma, 90)) if sigma.size else 1.0)
        style = model_style(m)
        fig.add_trace(go.Box(x=sigma, name=f"{m.label} (MRV {sigma.mean():.2f})", orientation="h", boxmean=True, boxpoints=False,
                             marker_color=style["colour"], line=dict(color=style["colour"]), fillcolor=style["colour"], opacity=0.8,
                             hovertemplate=f"{m.label}<br>σ %{{x:.2f}}<extra></extra>"))
    fig.update_layout(**chart_layout(height=max(280, 46 * len(chosen) + 110), showlegend=False,
                                     xaxis_title="σ of an instance's ranks across languages (0 = every language alike)",
                                     title=f"Rank spread per instance, {DIRECTIONS[direction]} (dashed line in a box: the mean = MRV)"))
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(range=[0, 1.6 * upper])  # the boxes, not the long tail of a few very inconsistent images (hover for all)
    return fig


def inconsistent_instances(world: World, model: str, direction: str = "t2i", n: int = 15) -> pd.DataFrame:
    """The ``n`` instances whose ranks spread most across languages for one model."""
    direction = _direction(direction)
    m = world.model(model)
    t = rank_tables(world, m)
    ranks = t[direction]
    sigma = np.std(ranks.astype(np.float64), axis=1)
    order = np.argsort(-sigma, kind="stable")[: max(1, int(n))]
    rows = []
    for j in order:
        item = t["items"][j]
        row = {"image": item, "σ": round(float(sigma[j]), 3)}
        row.update({f"rank {l}": int(ranks[j, k]) for k, l in enumerate(t["languages"])})
        first = next((world.captions[i].text for i in world.captions_of_item[item]), "")
        row["a caption"] = first
        rows.append(row)
    return pd.DataFrame(rows)


def instance_detail(world: World, item_id: str | None, models: Sequence[str] | None = None, direction: str = "t2i"):
    """(captions of the instance in every language, heatmap of its ranks: language x method, status)."""
    import plotly.graph_objects as go

    direction = _direction(direction)
    item_id = (item_id or "").strip()
    if item_id not in world.gallery_pos:
        raise InputError("Choose a test image (an instance) from the list." if not item_id else f"{item_id!r} is not a test image of this world.")
    caps = pd.DataFrame([{"language": language_name(c.lang) + f" ({c.lang})", "caption": c.text, "source": c.source, "id": c.id}
                         for c in (world.captions[i] for i in world.captions_of_item[item_id])])
    chosen = world.select_models(models or world.model_names())
    langs = rank_tables(world, chosen[0])["languages"]
    z = np.full((len(langs), len(chosen)), np.nan)
    for k, m in enumerate(chosen):
        t = rank_tables(world, m)
        if item_id in t["items"]:
            z[:, k] = t[direction][t["items"].index(item_id)]
    if np.isnan(z).all():
        raise InputError(f"{item_id!r} has no caption in every language ({', '.join(langs)}), so it is not an MRV instance.")
    labels = [m.label for m in chosen]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=[language_name(l) for l in langs], text=z.astype(int).astype(str), texttemplate="%{text}",
                               colorscale=SEQUENTIAL_SCALE + "_r", zmin=1, zmax=max(float(np.nanmax(z)), 2.0), colorbar=dict(title="rank"),
                               hovertemplate="%{y} · %{x}: rank %{z}<extra></extra>"))
    fig.update_layout(**chart_layout(height=140 + 60 * len(langs), title=f"Ranks of {item_id}, {DIRECTIONS[direction]} (1 = best; bright = good)",
                                     margin=dict(t=60, l=90, r=20, b=60)))
    sigma = {lab: float(np.std(z[:, k])) for k, lab in enumerate(labels) if not np.isnan(z[:, k]).any()}
    status = f"**{item_id}**: spread of its ranks (σ) — " + ", ".join(f"{k} {v:.2f}" for k, v in sigma.items())
    return caps, fig, status


def instance_choices(world: World, model: str | None = None, direction: str = "t2i", limit: int = 50) -> list[tuple[str, str]]:
    """(label, item id) of MRV instances, most inconsistent first for ``model`` (the first model if None)."""
    return find_instances(world, "", model, direction, limit)


def find_instances(world: World, text: str | None, model: str | None = None, direction: str = "t2i", limit: int = 50) -> list[tuple[str, str]]:
    """(label, item id) of up to ``limit`` MRV instances whose id or one of whose captions contains every
    word of ``text`` (case-insensitive), most inconsistent first: the instance picker's server-side search."""
    m = world.model(model) if model else world.model_list()[0]
    t = rank_tables(world, m)
    sigma = np.std(t[_direction(direction)].astype(np.float64), axis=1)
    words = (text or "").strip().casefold().split()
    out = []
    for j in np.argsort(-sigma, kind="stable"):
        item = t["items"][j]
        if words:
            texts = [item.casefold()] + [world.captions[i].text.casefold() for i in world.captions_of_item[item]]
            if not all(any(w in x for x in texts) for w in words):
                continue
        out.append((f"{item} · σ {sigma[j]:.2f}", item))
        if len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def build_tab(world: World, page) -> None:
    """The Consistency tab: MRV per model, the spread histogram, the worst instances and one instance's detail."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded, selected, takes_event

    names = world.model_names()
    with gr.Tab("Consistency", id="consistency") as tab:
        gr.Markdown("Does a model find an image equally well whatever the language of the description? For each test image with a "
                    "caption in every language, take the rank each language gives it; the **spread** (σ) of those ranks is 0 when "
                    "every language agrees. **MRV** (mean rank variance) is the mean spread over images: lower is more consistent.")
        with gr.Row():
            direction = gr.Radio([(v, k) for k, v in DIRECTIONS.items()], value="t2i", label="Direction")
            first = next((m.name for m in main_models(world.model_list())), names[0])
            model = gr.Dropdown(names, value=first, label="Model for the 'most inconsistent' list", allow_custom_value=True)
            variants = gr.Checkbox(value=False, label="Show variants", elem_id="cons-variants")
        status = gr.Markdown()
        summary = gr.Dataframe(interactive=False, label="MRV per model", elem_id="cons-summary")
        hist = gr.Plot(label="Rank spread per instance", elem_id="cons-hist")
        worst = gr.Dataframe(interactive=False, label="Most inconsistent instances (click a row)", elem_id="cons-worst")
        with gr.Row():
            find = gr.Textbox(value="", label="Find an instance (words of a caption or an id)", lines=1, max_lines=1, scale=1, elem_id="cons-find")
            instance = gr.Dropdown([], label="Instance", filterable=True, allow_custom_value=True, scale=2, elem_id="cons-instance")
        inst_status = gr.Markdown("Click a row of the list above, or find an instance: its picture, captions and ranks show here.")
        with gr.Row():  # hidden until an instance is picked: no empty table or frame before
            inst_thumb = gr.Image(label="The instance", interactive=False, height=200, scale=1, buttons=[], elem_id="cons-thumb", visible=False)
            inst_caps = gr.Dataframe(interactive=False, wrap=True, label="Its captions", scale=3, elem_id="cons-caps", visible=False)
        inst_heat = gr.Plot(label="Ranks: language × method", elem_id="cons-heat", visible=False)
        open_instance = gr.Button("Open in the Instance tab ▸ (or click a heatmap cell)", size="sm", elem_id="cons-open-instance")

    def shown(show_variants) -> list[str]:
        return world.model_names() if show_variants else [m.name for m in main_models(world.model_list())] or world.model_names()

    @guarded(5)
    def do_consistency(dirn, name, show_variants=False):
        chosen = shown(show_variants)
        return ("", mrv_summary(world, chosen), spread_histogram(world, chosen, dirn), inconsistent_instances(world, name, dirn),
                gr.update(choices=instance_choices(world, name, dirn)))

    gr.on([tab.select, direction.change, model.change, variants.change], do_consistency, [direction, model, variants],
          [status, summary, hist, worst, instance], api_name="consistency")

    @guarded(4, status_at=2, on_error={0: gr.update(visible=False), 1: gr.update(visible=False), 3: gr.update(visible=False)})
    def do_instance(item, dirn, show_variants=False):
        caps, fig, text = instance_detail(world, item, shown(show_variants), dirn)
        return gr.update(value=caps, visible=True), gr.update(value=fig, visible=True), text, gr.update(value=str(world.thumbnail(item)), visible=True)

    instance.input(do_instance, [instance, direction, variants], [inst_caps, inst_heat, inst_status, inst_thumb], api_name="consistency_instance")

    def show_matches(text, name, dirn):  # server-side search (see search.build_tab for why a separate box)
        return gr.update(choices=find_instances(world, text, name, dirn))

    gr.on([find.change, find.submit], show_matches, [find, model, direction], instance, trigger_mode="always_last", show_progress="hidden",
          api_visibility="private")

    @takes_event
    @guarded(5, status_at=3)
    def pick_worst(dirn, show_variants, evt=None):
        item = selected(evt, "row_value")[0]
        return (item, *do_instance(item, dirn, show_variants))

    worst.select(pick_worst, [direction, variants], [instance, inst_caps, inst_heat, inst_status, inst_thumb], api_name="consistency_pick")
    page.link_instance(open_instance.click, [instance], lambda item, evt=None: item, api_name="consistency_open_instance")
