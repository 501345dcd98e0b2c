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

from ccr_core.dashboard.search import clean_query, rank_of, stable_order
from ccr_core.dashboard.world import NATIVE_SOURCES, InputError, World, language_name
from ccr_core.eval import metrics

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC", "#EECA3B")


def instance_choices(world: World, limit: int = 2000) -> list[tuple[str, str]]:
    """(label, item id) of test images captioned in at least two languages."""
    out = []
    for item in world.gallery:
        langs = {world.captions[i].lang for i in world.captions_of_item[item.id]}
        if len(langs) >= 2:
            first = next((world.captions[i].text for i in world.captions_of_item[item.id] if world.captions[i].lang == "en"), None)
            first = first or world.captions[world.captions_of_item[item.id][0]].text
            out.append((f"{item.id} · {first[:70]}", item.id))
            if len(out) >= limit:
                break
    return out


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
        lines = [f"**{len(self.texts)} languages** ({langs}), {self.seconds * 1000:.0f} ms. {head}"]
        best = [m for m in self.methods if m.spread is not None]
        if best:
            winner = min(best, key=lambda m: m.spread)
            lines.append(f"Most consistent here: **{winner.model}** (spread {winner.spread:.2f}; 0 = every language puts the image at the same rank).")
        lines += [f"_Note: {n}_" for n in self.notes]
        return "\n\n".join(lines)

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
        for i, m in enumerate(self.methods):
            colour = PALETTE[i % len(PALETTE)]
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
        fig.update_layout(height=440, margin=dict(l=60, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.15), template="plotly_white")
        return fig


def many_languages(world: World, texts: dict[str, str | None], instance: str | None = None,
                   methods: Sequence[str] | None = None) -> ManyLanguagesResult:
    """Ranks of the intended image for each filled language, per method, and their spread."""
    start = time.perf_counter()
    models = world.select_models(methods)
    filled: dict[str, str] = {}
    notes: list[str] = []
    for lang in world.languages:
        raw = (texts.get(lang) or "").strip()
        if raw:
            filled[lang], more = clean_query(raw)
            notes += [f"{lang}: {n}" for n in more]
    unknown = [l for l, t in texts.items() if (t or "").strip() and l not in world.languages]
    if unknown:
        notes.append(f"Ignored languages not in this world: {', '.join(unknown)}.")
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
        out.append(MethodSpread(m.label, world.gallery[target].id, ranks, top1))
    return ManyLanguagesResult(filled, instance, out, sorted(set(notes), key=notes.index), time.perf_counter() - start)
