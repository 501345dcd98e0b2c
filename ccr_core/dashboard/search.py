"""Search tab: text -> image for any language (free text or a test caption, whose own image is then
marked with its rank per method) and image -> text (a gallery image or an uploaded picture, closest
captions in every language per method). Ranks use the library's tie rule (stable descending sort,
ties broken by gallery index), so a test caption's rank here is its rank in the evaluation."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ccr_core.dashboard.world import MAX_QUERY_CHARS, InputError, ModelEntry, World, language_name
from ccr_core.data.bundle import Caption
from ccr_core.eval import metrics

MAX_K = 50
UNCERTAINTY_TOP_K = 10  # candidates UML's query uncertainty looks at


def clean_query(text: str | None) -> tuple[str, list[str]]:
    """The query stripped and cut to ``MAX_QUERY_CHARS``; empty is a user error."""
    text = (text or "").strip()
    if not text:
        raise InputError("Type a query first (it is empty).")
    notes = []
    if len(text) > MAX_QUERY_CHARS:
        notes.append(f"Very long query: only its first {MAX_QUERY_CHARS:,} of {len(text):,} characters were used.")
        text = text[:MAX_QUERY_CHARS]
    return text, notes


def check_k(k, low: int = 1, high: int = MAX_K) -> int:
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise InputError(f"The number of results must be a whole number between {low} and {high}.") from None
    if not low <= value <= high or value != float(k):
        raise InputError(f"The number of results must be between {low} and {high} (got {k}).")
    return value


def stable_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by ascending index (the metrics' tie rule)."""
    return np.argsort(-scores, kind="stable")


def rank_of(scores: np.ndarray, target: int) -> int:
    """1-based rank of ``target`` among ``scores`` under the metrics' tie rule."""
    return int(metrics.text_to_image_ranks(scores[None, :].astype(np.float32), np.array([target]))[0])


# --------------------------------------------------------------------------------------------------
# text -> image


@dataclass
class Hit:
    item_id: str
    rank: int
    score: float
    thumb: Path
    is_target: bool


@dataclass
class MethodHits:
    model: str
    hits: list[Hit]
    target_rank: int | None = None
    uncertainty: float | None = None

    @property
    def title(self) -> str:
        parts = [self.model]
        if self.target_rank is not None:
            parts.append(f"ground truth at rank {self.target_rank}")
        if self.uncertainty is not None:
            parts.append(f"uncertainty {self.uncertainty:.2f}")
        return " · ".join(parts)

    def gallery(self) -> list[tuple[str, str]]:
        """(thumbnail path, caption) pairs for a gallery component."""
        return [(str(h.thumb), f"#{h.rank} · {h.score:.3f} · {h.item_id}" + (" ✓ ground truth" if h.is_target else "")) for h in self.hits]


@dataclass
class SearchResult:
    query: str
    lang: str
    lang_guessed: bool
    caption: Caption | None  # the test caption the query is, if any
    methods: list[MethodHits]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def target_item(self) -> str | None:
        return self.caption.item if self.caption else None

    def status(self) -> str:
        lang = f"{language_name(self.lang)} ({self.lang}{', detected' if self.lang_guessed else ''})"
        lines = [f"**Query** in {lang}, {len(self.methods)} method(s), {self.seconds * 1000:.0f} ms."]
        if self.caption:
            lines.append(f"This is test caption `{self.caption.id}` of image `{self.caption.item}`: its image is marked ✓; "
                         "ranks are over all " + "test images.")
        lines += [f"_Note: {n}_" for n in self.notes]
        return "\n\n".join(lines)

    def summary_table(self) -> pd.DataFrame:
        rows = []
        for m in self.methods:
            top = m.hits[0] if m.hits else None
            rows.append({"method": m.model, "ground-truth rank": m.target_rank if m.target_rank is not None else "",
                         "top-1 image": top.item_id if top else "", "top-1 score": round(top.score, 4) if top else "",
                         "UML uncertainty": round(m.uncertainty, 3) if m.uncertainty is not None else ""})
        return pd.DataFrame(rows, columns=["method", "ground-truth rank", "top-1 image", "top-1 score", "UML uncertainty"])


def find_caption(world: World, query: str, caption_id: str | None) -> tuple[Caption | None, list[str]]:
    """The test caption a query is: the given id if the text still matches it, else an exact text match."""
    notes = []
    if caption_id:
        pos = world.caption_pos.get(caption_id)
        if pos is None:
            raise InputError(f"Unknown test caption {caption_id!r}.")
        cap = world.captions[pos]
        if cap.text.strip() == query:
            return cap, notes
        notes.append("The query was edited from the chosen caption, so it is searched as free text (no ground truth).")
        return None, notes
    matches = world.captions_by_text.get(query)
    if matches:
        cap = world.captions[matches[0]]
        if len({world.captions[i].item for i in matches}) > 1:
            notes.append(f"This text captions {len(matches)} test images; the ground truth shown is `{cap.item}`.")
        return cap, notes
    return None, notes


def text_search(world: World, query: str | None, lang: str | None = "auto", methods: Sequence[str] | None = None,
                k: int = 8, caption_id: str | None = None) -> SearchResult:
    """Top-``k`` test images per chosen method for a query; marks the own image of a test caption."""
    start = time.perf_counter()
    text, notes = clean_query(query)
    k = check_k(k)
    models = world.select_models(methods)
    caption, more = find_caption(world, text, caption_id)
    notes += more
    if caption is not None:
        lang, guessed = caption.lang, False
        row = world.caption_pos[caption.id]
        query_emb = {m.name: m.caption_emb[row : row + 1] for m in models}
    else:
        lang, guessed = world.resolve_language(lang, text)
        query_emb, trunc = world.encode_texts([text], lang, models)
        notes += trunc
    target = world.gallery_pos[caption.item] if caption is not None else None
    out = []
    for m in models:
        scores = (query_emb[m.name] @ m.image_emb.T)[0]  # (N,)
        out.append(_method_hits(world, m, scores, query_emb[m.name], k, target))
    return SearchResult(text, lang, guessed, caption, out, notes, time.perf_counter() - start)


def _method_hits(world: World, m: ModelEntry, scores: np.ndarray, query_emb: np.ndarray, k: int, target: int | None) -> MethodHits:
    order = stable_order(scores)[:k]
    hits = [Hit(world.gallery[j].id, r + 1, float(scores[j]), world.thumbs[world.gallery[j].id], j == target) for r, j in enumerate(order)]
    result = MethodHits(m.label, hits)
    if target is not None:
        result.target_rank = rank_of(scores, target)
    if m.has_uncertainty:
        with torch.no_grad():
            u = m.trained.method.query_uncertainty(torch.from_numpy(query_emb), torch.from_numpy(m.image_emb), UNCERTAINTY_TOP_K)
        result.uncertainty = float(u.reshape(-1)[0])
    return result


# --------------------------------------------------------------------------------------------------
# image -> text


@dataclass
class CaptionHit:
    model: str
    lang: str
    rank: int
    score: float
    text: str
    caption_id: str
    item_id: str
    source: str
    is_own: bool


@dataclass
class ImageSearchResult:
    item_id: str | None  # None for an uploaded picture
    thumb: str | None
    hits: list[CaptionHit]
    own_ranks: dict[str, dict[str, int]]  # model -> lang -> rank of the image's best own caption
    seconds: float = 0.0

    def status(self) -> str:
        what = f"test image `{self.item_id}`" if self.item_id else "your uploaded picture"
        lines = [f"**Closest captions** to {what}, per method and language ({self.seconds * 1000:.0f} ms)."]
        if self.own_ranks:
            lines.append("Rank of the image's own caption: " + "; ".join(
                f"**{m}**: " + ", ".join(f"{l} {r}" for l, r in ranks.items()) for m, ranks in self.own_ranks.items()))
        return "\n\n".join(lines)

    def table(self) -> pd.DataFrame:
        cols = ["method", "language", "rank", "score", "caption", "own caption", "source", "image"]
        return pd.DataFrame([{"method": h.model, "language": h.lang, "rank": h.rank, "score": round(h.score, 4), "caption": h.text,
                              "own caption": "✓" if h.is_own else "", "source": h.source, "image": h.item_id} for h in self.hits], columns=cols)


def image_to_text(world: World, item_id: str | None = None, image_path: str | Path | None = None,
                  methods: Sequence[str] | None = None, k: int = 3, langs: Sequence[str] | None = None) -> ImageSearchResult:
    """The ``k`` closest test captions in each language, per method, for a gallery image or a file."""
    start = time.perf_counter()
    k = check_k(k, 1, 20)
    models = world.select_models(methods)
    item_id = (item_id or "").strip() or None
    if image_path:
        query = world.encode_image_file(image_path, models)
        item_id, thumb = None, str(image_path)
    elif item_id:
        if item_id not in world.gallery_pos:
            raise InputError(f"{item_id!r} is not an image of the test gallery; pick a search result or upload a picture.")
        pos = world.gallery_pos[item_id]
        query = {m.name: m.image_emb[pos] for m in models}
        thumb = str(world.thumbs[item_id])
    else:
        raise InputError("Pick a search result or upload a picture first.")
    langs = [l for l in (langs or world.languages) if l in world.languages]
    rows_by_lang = {l: np.array([i for i, c in enumerate(world.captions) if c.lang == l]) for l in langs}
    hits, own_ranks = [], {}
    for m in models:
        scores_all = m.caption_emb @ query[m.name]  # (M,)
        for lang, rows in rows_by_lang.items():
            if rows.size == 0:
                continue
            scores = scores_all[rows]
            order = stable_order(scores)
            for r, j in enumerate(order[:k]):
                c = world.captions[rows[j]]
                hits.append(CaptionHit(m.label, lang, r + 1, float(scores[j]), c.text, c.id, c.item, c.source, c.item == item_id))
            if item_id is not None:
                own = [pos for pos, j in enumerate(order) if world.captions[rows[j]].item == item_id]
                if own:
                    own_ranks.setdefault(m.label, {})[lang] = own[0] + 1
    return ImageSearchResult(item_id, thumb, hits, own_ranks, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# caption browser


def caption_choices(world: World, lang: str | None = None, limit: int = 1000) -> list[tuple[str, str]]:
    """(label, caption id) of test captions in ``lang`` (all languages for None/"all"), for a dropdown."""
    out = []
    for c in world.test_captions_in(lang):
        out.append((f"[{c.lang}] {c.text}  ·  {c.item}", c.id))
        if len(out) >= limit:
            break
    return out


def caption_by_id(world: World, caption_id: str | None) -> Caption:
    pos = world.caption_pos.get(caption_id or "")
    if pos is None:
        raise InputError("Choose a test caption from the list.")
    return world.captions[pos]
