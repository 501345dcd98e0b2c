"""Instance view (as FiftyOne's sample view): one instance across every language and model. The picture,
large and whole; every caption of it (native and machine-translated, each translation beside its English
source with its noise label); a model x language table of where the instance's caption in that language
ranks its picture (text -> image), with the score, the top 5 retrieved instead and UML's query
uncertainty; and where the picture ranks its own captions (image -> text).

A test instance uses the world's embeddings (the same rows the Search and Consistency tabs use, the
library's tie rule), so its ranks are the evaluation's over the whole test gallery. Any other item (an
audited training pair) is encoded on the spot and ranked among the test gallery plus itself."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ccr_core.dashboard.colours import main_models
from ccr_core.dashboard.consistency import _mrv_captions
from ccr_core.dashboard.search import UNCERTAINTY_TOP_K, rank_of, stable_order
from ccr_core.dashboard.world import NATIVE_SOURCES, InputError, ModelEntry, World, language_name, safe_name
from ccr_core.data.bundle import Caption

TOP = 5  # pictures "retrieved instead" per model and language
LARGE_SIZE = 640  # longest side of the large picture, pixels
CAPTION_COLUMNS = ["language", "caption", "source", "translated from", "noise label", "caption id"]
TABLE_COLUMNS = ["model", "language", "rank", "score", "top-5 retrieved", "UML uncertainty", "image→text rank"]


@dataclass
class Cell:
    """One model x language: the instance's query caption, its rank and what came first."""

    model: str
    lang: str
    caption: Caption
    rank: int  # of the instance's picture, 1 = first
    score: float  # the picture's score for this caption
    top: list[tuple[str, float]]  # (item id, score) of the first TOP pictures
    uncertainty: float | None = None
    i2t_rank: int | None = None  # where the picture ranks its own captions in this language (best one)


@dataclass
class InstanceView:
    item_id: str
    in_gallery: bool
    gallery_size: int  # pictures ranked (the test gallery, plus the instance itself when it is not a test image)
    captions: pd.DataFrame
    cells: list[Cell] = field(default_factory=list)
    focus: str | None = None  # a caption id to mark (the audited pair's)

    def status(self) -> str:
        where = (f"test image · ranks among the {self.gallery_size:,} test images" if self.in_gallery else
                 f"not a test image (a training or validation item): encoded now and ranked among the {self.gallery_size - 1:,} "
                 "test images plus itself")
        return f"**Instance `{self.item_id}`** — {where}."

    def table(self) -> pd.DataFrame:
        rows = [{"model": c.model, "language": c.lang, "rank": c.rank, "score": round(c.score, 4),
                 "top-5 retrieved": " ".join(i for i, _ in c.top),
                 "UML uncertainty": "" if c.uncertainty is None else round(c.uncertainty, 3),
                 "image→text rank": "" if c.i2t_rank is None else c.i2t_rank} for c in self.cells]
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)


# --------------------------------------------------------------------------------------------------
# the parts


def _bundle_captions(world: World) -> dict[str, list[Caption]]:
    memo = world.memo.get("bundle_captions_of_item")
    if memo is None:
        memo = {}
        for c in world.bundle.captions:
            memo.setdefault(c.item, []).append(c)
        world.memo["bundle_captions_of_item"] = memo
    return memo


def _known(world: World, item_id: str | None) -> str:
    item_id = (item_id or "").strip()
    if not item_id:
        raise InputError("Choose an instance first (click a search result, a map point, a heatmap, an audited pair or a finder row).")
    if item_id not in world.gallery_pos and item_id not in _bundle_captions(world):
        raise InputError(f"{item_id!r} is not an item of this world.")
    return item_id


def caption_table(world: World, item_id: str) -> pd.DataFrame:
    """Every caption of the item: language, text, source, the English caption a translation was made from
    and the translation's noise label (the bundle's; empty where it has none)."""
    item_id = _known(world, item_id)
    by_id = {c.id: c for c in world.bundle.captions} if "caption_by_id" not in world.memo else world.memo["caption_by_id"]
    world.memo["caption_by_id"] = by_id
    caps = sorted(_bundle_captions(world).get(item_id, []), key=lambda c: (c.source.startswith("back-translation"),
                                                                          c.source not in NATIVE_SOURCES, c.lang != "en", c.lang))
    rows = []
    for c in caps:
        source = by_id.get(c.ref) if c.ref else None
        rows.append({"language": f"{language_name(c.lang)} ({c.lang})", "caption": c.text, "source": c.source,
                     "translated from": source.text if source is not None else "",
                     "noise label": world.bundle.noise.get(c.id, ""), "caption id": c.id})
    return pd.DataFrame(rows, columns=CAPTION_COLUMNS)


def query_captions(world: World, item_id: str, langs: Sequence[str], focus: str | None = None) -> dict[str, Caption]:
    """lang -> the caption that stands for the instance in that language: for a test image the one the
    MRV tables use (the evaluation's native query group), else its first native caption, else a translation
    (``focus``, an audited pair's caption, wins in its language)."""
    out: dict[str, Caption] = {}
    if item_id in world.gallery_pos:
        mrv = _mrv_captions(world) if world.memo.get("_mrv_rows") is None else world.memo["_mrv_rows"]
        world.memo["_mrv_rows"] = mrv
        for lang in langs:
            rows = [i for i in world.captions_of_item[item_id] if world.captions[i].lang == lang]
            preferred = [i for i in rows if i in set(mrv.get(lang, []))]
            if preferred or rows:
                out[lang] = world.captions[(preferred or rows)[0]]
        return out
    caps = _bundle_captions(world).get(item_id, [])
    for lang in langs:
        mine = [c for c in caps if c.lang == lang and not c.source.startswith("back-translation")]
        mine.sort(key=lambda c: (c.id != focus, c.source not in NATIVE_SOURCES))
        if mine:
            out[lang] = mine[0]
    return out


def large_picture(world: World, item_id: str) -> Path:
    """The item's picture, whole, at most ``LARGE_SIZE`` px on its longest side (in the served thumbnail folder)."""
    from PIL import Image

    from ccr_core.backbones.vision import load_rgb

    out = world.thumb_dir / "large" / f"{safe_name(item_id)}.jpg"
    if out.exists():
        return out
    src = world.bundle.image_path(item_id)
    if src.is_dir() or src.suffix == ".npy":
        return world.thumbnail(item_id)  # a video: its thumbnail (first frame)
    try:
        image = load_rgb(src)
    except Exception:  # noqa: BLE001 -- an unreadable picture: its placeholder thumbnail
        return world.thumbnail(item_id)
    image.thumbnail((LARGE_SIZE, LARGE_SIZE), Image.Resampling.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.jpg")
    image.convert("RGB").save(tmp, "JPEG", quality=88)
    tmp.replace(out)
    return out


def _vectors(world: World, item_id: str, model: ModelEntry, queries: dict[str, Caption]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The instance's image vector (E,) and each language's query vector (E,) for one model."""
    if item_id in world.gallery_pos:
        image = model.image_emb[world.gallery_pos[item_id]]
        emb = model.caption_emb
        return image, {lang: emb[world.caption_pos[c.id]] for lang, c in queries.items()}
    image = world.encode_image_file(world.bundle.image_path(item_id), [model])[model.name]
    texts = {}
    for lang, c in queries.items():
        encoded, _ = world.encode_texts([c.text], lang, [model])
        texts[lang] = encoded[model.name][0]
    return np.asarray(image, dtype=np.float32), texts


def _image_to_text_rank(world: World, model: ModelEntry, item_id: str, image: np.ndarray, lang: str, own: np.ndarray | None) -> int | None:
    """Rank of the picture's best own caption among the test captions of ``lang`` (plus ``own``, the
    instance's caption vector, when it is not a test image)."""
    rows = world.memo.setdefault("caption_rows_by_lang", {}).get(lang)
    if rows is None:
        rows = np.array([i for i, c in enumerate(world.captions) if c.lang == lang], dtype=np.int64)
        world.memo["caption_rows_by_lang"][lang] = rows
    scores = model.caption_emb[rows] @ image  # (M_lang,)
    if item_id in world.gallery_pos:
        mine = np.array([world.captions[i].item == item_id for i in rows])
    else:
        if own is None:
            return None
        scores = np.append(scores, float(own @ image))
        mine = np.append(np.zeros(len(rows), dtype=bool), True)
    if not mine.any():
        return None
    order = stable_order(scores)
    return int(np.flatnonzero(mine[order])[0]) + 1


def instance_view(world: World, item_id: str | None, models: Sequence[str] | None = None, langs: Sequence[str] | None = None,
                  focus: str | None = None, top: int = TOP) -> InstanceView:
    """Everything the Instance tab shows about one item (a test image, or any item of the bundle)."""
    item_id = _known(world, item_id)
    chosen = world.select_models(models or [m.name for m in main_models(world.model_list())] or world.model_names())
    langs = [l for l in (langs or world.languages) if l in world.languages]
    queries = query_captions(world, item_id, langs, focus)
    in_gallery = item_id in world.gallery_pos
    view = InstanceView(item_id, in_gallery, len(world.gallery) + (0 if in_gallery else 1), caption_table(world, item_id), focus=focus)
    for m in chosen:
        image, texts = _vectors(world, item_id, m, queries)
        gallery = m.image_emb if in_gallery else np.vstack([m.image_emb, image[None, :]])  # (N[+1], E)
        target = world.gallery_pos[item_id] if in_gallery else len(world.gallery)
        for lang, cap in queries.items():
            scores = gallery @ texts[lang]  # (N[+1],)
            order = stable_order(scores)[:top]
            first = [(world.gallery[j].id if j < len(world.gallery) else item_id, float(scores[j])) for j in order]
            cell = Cell(m.label, lang, cap, rank_of(scores, target), float(scores[target]), first)
            if m.has_uncertainty and hasattr(m.trained.method, "query_uncertainty"):
                with torch.no_grad():
                    u = m.trained.method.query_uncertainty(torch.from_numpy(np.ascontiguousarray(texts[lang][None, :], dtype=np.float32)),
                                                           torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32)), UNCERTAINTY_TOP_K)
                cell.uncertainty = float(u.reshape(-1)[0])
            cell.i2t_rank = _image_to_text_rank(world, m, item_id, image, lang, None if in_gallery else texts[lang])
            view.cells.append(cell)
    return view


# --------------------------------------------------------------------------------------------------
# rendering (an HTML table: one row per model x language, the top 5 as small thumbnails with captions)


def _first_caption(world: World, item_id: str) -> str:
    caps = _bundle_captions(world).get(item_id, [])
    en = [c for c in caps if c.lang == "en" and c.source in NATIVE_SOURCES]
    pick = (en or [c for c in caps if c.source in NATIVE_SOURCES] or caps or [None])[0]
    return pick.text if pick is not None else ""


def ranks_html(world: World, view: InstanceView, thumb_url) -> str:
    """The model x language table as HTML: rank (good ranks green-ish, bad ones marked), score, the top 5
    retrieved instead (thumbnails, the instance's own framed, each with its caption) and UML's uncertainty."""
    esc = html.escape
    head = ("<tr><th>model</th><th>language</th><th>its caption</th><th>rank</th><th>score</th>"
            f"<th>top {TOP} retrieved instead</th><th>UML u</th><th>image→text rank</th></tr>")
    body = []
    for c in view.cells:
        tiles = []
        for item, score in c.top:
            own = item == view.item_id
            cap = _first_caption(world, item)
            frame = "3px solid #E69F00" if own else "1px solid #bbb"
            tiles.append(f'<figure class="ccr-inst-tile" title="{esc(item)} · {score:.3f}: {esc(cap)}" data-item="{esc(item)}">'
                         f'<img src="{esc(thumb_url(item))}" alt="{esc(item)}" style="border:{frame}">'
                         f'<figcaption>{"✓ " if own else ""}{esc(cap[:48])}{"…" if len(cap) > 48 else ""}</figcaption></figure>')
        u = "" if c.uncertainty is None else f"{c.uncertainty:.3f}"
        i2t = "" if c.i2t_rank is None else str(c.i2t_rank)
        body.append(f'<tr><td>{esc(c.model)}</td><td>{esc(c.lang)}</td><td class="ccr-inst-cap">{esc(c.caption.text)}</td>'
                    f'<td class="ccr-inst-rank">{c.rank}</td><td>{c.score:.3f}</td><td><div class="ccr-inst-tiles">{"".join(tiles)}</div></td>'
                    f"<td>{u}</td><td>{i2t}</td></tr>")
    return f'<table class="ccr-inst-table">{head}{"".join(body)}</table>'


INSTANCE_CSS = """
.ccr-inst-table {border-collapse: collapse; font-size: 0.85em; width: 100%}
.ccr-inst-table td, .ccr-inst-table th {border-bottom: 1px solid #ddd; padding: 3px 5px; vertical-align: top; text-align: left}
.ccr-inst-cap {max-width: 180px}
.ccr-inst-rank {font-weight: bold}
.ccr-inst-tiles {display: flex; gap: 4px; flex-wrap: nowrap}
.ccr-inst-tile {margin: 0; width: 72px}
.ccr-inst-tile img {width: 72px; height: 72px; object-fit: contain; background: #f4f4f4; display: block}
.ccr-inst-tile figcaption {font-size: 0.72em; line-height: 1.15; overflow-wrap: anywhere}
"""


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def build_tab(world: World, page) -> None:
    """The Instance tab; other tabs open it through ``page.link_instance`` (wired here, after them)."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded, takes_event

    names = world.model_names()
    main_names = [m.name for m in main_models(world.model_list())] or names[:5]
    urls = lambda item_id: f"gradio_api/file={world.thumbnail(item_id)}"  # noqa: E731 -- as projection.thumb_url
    with gr.Tab("Instance", id="instance"):
        with gr.Row(equal_height=True):
            item = gr.Textbox(value="", label="Instance (an image id; Enter opens it)", lines=1, max_lines=1, scale=2, elem_id="inst-id")
            models = gr.CheckboxGroup(names, value=main_names, label="Models", scale=5, elem_id="inst-models")
        status = gr.Markdown("Open an instance from Search, Maps, Consistency, Audit, Start here or the Finder, or type its id.",
                             elem_id="inst-status")
        with gr.Row():
            picture = gr.Image(label="The picture (whole)", interactive=False, height=380, scale=2, buttons=[], elem_id="inst-picture")
            # fixed shares: left to itself the table gave the ids' column the width and clipped the caption text
            captions = gr.Dataframe(headers=CAPTION_COLUMNS, interactive=False, wrap=True, label="Every caption of it", scale=3,
                                    elem_id="inst-captions", max_height=380, column_widths=["11%", "35%", "11%", "23%", "10%", "10%"])
        ranks = gr.HTML("", elem_id="inst-ranks")
        focus = gr.State(None)

    page.model_pickers.append(models)
    outputs = [status, picture, captions, ranks]

    def render(item_id, chosen, focus_caption=None):
        view = instance_view(world, item_id, chosen, None, focus_caption)
        return view.status(), str(large_picture(world, view.item_id)), view.captions, ranks_html(world, view, urls)

    @guarded(len(outputs))
    def show(item_id, chosen, focus_caption=None):
        return render(item_id, chosen, focus_caption)

    gr.on([item.submit, models.change], show, [item, models, focus], outputs, api_name="instance")
    tabs = page.components.get("tabs")

    def opener(item_of, n_inputs: int):
        def run(values, chosen, evt):
            found = item_of(*values, evt=evt)
            item_id, focus_caption = found if isinstance(found, tuple) else (found, None)
            return (gr.Tabs(selected="instance") if tabs is not None else gr.skip(), item_id, focus_caption,
                    *render(item_id, chosen, focus_caption))

        # Gradio finds the event parameter by its place in the signature, so each arity gets its own (no *args).
        if n_inputs == 0:
            def open_instance(chosen, evt=None):
                return run((), chosen, evt)
        elif n_inputs == 1:
            def open_instance(a, chosen, evt=None):
                return run((a,), chosen, evt)
        else:
            raise ValueError("an instance link takes at most one input")
        return takes_event(guarded(3 + len(outputs), status_at=3)(open_instance))

    for trigger, inputs, item_of, api_name in page.instance_links:
        trigger(opener(item_of, len(inputs)), [*inputs, models], [tabs if tabs is not None else status, item, focus, *outputs],
                api_name=api_name, api_visibility="private" if api_name is None else "public")
    page.components["instance"] = {"item": item, "models": models, "outputs": outputs, "render": render, "default_models": main_names}


def item_of_picture(world: World, value) -> str:
    """The item a shown picture is of, from a gallery's select value (its file name is the item's
    thumbnail name, ``thumbnails.safe_name``, perhaps with ``-truth``), for galleries that hold pictures only."""
    import re

    path = ""
    if isinstance(value, dict):
        image = value.get("image", value)
        path = (image.get("path") or image.get("url") or "") if isinstance(image, dict) else str(image or "")
    elif value:
        path = str(value)
    names = world.memo.get("item_of_safe_name")
    if names is None:
        names = {safe_name(it.id): it.id for it in world.bundle.items}
        world.memo["item_of_safe_name"] = names
    found = re.match(r"(.*-[0-9a-f]{8})(?:-truth)?$", Path(path.split("?")[0]).stem)
    if not found or found.group(1) not in names:
        raise InputError("This picture is not an item of this world.")
    return names[found.group(1)]
