"""Search tab: text -> image for any language (free text or a test caption, whose own image is then
marked with its rank per method) and image -> text (a gallery image or an uploaded picture, closest
captions in every language per method). Ranks use the library's tie rule (stable descending sort,
ties broken by gallery index), so a test caption's rank here is its rank in the evaluation."""
from __future__ import annotations

from types import SimpleNamespace

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ccr_core.dashboard.captions import caption_by_id, caption_choices, caption_label, find_captions  # noqa: F401  (the tab's picker)
from ccr_core.dashboard.colours import main_models, method_colour
from ccr_core.dashboard.detect import has_letters
from ccr_core.dashboard.glossary import TERMS, model_tooltip
from ccr_core.dashboard.world import MAX_QUERY_CHARS, InputError, ModelEntry, World, language_name
from ccr_core.data.bundle import Caption
from ccr_core.index import rank_in_scores, top_k_of_scores

MAX_K = 50
NO_LETTERS_NOTE = ("This query has no letters (only emoji, digits or symbols), so it has no language: the detected language is a "
                   "guess and the results may mean little. Add a word, or choose the language yourself.")
UNCERTAINTY_TOP_K = 10  # candidates UML's query uncertainty looks at


def markdown_escape(text: str) -> str:
    """User text shown inside Markdown: its formatting characters escaped, line breaks as spaces."""
    text = " ".join(text.split())
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~" else ch for ch in text)


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
    return rank_in_scores(scores, target)


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
    model: str  # the model's display label ("<name> (trained here)" for a session's own model)
    hits: list[Hit]
    target_rank: int | None = None
    uncertainty: float | None = None
    name: str = ""  # the model's name in the world's registry

    @property
    def title(self) -> str:
        parts = [self.model]
        if self.target_rank is not None:
            parts.append(f"ground truth at rank {self.target_rank}")
        if self.uncertainty is not None:
            parts.append(f"uncertainty {self.uncertainty:.2f}")
        return " · ".join(parts)

    def gallery(self, describe=None) -> list[tuple[str, str]]:
        """(thumbnail path, card text) pairs for a gallery component. The card text (shown below the whole
        picture, never over it) is the rank and score -- the top hit's score, then each hit's difference from
        it, so saturated scores (0.997, 0.997, ...) can still be told apart -- then ``describe(item)``'s lines
        (the picture's captions: its English one first; the rest show on hover). The ground truth's
        thumbnail has a drawn border and its card starts with the mark."""
        top = self.hits[0].score if self.hits else 0.0
        cards = []
        for h in self.hits:
            head = ("✓ ground truth · " if h.is_target else "") + f"#{h.rank} · " + (f"{h.score:.3f}" if h.rank == 1 else score_gap(h.score - top))
            cards.append((str(h.thumb), "\n".join([head, *(describe(h.item_id) if describe else [])])))
        return cards


def score_gap(diff: float) -> str:
    """A score's difference from the top score, with as many decimals as it takes to not read 0 ("−0.004",
    "−0.00031"); a tie with the top is "±0"."""
    if diff == 0:
        return "±0"
    decimals = 3 if abs(diff) >= 0.001 else min(6, 1 - int(np.floor(np.log10(abs(diff)))))  # two significant digits below 0.001
    return f"{diff:+.{decimals}f}".replace("-", "−")


def card_lines(world: World, item_id: str, max_chars: int = 160) -> list[str]:
    """What a result card says about a test image: its English caption first (else its first caption), then
    one caption in each other language, "de: ...". No file id: on real photos ids mean nothing to a reader."""
    memo = world.memo.setdefault("card_lines", {})
    if item_id not in memo:
        by_lang: dict[str, str] = {}
        for i in world.captions_of_item.get(item_id, []):
            c = world.captions[i]
            if c.lang not in by_lang and not c.source.startswith("mt:"):
                by_lang[c.lang] = c.text
        for i in world.captions_of_item.get(item_id, []):  # a language with machine translations only
            by_lang.setdefault(world.captions[i].lang, world.captions[i].text)
        first = "en" if "en" in by_lang else next(iter(by_lang), None)
        cut = lambda t: " ".join(t.split())[:max_chars] + ("…" if len(t) > max_chars else "")  # noqa: E731
        lines = [cut(by_lang[first])] if first else []
        lines += [f"{lang}: {cut(text)}" for lang, text in by_lang.items() if lang != first]
        memo[item_id] = lines
    return memo[item_id]


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
        shown = self.query if len(self.query) <= 80 else self.query[:80] + "…"
        lines = [f"**Query** “{markdown_escape(shown)}” in {lang}, {len(self.methods)} method(s), {self.seconds * 1000:.0f} ms."]
        if self.caption:
            lines.append(f"This is test caption `{self.caption.id}` of image `{self.caption.item}`: its image is framed in yellow (✓ ground truth); "
                         "ranks are over all " + "test images.")
        lines += [f"⚠ **{n}**" if n == NO_LETTERS_NOTE else f"_Note: {n}_" for n in self.notes]
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
                k: int = 8, caption_id: str | None = None, session: str | None = None) -> SearchResult:
    """Top-``k`` test images per chosen method for a query; marks the own image of a test caption.
    ``session``: its private (not yet published) Experiment models can be chosen too."""
    start = time.perf_counter()
    text, notes = clean_query(query)
    k = check_k(k)
    models = world.select_models(methods, session)
    caption, more = find_caption(world, text, caption_id)
    notes += more
    if caption is not None:
        lang, guessed = caption.lang, False
        row = world.caption_pos[caption.id]
        if all(m.captions is not None for m in models):
            query_emb = {m.name: m.caption_emb[row : row + 1] for m in models}
        else:  # the test captions are still being encoded in the background: encode this one now
            query_emb, trunc = world.encode_texts([caption.text], lang, models)
            notes += trunc
    else:
        lang, guessed = world.resolve_language(lang, text)
        if guessed and not has_letters(text):
            notes.append(NO_LETTERS_NOTE)
        query_emb, trunc = world.encode_texts([text], lang, models)
        notes += trunc
    target = world.gallery_pos[caption.item] if caption is not None else None
    out = [_method_hits(world, m, query_emb[m.name], k, target) for m in models]
    return SearchResult(text, lang, guessed, caption, out, notes, time.perf_counter() - start)


def _method_hits(world: World, m: ModelEntry, query_emb: np.ndarray, k: int, target: int | None) -> MethodHits:
    """One method's column: its scores of the gallery are computed once, and the top ``k`` and the
    target's rank are both read from them (the exact index's tie rule: by score, ties by gallery row)."""
    scores = (query_emb @ m.image_emb.T)[0]  # (1, E) @ (E, N) -> (N,)
    _, rows = top_k_of_scores(scores, k)  # (1, k)
    order = [int(j) for j in rows[0]]
    hits = [Hit(world.gallery[j].id, r + 1, float(scores[j]), world.truth_thumbnail(world.gallery[j].id) if j == target else world.thumbs[world.gallery[j].id],
                j == target) for r, j in enumerate(order)]
    result = MethodHits(m.label, hits, name=m.name)
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
# the tab (Gradio layout and wiring; gradio is imported here only)

MAX_SLOTS = 12  # result columns (shipped models + room for published runs)
CARDS_PER_ROW = 5  # result columns side by side (the 5 main methods in one row at 1024 px)
SUMMARY_COLUMNS = ["method", "ground-truth rank", "top-1 image", "top-1 score", "UML uncertainty"]
I2T_COLUMNS = ["method", "language", "rank", "score", "caption", "own caption", "source", "image"]
HINT = ("**New here?** Describe a picture in any language and press **Enter**, or click an example. Each column is one method's "
        "closest test images, best first; a test caption's own image is framed in yellow (✓ ground truth).")


def language_choices(world: World) -> list[tuple[str, str]]:
    """The Language menu: auto-detect, the world's languages, then every other one the text encoder knows."""
    return [("auto-detect", "auto")] + [(f"{language_name(l)} ({l})", l) for l in world.query_languages]


def slot_title(world: World, m: MethodHits) -> str:
    """A result column's heading: the method's colour swatch (the same in every chart) and the column's facts."""
    entry = world.registry.find(m.name)
    colour = method_colour(entry.method, entry.noise) if entry else "#000"
    tip = model_tooltip(entry) if entry else ""
    if m.uncertainty is not None:
        tip += " " + html.escape(TERMS["uncertainty"], quote=True)
    return f'<span style="color:{colour}">■</span> <span title="{tip}">**{m.title}**</span>'


def build_tab(world: World, page) -> None:
    """The Search tab: text -> image galleries per method (first thing under the query), then image -> text."""
    ui = _layout(world)
    _wire_text_search(world, page, ui)
    _wire_image_to_text(world, page, ui)


def _layout(world: World) -> SimpleNamespace:
    """The tab's components, in page order."""
    import gradio as gr

    from ccr_core.dashboard.ui import SEARCH_CHOICES

    names = world.model_names()
    main_names = [m.name for m in main_models(world.model_list())] or names[:5]
    slots = min(MAX_SLOTS, len(names) + 3)
    world_langs = [(f"{language_name(l)} ({l})", l) for l in world.languages]

    with gr.Tab("Search", id="search"):
        with gr.Row(equal_height=True):
            query = gr.Textbox(label="Query (any language)", placeholder="Describe a picture… (Enter searches, Shift+Enter adds a line)",
                               lines=1, max_lines=6, elem_id="query", scale=5)
            # The ~90 languages arrive at page load (ui.Page.lazy): the page config stays small.
            # (allow_custom_value: an API client loads no page, so it may name any code; resolve_language checks it)
            lang = gr.Dropdown(language_choices(world)[: 1 + len(world.languages)], value="auto", label="Language", scale=2, elem_id="lang",
                               allow_custom_value=True)
            k = gr.Number(value=8, precision=0, label=f"Results (1–{MAX_K})", scale=1, min_width=90, elem_id="k")
            search_btn = gr.Button("Search", variant="primary", elem_id="search-btn", scale=1, min_width=90)
        with gr.Row(equal_height=True):
            methods = gr.CheckboxGroup(main_names, value=main_names, label="Methods", elem_id="methods", scale=5,
                                       info="The 5 main methods. Variants behind the toggle: floor (the simplest model), -noise0.4 "
                                            "(trained with 40% of translations swapped), baseline-en (English only). Hover a result's "
                                            "heading for what its name means.")
            variants = gr.Checkbox(value=False, label="Show variants", elem_id="show-variants", scale=1, min_width=120)
        with gr.Row(elem_id="examples"):
            example_buttons = [(gr.Button(f"{text[:30]}{'…' if len(text) > 30 else ''} ({code})", size="sm", elem_classes="ccr-example", min_width=60),
                                text, code) for text, code in world.example_queries(per_lang=1)]
        status = gr.Markdown(HINT, elem_id="search-status")
        galleries, titles = [], []
        for row_start in range(0, slots, CARDS_PER_ROW):  # five methods side by side at 1024 px
            with gr.Row(equal_height=False):
                for i in range(row_start, min(slots, row_start + CARDS_PER_ROW)):
                    with gr.Column(min_width=150):
                        titles.append(gr.Markdown(visible=False, elem_id=f"gallery-title-{i}", elem_classes="ccr-gallery-title"))
                        galleries.append(gr.Gallery(show_label=False, visible=False, columns=2, height=520, object_fit="contain",
                                                    allow_preview=False, elem_classes="ccr-gallery", elem_id=f"gallery-{i}"))
        with gr.Accordion("Per-method table (ground-truth rank, top-1, UML uncertainty)", open=False):
            summary = gr.Dataframe(value=_empty(SUMMARY_COLUMNS), headers=SUMMARY_COLUMNS, interactive=False, elem_id="search-summary")
        with gr.Accordion("…or pick a test caption (its own image is then framed ✓ with its rank per method)", open=False):
            with gr.Row():
                browse_lang = gr.Dropdown([("all languages", "all")] + world_langs, value="all", label="Captions in", scale=1)
                caption_find = gr.Textbox(value="", label="Find a test caption (words or an id; the list follows as you type)", lines=1,
                                          max_lines=1, elem_id="caption-find", scale=2)
            caption = gr.Dropdown([], value=None, label=f"Test caption ({SEARCH_CHOICES} matches at a time)",
                                  filterable=True, allow_custom_value=True, elem_id="caption-pick")

        # The caption search for scripts and tests (a key_up event carries the typed text only from a browser).
        def find_test_captions(text: str, language: str = "all") -> list:
            """Up to 50 (label, caption id) pairs of test captions whose text or id contains every word of ``text``."""
            return [list(c) for c in find_captions(world, text, language)]

        gr.api(find_test_captions, api_name="find_captions")
        caption_id = gr.State(None)
        slot_items = gr.State([[] for _ in range(slots)])
        gr.Markdown("### Image → text\nClick any result above, or upload a picture: the closest captions in every language, per method.")
        with gr.Row():
            with gr.Column(scale=1):
                # A File, not an Image: our own check answers an unreadable upload with a clear message.
                i2t_image = gr.File(type="filepath", label="Upload a picture (JPEG, PNG, WebP, GIF)", height=120, elem_id="i2t-upload")
                i2t_item = gr.Textbox(value="", label="…or a test image id (clicking a result fills it; Enter looks it up)", elem_id="i2t-item")
                i2t_k = gr.Number(value=1, precision=0, label="Captions per language (1–20)")
                i2t_btn = gr.Button("Closest captions", elem_id="i2t-btn")
                open_instance = gr.Button("Open in the Instance tab ▸", size="sm", elem_id="search-open-instance")
            with gr.Column(scale=3):
                with gr.Row():
                    i2t_preview = gr.Image(label="Query picture", interactive=False, height=160, scale=1, buttons=[], elem_id="i2t-preview")
                    i2t_status = gr.Markdown("", elem_id="i2t-status")
                i2t_table = gr.Dataframe(value=_empty(I2T_COLUMNS), headers=I2T_COLUMNS, interactive=False, wrap=True, elem_id="i2t-table")
                waiting = gr.Timer(3.0, active=False)  # inside the tab: a Tabs child must be a Tab
    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("gr", "world", "SEARCH_CHOICES")})


def _wire_text_search(world: World, page, ui: SimpleNamespace) -> None:
    """Text -> image: the query box, the examples, the test-caption picker; results into the galleries."""
    import gradio as gr

    from ccr_core.dashboard.ui import SEARCH_CHOICES, guarded, session_of, takes_request

    main_names, slots, query, lang, k, search_btn = ui.main_names, ui.slots, ui.query, ui.lang, ui.k, ui.search_btn
    methods, variants, example_buttons, status, galleries, titles = ui.methods, ui.variants, ui.example_buttons, ui.status, ui.galleries, ui.titles
    summary, browse_lang, caption_find, caption, caption_id, slot_items = ui.summary, ui.browse_lang, ui.caption_find, ui.caption, ui.caption_id, ui.slot_items
    page.hide_variants(methods, variants, main_names)
    page.lazy(lang, lambda: gr.update(choices=language_choices(world)))
    page.lazy(caption, lambda: gr.update(choices=caption_choices(world, "all")))
    search_outputs = [status, summary, slot_items, *galleries, *titles]

    def gallery_updates(result):
        shown = result.methods[:slots]
        gals = [gr.update(visible=i < len(shown), value=shown[i].gallery(lambda item: card_lines(world, item)) if i < len(shown) else None)
                for i in range(slots)]
        heads = [gr.update(visible=i < len(shown), value=slot_title(world, shown[i]) if i < len(shown) else "") for i in range(slots)]
        return gals + heads

    # Any input error clears the previous query's results: old pictures never stand under a new query.
    cleared = {1: _empty(SUMMARY_COLUMNS), 2: [[] for _ in range(slots)],
               **{3 + i: gr.update(visible=False, value=None) for i in range(2 * slots)}}

    @takes_request
    @guarded(len(search_outputs), on_error=cleared)
    def do_search(q, language, chosen, top_k, cap_id, request=None):
        result = text_search(world, q, language, chosen, top_k, cap_id, session_of(request) or None)
        items = [[h.item_id for h in m.hits] for m in result.methods[:slots]]
        return (result.status(), result.summary_table(), items + [[] for _ in range(slots - len(items))], *gallery_updates(result))

    gr.on([search_btn.click, query.submit], do_search, [query, lang, methods, k, caption_id], search_outputs, api_name="search")
    page.components["search"] = {"query": query, "lang": lang, "methods": methods, "k": k, "outputs": search_outputs, "run": do_search,
                                  "default_models": main_names}  # the URL's view is restored through these (urlstate)

    def typed(cap_id):
        """Typing over a picked test caption makes the query free text again, in a language to detect anew."""
        return ("auto", None) if cap_id else (gr.skip(), gr.skip())

    query.input(typed, caption_id, [lang, caption_id], queue=False, show_progress="hidden", api_visibility="private")
    for button, text, code in example_buttons:
        button.click(lambda t=text, c=code: (t, c, None), None, [query, lang, caption_id], queue=False, api_visibility="private").then(
            do_search, [query, lang, methods, k, caption_id], search_outputs, api_visibility="private")


    @takes_request
    @guarded(3 + len(search_outputs), status_at=3)
    def pick_caption(cap_id, chosen, top_k, request=None):
        cap = caption_by_id(world, cap_id)
        return (cap.text, cap.lang, cap.id, *do_search(cap.text, cap.lang, chosen, top_k, cap.id, request))

    caption.input(pick_caption, [caption, methods, k], [query, lang, caption_id, *search_outputs], api_name="pick_caption")
    browse_lang.change(lambda language, text: show_matches(text, language), [browse_lang, caption_find], caption, api_name="caption_list")

    # Server-side search: the page holds one page of matches, never the world's thousands of captions.
    # (A separate box, not the dropdown's own typing: changing a dropdown's choices while it is being
    # typed in stops Gradio 6 from taking a mouse click on an option.)
    def show_matches(text, language):
        return gr.update(choices=find_captions(world, text, language, SEARCH_CHOICES), value=None)

    gr.on([caption_find.change, caption_find.submit], show_matches, [caption_find, browse_lang], caption,
          trigger_mode="always_last", show_progress="hidden", api_visibility="private")
    ui.search_outputs, ui.do_search = search_outputs, do_search


def _wire_image_to_text(world: World, page, ui: SimpleNamespace) -> None:
    """Image -> text: a clicked result, an upload or an id; the panel fills once the test captions are encoded."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded, selected, takes_event

    main_names, methods, galleries, slot_items = ui.main_names, ui.methods, ui.galleries, ui.slot_items
    i2t_status, i2t_preview, i2t_table, i2t_item, i2t_image = ui.i2t_status, ui.i2t_preview, ui.i2t_table, ui.i2t_item, ui.i2t_image
    i2t_k, i2t_btn, waiting, open_instance = ui.i2t_k, ui.i2t_btn, ui.waiting, ui.open_instance

    i2t_outputs = [i2t_status, i2t_preview, i2t_table]

    # A failed lookup clears the picture and the table: old results never stand under a new error.
    @guarded(len(i2t_outputs), on_error={1: None, 2: _empty(I2T_COLUMNS)})
    def do_image_to_text(item, image, chosen, top_k):
        result = image_to_text(world, item, image, chosen, top_k)
        return result.status(), result.thumb, result.table()

    gr.on([i2t_btn.click, i2t_image.upload, i2t_item.submit], do_image_to_text, [i2t_item, i2t_image, methods, i2t_k], i2t_outputs, api_name="image_to_text")

    # The panel opens on the first test image once the test captions are encoded; until then it shows
    # the background work's live status and polls. Filled at each page load, never at build time.
    def poll_captions(chosen, top_k, item):
        done = fill_when_captions_ready(world, chosen or main_names, top_k, item)
        if done is None:
            return (f"⏳ {world.captions_status}", gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=True))
        return (*done, gr.Timer(active=False))

    waiting.tick(poll_captions, [methods, i2t_k, i2t_item], [i2t_status, i2t_item, i2t_preview, i2t_table, waiting], api_visibility="private")
    page.on_load(lambda: poll_captions(main_names, 1, None), [i2t_status, i2t_item, i2t_preview, i2t_table, waiting])

    def make_pick(slot):
        @takes_event
        @guarded(2 + len(i2t_outputs), status_at=2)
        def pick_result(items, chosen, top_k, evt=None):
            index = selected(evt, "index")
            item = items[slot][index[0] if isinstance(index, (list, tuple)) else index]
            return (item, None, *do_image_to_text(item, None, chosen, top_k))

        return pick_result

    for i, gal in enumerate(galleries):
        gal.select(make_pick(i), [slot_items, methods, i2t_k], [i2t_item, i2t_image, *i2t_outputs], api_name=f"pick_result_{i}")
    page.link_instance(open_instance.click, [i2t_item], lambda item, evt=None: item, api_name="search_open_instance")


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=columns)


def fill_when_captions_ready(world: World, chosen, top_k, item: str | None = None) -> tuple | None:
    """(status, item id, thumbnail, table) of the panel's image (the one the user picked meanwhile, else the
    first test image) once the test captions are encoded, or None while they are not (the image -> text
    panel's poll on a fresh workspace)."""
    if world.caption_work.active:
        return None
    item = item if item in world.gallery_pos else world.gallery[0].id
    try:
        result = image_to_text(world, item, None, chosen or world.model_names(), top_k or 1)
    except InputError as exc:
        return str(exc), item, None, _empty(I2T_COLUMNS)
    return result.status(), item, result.thumb, result.table()
