"""Many-languages tab: the same description typed in several languages; per method, where each
language puts the intended image and how much those ranks spread (the population standard deviation
across languages, i.e. MRV for this one instance). The intended image is the picked test instance's,
or else each method's own top-1 image for the English text (the first filled language if no English).
Ranks are over the whole test gallery with the metrics' tie rule."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ccr_core.dashboard.colours import chart_layout, main_models, method_colour
from ccr_core.dashboard.detect import has_letters, known_language
from ccr_core.dashboard.search import clean_query, rank_of, stable_order
from ccr_core.dashboard.world import NATIVE_SOURCES, InputError, World, language_name
from ccr_core import metrics

NO_LANGUAGE_NOTE = "⚠ **Left out “{text}”: its row has no language chosen.** Choose the language in the row's menu and compare again."


def _instance_label(world: World, item_id: str) -> str:
    rows = world.captions_of_item[item_id]
    first = next((world.captions[i].text for i in rows if world.captions[i].lang == "en"), None) or world.captions[rows[0]].text
    return f"{item_id} · {first[:70]}"


def instance_choices(world: World, limit: int = 50) -> list[tuple[str, str]]:
    """(label, item id) of the first ``limit`` test images captioned in at least two languages."""
    return find_instances(world, "", limit)


def find_instances(world: World, text: str | None, limit: int = 50) -> list[tuple[str, str]]:
    """(label, item id) of up to ``limit`` test images captioned in two or more languages whose id or
    one of whose captions contains every word of ``text`` (case-insensitive): the picker's server-side search."""
    words = (text or "").strip().casefold().split()
    out = []
    for item in world.gallery:
        rows = world.captions_of_item[item.id]
        if len({world.captions[i].lang for i in rows}) < 2:
            continue
        if words:
            texts = [item.id.casefold()] + [world.captions[i].text.casefold() for i in rows]
            if not all(any(w in t for t in texts) for w in words):
                continue
        out.append((_instance_label(world, item.id), item.id))
        if len(out) >= limit:
            break
    return out


def default_instance(world: World) -> str | None:
    """The instance the tab opens with: the first test image captioned in every world language."""
    for item in world.gallery:
        if {world.captions[i].lang for i in world.captions_of_item[item.id]} >= set(world.languages):
            return item.id
    found = instance_choices(world, 1)
    return found[0][1] if found else None


def instance_texts(world: World, item_id: str | None) -> dict[str, str]:
    """The instance's first caption in each world language (native captions preferred); '' if none."""
    if not item_id:
        return {lang: "" for lang in world.languages}
    if item_id not in world.gallery_pos:
        raise InputError(f"{item_id!r} is not a test image of this world.")
    texts = {}
    for lang in world.languages:
        caps = [world.captions[i] for i in world.captions_of_item[item_id] if world.captions[i].lang == lang]
        caps.sort(key=lambda c: c.source not in NATIVE_SOURCES)
        texts[lang] = caps[0].text if caps else ""
    return texts


@dataclass
class MethodSpread:
    model: str
    target_item: str
    ranks: dict[str, int]  # lang -> rank of the target image
    top1: dict[str, str]  # lang -> top-1 image id
    colour: str = "#000000"  # the method family's colour (the same in every chart)

    @property
    def spread(self) -> float | None:
        """Population std of the ranks across languages (MRV of this instance); None below two languages."""
        if len(self.ranks) < 2:
            return None
        return metrics.mrv(np.array([list(self.ranks.values())]))

    @property
    def agreement(self) -> float:
        """Fraction of languages whose top-1 image is the target."""
        return float(np.mean([t == self.target_item for t in self.top1.values()])) if self.top1 else 0.0


@dataclass
class ManyLanguagesResult:
    texts: dict[str, str]
    instance: str | None
    methods: list[MethodSpread]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def status(self) -> str:
        langs = ", ".join(language_name(l) for l in self.texts)
        if self.instance:
            head = f"Intended image: test instance `{self.instance}`."
        else:
            ref = "English" if "en" in self.texts else language_name(next(iter(self.texts)))
            head = f"No instance picked: the intended image is each method's top-1 for the {ref} text."
        lines = [f"**{len(self.texts)} language{'' if len(self.texts) == 1 else 's'}** ({langs}), {self.seconds * 1000:.0f} ms. {head}"]
        best = [m for m in self.methods if m.spread is not None]
        if best:
            winner = min(best, key=lambda m: m.spread)
            lines.append(f"Most consistent here: **{winner.model}** (spread {winner.spread:.2f}; 0 = every language puts the image at the same rank).")
        lines += [n if n.startswith("⚠") else f"_Note: {n}_" for n in self.notes]
        return "\n\n".join(lines)

    @property
    def shown_item(self) -> str | None:
        """The image the ranks are of: the picked instance, else the first method's intended image."""
        return self.instance or (self.methods[0].target_item if self.methods else None)

    def table(self) -> pd.DataFrame:
        langs = list(self.texts)
        rows = []
        for m in self.methods:
            row = {"method": m.model, "intended image": m.target_item}
            row.update({f"rank {l}": m.ranks.get(l) for l in langs})
            row["spread (σ, MRV)"] = round(m.spread, 3) if m.spread is not None else None
            row["mean rank"] = round(float(np.mean(list(m.ranks.values()))), 2)
            row["languages with it at top-1"] = f"{sum(t == m.target_item for t in m.top1.values())}/{len(m.top1)}"
            rows.append(row)
        return pd.DataFrame(rows)

    def figure(self):
        from plotly.subplots import make_subplots
        import plotly.graph_objects as go

        langs = list(self.texts)
        fig = make_subplots(rows=1, cols=2, column_widths=[0.68, 0.32], horizontal_spacing=0.12,
                            subplot_titles=("Rank of the intended image, per language (lower is better)", "Spread across languages (σ)"))
        for m in self.methods:
            colour = m.colour
            fig.add_trace(go.Scatter(
                x=[f"{language_name(l)} ({l})" for l in langs], y=[m.ranks.get(l) for l in langs], mode="lines+markers+text",
                text=[str(m.ranks.get(l, "")) for l in langs], textposition="top center", name=m.model,
                marker=dict(size=12, color=colour), line=dict(color=colour, width=2), legendgroup=m.model,
                hovertemplate="%{x}: rank %{y}<br>top-1: %{customdata}<extra>" + m.model + "</extra>",
                customdata=[m.top1.get(l, "") for l in langs]), row=1, col=1)
            fig.add_trace(go.Bar(x=[m.model], y=[m.spread or 0.0], marker_color=colour, showlegend=False, legendgroup=m.model,
                                 text=[f"{m.spread:.2f}" if m.spread is not None else "n/a"], textposition="outside",
                                 hovertemplate="σ = %{y:.3f}<extra>" + m.model + "</extra>"), row=1, col=2)
        worst = max([r for m in self.methods for r in m.ranks.values()] + [1])
        fig.update_yaxes(type="log", autorange="reversed", title_text="rank (log scale, 1 at top)", range=[np.log10(worst * 1.6), np.log10(0.8)], row=1, col=1)
        fig.update_yaxes(title_text="σ of ranks", rangemode="tozero", row=1, col=2)
        fig.update_layout(**chart_layout(height=460, margin=dict(l=60, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.18)))
        return fig


def many_languages(world: World, texts: dict[str, str | None], instance: str | None = None,
                   methods: Sequence[str] | None = None) -> ManyLanguagesResult:
    """Ranks of the intended image for each filled language, per method, and their spread."""
    start = time.perf_counter()
    models = world.select_models(methods)
    filled: dict[str, str] = {}
    notes: list[str] = []
    ordered = [l for l in world.languages if l in texts] + [l for l in texts if l not in world.languages]
    for lang in ordered:
        raw = (texts.get(lang) or "").strip()
        if not raw:
            continue
        if lang not in world.languages and not known_language(lang):
            notes.append(f"Ignored {lang!r}: not a language the text encoder knows.")
            continue
        if not has_letters(raw):  # emoji, digits or control characters alone carry no description to compare
            notes.append(f"Ignored {lang}: no letters (only emoji, digits or symbols), so nothing to compare across languages.")
            continue
        filled[lang], more = clean_query(raw)
        notes += [f"{lang}: {n}" for n in more]
    if not filled:
        raise InputError("Type the description in at least one language (or pick an instance to fill them in).")
    instance = (instance or "").strip() or None
    if instance is not None and instance not in world.gallery_pos:
        raise InputError(f"{instance!r} is not a test image of this world.")
    if len(filled) < 2:
        notes.append("Fill in two or more languages to see a spread.")
    emb: dict[str, dict[str, np.ndarray]] = {}  # lang -> model -> (E,)
    for lang, text in filled.items():
        encoded, trunc = world.encode_texts([text], lang, models)
        notes += [f"{lang}: {n}" for n in trunc]
        emb[lang] = {name: e[0] for name, e in encoded.items()}
    reference = "en" if "en" in filled else next(iter(filled))
    out = []
    for m in models:
        scores = {lang: m.image_emb @ emb[lang][m.name] for lang in filled}  # lang -> (N,)
        top1 = {lang: world.gallery[int(stable_order(s)[0])].id for lang, s in scores.items()}
        target = world.gallery_pos[instance] if instance else int(stable_order(scores[reference])[0])
        ranks = {lang: rank_of(s, target) for lang, s in scores.items()}
        out.append(MethodSpread(m.label, world.gallery[target].id, ranks, top1, method_colour(m.method, m.noise)))
    return ManyLanguagesResult(filled, instance, out, sorted(set(notes), key=notes.index), time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)

EXTRA_LANGUAGES = 3  # "Add a language" rows: any language the text encoder knows, no ground-truth caption needed
NO_INSTANCE = ("(none: use each method's top-1 for the English text)", "")


def compare_rows(world: World, item: str, chosen, values) -> tuple:
    """The tab's answer to its rows: ``values`` are the world's languages' texts, then (language, text) of each added
    row; a text typed without a language is said in a note, not silently dropped. (status, figure, table, thumbnail)"""
    n = len(world.languages)
    texts = dict(zip(world.languages, values[:n]))
    unlabelled = []
    for lang, text in zip(values[n::2], values[n + 1 :: 2]):
        if lang and (text or "").strip():
            texts[lang] = text
        elif (text or "").strip():
            unlabelled.append(" ".join(text.split())[:40])
    result = many_languages(world, texts, item, chosen)
    result.notes = [NO_LANGUAGE_NOTE.format(text=t) for t in unlabelled] + result.notes
    thumb = str(world.thumbnail(result.shown_item)) if result.shown_item else None
    return result.status(), result.figure(), result.table(), thumb


def build_tab(world: World, page) -> None:
    """The Languages tab, opened on a test instance in every language with its result drawn."""
    import gradio as gr

    from ccr_core.dashboard.detect import ENCODER_LANGUAGES
    from ccr_core.dashboard.ui import guarded

    names = world.model_names()
    main_names = [m.name for m in main_models(world.model_list())] or names
    start = default_instance(world)
    start_texts = instance_texts(world, start)
    opening = many_languages(world, start_texts, start, main_names) if start and any(start_texts.values()) else None
    others = sorted((l for l in ENCODER_LANGUAGES if l not in world.languages), key=language_name)
    with gr.Tab("Languages", id="languages"):
        gr.Markdown("Type **the same description in several languages** (or pick a test instance to fill them in). For each method: "
                    "where does each language put the intended image, and how far apart are those ranks? The spread (σ) is the MRV of "
                    "your own instance: 0 means every language agrees. **Add a language** the world has no captions in: its row shows "
                    "where that language puts the same image.")
        with gr.Row():
            picks = [NO_INSTANCE] + instance_choices(world)
            if start and start not in [v for _, v in picks]:
                picks.insert(1, (_instance_label(world, start), start))
            with gr.Column(scale=3):
                ml_find = gr.Textbox(value="", label="Find a test instance (words of a caption or an id)", lines=1, max_lines=1, elem_id="ml-find")
                ml_instance = gr.Dropdown([p for p in picks if p[1] in ("", start)], value=start or "", label="Intended image (test instance)", filterable=True,
                                          allow_custom_value=True, elem_id="ml-instance")
            with gr.Column(scale=3):
                ml_methods = gr.CheckboxGroup(main_names, value=main_names, label="Methods")
                ml_variants = gr.Checkbox(value=False, label="Show variants", elem_id="ml-variants")
        with gr.Row():
            ml_texts = [gr.Textbox(value=start_texts.get(l, ""), label=f"{language_name(l)} ({l})", lines=1, max_lines=4, elem_id=f"ml-text-{l}")
                        for l in world.languages]
        extra_rows, extra_langs, extra_texts = [], [], []
        for i in range(EXTRA_LANGUAGES):
            with gr.Row(visible=False, elem_id=f"ml-extra-{i}") as row:
                # value "" (a real choice): the API can leave these inputs out (a parameter with a default)
                # Its ~90 choices arrive at page load; a custom value lets API clients (which load no page) name any
                # code, which the handler checks (an unknown one is left out with a note).
                extra_langs.append(gr.Dropdown([("(choose a language)", "")], value="", label="Language", allow_custom_value=True,
                                               scale=1, elem_id=f"ml-extra-lang-{i}"))
                extra_texts.append(gr.Textbox(value="", label="The same description in that language", lines=1, max_lines=4, scale=3,
                                              elem_id=f"ml-extra-text-{i}"))
            extra_rows.append(row)
        with gr.Row():
            ml_btn = gr.Button("Compare languages", variant="primary", elem_id="ml-btn")
            add_btn = gr.Button("＋ Add a language", elem_id="ml-add")
        shown = gr.State(0)
        with gr.Row():
            ml_thumb = gr.Image(value=str(world.thumbnail(opening.shown_item)) if opening and opening.shown_item else None, label="The intended image",
                                interactive=False, height=180, scale=1, buttons=[], elem_id="ml-thumb")
            ml_status = gr.Markdown(opening.status() if opening else "", elem_id="ml-status")
        ml_plot = gr.Plot(label="Ranks per language", elem_id="ml-plot")  # drawn at page load (below): the page config stays small
        ml_table = gr.Dataframe(value=opening.table() if opening else None, interactive=False, label="Ranks, spread and agreement", elem_id="ml-table")

    page.hide_variants(ml_methods, ml_variants, main_names)
    # Long choice lists and the opening figure arrive at page load, not in the page config (ui.Page.lazy).
    extra_choices = [("(choose a language)", "")] + [(f"{language_name(l)} ({l})", l) for l in others]
    for dropdown in extra_langs:
        page.lazy(dropdown, lambda: gr.update(choices=extra_choices))
    page.lazy(ml_instance, lambda: gr.update(choices=picks))
    if opening is not None:
        opening_figure = opening.figure()
        page.lazy(ml_plot, lambda: opening_figure)

    @guarded(len(ml_texts) + 1, status_at=len(ml_texts))
    def fill_instance(item):
        texts = instance_texts(world, item)
        return (*[texts[l] for l in world.languages], f"Filled in the captions of `{item}`." if item else "Cleared.")

    ml_instance.input(fill_instance, ml_instance, [*ml_texts, ml_status], api_name="instance_texts")

    def show_matches(text):  # server-side search (see search.build_tab for why a separate box)
        return gr.update(choices=[NO_INSTANCE] + find_instances(world, text))

    gr.on([ml_find.change, ml_find.submit], show_matches, ml_find, ml_instance, trigger_mode="always_last", show_progress="hidden",
          api_visibility="private")

    def add_language(count):
        count = min(int(count or 0) + 1, EXTRA_LANGUAGES)
        return (count, *[gr.update(visible=i < count) for i in range(EXTRA_LANGUAGES)], gr.update(interactive=count < EXTRA_LANGUAGES))

    add_btn.click(add_language, shown, [shown, *extra_rows, add_btn], queue=False, api_visibility="private")

    @guarded(4)
    def do_many(item, chosen, *values):
        return compare_rows(world, item, chosen, values)

    gr.on([ml_btn.click, *[t.submit for t in ml_texts], *[t.submit for t in extra_texts]], do_many,
          [ml_instance, ml_methods, *ml_texts, *[x for pair in zip(extra_langs, extra_texts) for x in pair]], [ml_status, ml_plot, ml_table, ml_thumb],
          api_name="many_languages")
