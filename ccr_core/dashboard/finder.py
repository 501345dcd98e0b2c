"""Instance finder: one row per test instance and language (the caption that stands for the instance in
that language, as in the Instance tab), with each model's text -> image rank over the whole test gallery,
the instance's rank spread σ across languages (what MRV averages, from ``consistency.rank_tables``),
UML's query uncertainty and the noise labels of the instance's captions. Filter by language, rank > k
for a model, disagreement between two models (rank <= a in A and > b in B), σ, noise label, uncertainty
and words of any caption; sort by any column; export exactly the filtered rows as CSV; a row opens the
Instance tab."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ccr_core import metrics
from ccr_core.dashboard.colours import main_models
from ccr_core.dashboard.consistency import rank_tables
from ccr_core.dashboard.instance import query_captions
from ccr_core.dashboard.search import UNCERTAINTY_TOP_K
from ccr_core.dashboard.world import InputError, World, uncertainty_models

ANY = "any"
MAX_SHOWN = 200  # rows the page shows; the CSV holds every filtered row
NONE_LABEL = "(none)"


def rank_column(model: str) -> str:
    return f"rank {model}"


def sigma_column(model: str) -> str:
    return f"σ {model}"


def instance_rows(world: World) -> list[tuple[str, str, int]]:
    """(item id, language, row of world.captions) for every test instance and language it has a caption in (memoised)."""
    memo = world.memo.get("finder_rows")
    if memo is None:
        memo = []
        for it in world.gallery:
            for lang, cap in query_captions(world, it.id, world.languages).items():
                memo.append((it.id, lang, world.caption_pos[cap.id]))
        world.memo["finder_rows"] = memo
    return memo


def _ranks(world: World, name: str, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    m = world.model(name)
    memo = world.memo.setdefault("finder_ranks", {})
    key = (m.name, m.checkpoint_hash)
    if key not in memo:
        sims = (m.caption_emb[rows] @ m.image_emb.T).astype(np.float32)  # (R, N)
        memo[key] = metrics.text_to_image_ranks(sims, targets)
    return memo[key]


def _sigma(world: World, name: str, items: list[str]) -> np.ndarray:
    try:
        t = rank_tables(world, world.model(name))
    except InputError:  # fewer than two languages: no spread
        return np.full(len(items), np.nan)
    sigma = dict(zip(t["items"], np.std(t["t2i"].astype(np.float64), axis=1)))
    return np.array([sigma.get(i, np.nan) for i in items])


def _uncertainty(world: World, name: str, rows: np.ndarray) -> np.ndarray:
    m = world.model(name)
    memo = world.memo.setdefault("finder_uncertainty", {})
    key = (m.name, m.checkpoint_hash)
    if key not in memo:
        with torch.no_grad():
            u = m.trained.method.query_uncertainty(torch.from_numpy(np.ascontiguousarray(m.caption_emb[rows], dtype=np.float32)),
                                                   torch.from_numpy(np.ascontiguousarray(m.image_emb, dtype=np.float32)), UNCERTAINTY_TOP_K)
        memo[key] = u.reshape(-1).numpy().astype(np.float64)
    return memo[key]


def noise_labels(world: World, item_id: str) -> str:
    """The noise labels of the item's captions other than clean (the bundle labels training captions only)."""
    from ccr_core.dashboard.instance import _bundle_captions

    labels = sorted({world.bundle.noise[c.id] for c in _bundle_captions(world).get(item_id, []) if world.bundle.noise.get(c.id, "clean") != "clean"})
    return ", ".join(labels)


def column_widths(columns: Sequence[str]) -> list[str]:
    """Pixel widths for the finder's columns: the caption wraps in the one wide column; the rank, σ and u columns keep
    room for a two-line header and a number, so at 1024 px they are readable and the table scrolls sideways instead
    of squeezing them to a letter per line."""
    fixed = {"image": 120, "language": 100, "caption": 280, "noise labels": 140}
    return [f"{fixed.get(c, 92)}px" for c in columns]


def instance_table(world: World, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Every test instance x language: image, language, caption, a rank and σ column per model, UML u, noise labels."""
    chosen = [m.name for m in world.select_models(models or [m.name for m in main_models(world.model_list())] or world.model_names())]
    found = instance_rows(world)
    if not found:
        raise InputError("This world has no test captions.")
    items = [i for i, _, _ in found]
    rows = np.array([r for _, _, r in found], dtype=np.int64)
    targets = np.array([world.gallery_pos[i] for i in items], dtype=np.int64)
    table = pd.DataFrame({"image": items, "language": [l for _, l, _ in found], "caption": [world.captions[r].text for r in rows]})
    for name in chosen:
        table[rank_column(name)] = _ranks(world, name, rows, targets)
    for name in chosen:
        table[sigma_column(name)] = np.round(_sigma(world, name, items), 3)
    uml = uncertainty_models(world)
    if uml:
        table[f"UML u ({uml[0]})"] = np.round(_uncertainty(world, uml[0], rows), 4)
    table["noise labels"] = [noise_labels(world, i) for i in items]
    return table


@dataclass
class Filters:
    """What the finder keeps (every field optional) and how it sorts."""

    lang: str = ANY
    model: str = ""  # the model "rank > k" and σ apply to
    rank_above: int = 0  # keep rank > this (0: off)
    model_a: str = ""  # disagreement: rank <= a in model A ...
    a: int = 0
    model_b: str = ""  # ... and rank > b in model B (off unless both models are set)
    b: int = 0
    min_sigma: float = 0.0
    noise: str = ANY
    min_uncertainty: float = 0.0
    text: str = ""
    sort: str = ""  # a column name ("" keeps the table's order)
    descending: bool = True

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _whole(value, what: str) -> int:
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number.") from None
    if number != int(number) or number < 0:
        raise InputError(f"{what} must be a whole number, 0 or more (got {value}).")
    return int(number)


def _number(value, what: str) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number.") from None


def _rank_of(table: pd.DataFrame, model: str) -> pd.Series:
    column = rank_column(model)
    if column not in table.columns:
        raise InputError(f"{model!r} is not among the finder's models; tick it in Models.")
    return table[column]


def apply_filters(world: World, table: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """The rows of ``table`` that ``f`` keeps, sorted as it says (a new frame, index reset)."""
    keep = np.ones(len(table), dtype=bool)
    if f.lang not in (None, "", ANY):
        keep &= (table["language"] == f.lang).to_numpy()
    k = _whole(f.rank_above, "Rank above")
    if k:
        if not f.model:
            raise InputError("Choose the model whose rank is filtered.")
        keep &= (_rank_of(table, f.model) > k).to_numpy()
    if f.model_a and f.model_b:
        a, b = _whole(f.a, "Rank in A at most"), _whole(f.b, "Rank in B above")
        keep &= ((_rank_of(table, f.model_a) <= a) & (_rank_of(table, f.model_b) > b)).to_numpy()
    min_sigma = _number(f.min_sigma, "Minimum σ")
    if min_sigma > 0:
        if not f.model:
            raise InputError("Choose the model whose rank spread σ is filtered.")
        keep &= (table[sigma_column(f.model)].fillna(-1) >= min_sigma).to_numpy()
    if f.noise not in (None, "", ANY):
        labels = table["noise labels"]
        keep &= (labels == "").to_numpy() if f.noise == NONE_LABEL else labels.map(lambda s: f.noise in s.split(", ")).to_numpy()
    min_u = _number(f.min_uncertainty, "Minimum uncertainty")
    if min_u > 0:
        column = next((c for c in table.columns if c.startswith("UML u")), None)
        if column is None:
            raise InputError("No model in this world estimates uncertainty.")
        keep &= (table[column] >= min_u).to_numpy()
    words = (f.text or "").casefold().split()
    if words:
        texts = {}
        for item in set(table["image"][keep]):
            texts[item] = " ".join([item] + [world.captions[i].text for i in world.captions_of_item[item]]).casefold()
        keep &= np.array([ok and all(w in texts[item] for w in words) for ok, item in zip(keep, table["image"])])
    out = table[keep]
    if f.sort:
        if f.sort not in out.columns:
            raise InputError(f"Cannot sort by {f.sort!r}; choose one of the table's columns.")
        out = out.sort_values(f.sort, ascending=not f.descending, kind="stable", na_position="last")
    return out.reset_index(drop=True)


def find(world: World, models: Sequence[str] | None, f: Filters) -> tuple[pd.DataFrame, str]:
    """(filtered rows, status line)."""
    table = instance_table(world, models)
    out = apply_filters(world, table, f)
    shown = f" (the first {MAX_SHOWN} shown; the CSV has all)" if len(out) > MAX_SHOWN else ""
    return out, f"**{len(out):,} of {len(table):,} rows** (test instance × language) match{shown}. Click a row to open the instance."


def export_csv(world: World, rows: pd.DataFrame, f: Filters) -> Path:
    """The filtered rows as a CSV file in the world's export folder (served for download)."""
    path = world.export_dir / f"finder-{f.key()}.csv"
    tmp = path.with_suffix(".tmp")
    rows.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def noise_note(choices: list[tuple[str, str]]) -> str:
    """What the noise-label filter can find here: nothing to filter when no test caption carries a label."""
    if len(choices) > 2:
        return "labels of the instance's captions (machine translations with an injected or simulated error)"
    return ("no test caption of this world carries a noise label (its test captions are native, and noise is labelled on "
            "training pairs: the Audit tab ranks those)")


def noise_choices(world: World) -> list[tuple[str, str]]:
    """The noise-label filter's choices: any, none, and every label some test instance's captions carry."""
    labels = sorted({l for it in world.gallery for l in noise_labels(world, it.id).split(", ") if l})
    return [("any", ANY), ("no noise label", NONE_LABEL)] + [(l, l) for l in labels]


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def build_tab(world: World, page) -> None:
    """The Finder tab: filters, the matching rows (a row opens the Instance tab) and a CSV of them."""
    import gradio as gr

    from ccr_core.dashboard.search import language_name
    from ccr_core.dashboard.ui import guarded, selected

    names = world.model_names()
    main_names = [m.name for m in main_models(world.model_list())] or names[:5]
    langs = [("any", ANY)] + [(f"{language_name(l)} ({l})", l) for l in world.languages]
    pick = [("—", "")] + [(n, n) for n in names]
    with gr.Tab("Finder", id="finder") as tab:
        with gr.Row():
            lang = gr.Dropdown(langs, value=ANY, label="Language", elem_id="find-lang")
            text = gr.Textbox(value="", label="Words in a caption (or an id)", elem_id="find-text")
            model = gr.Dropdown(pick, value=main_names[0], label="Model for rank > k and σ", elem_id="find-model")
            k = gr.Number(value=0, precision=0, minimum=0, label="Rank > k (0: off)", elem_id="find-k")
            sigma = gr.Number(value=0, minimum=0, label="σ at least (0: off)", elem_id="find-sigma")
            min_u = gr.Number(value=0, minimum=0, label="UML u at least", elem_id="find-u")
            noise = gr.Dropdown([("any", ANY)], value=ANY, label="Noise label", allow_custom_value=True, elem_id="find-noise")
            model_a = gr.Dropdown(pick, value="", label="Disagree: model A", elem_id="find-a-model")
            a = gr.Number(value=5, precision=0, minimum=0, label="rank in A ≤", elem_id="find-a")
            model_b = gr.Dropdown(pick, value="", label="model B", elem_id="find-b-model")
            b = gr.Number(value=20, precision=0, minimum=0, label="rank in B >", elem_id="find-b")
            sort = gr.Dropdown([], value="", label="Sort by", allow_custom_value=True, elem_id="find-sort")
            go_btn = gr.Button("Find", variant="primary", elem_id="find-btn")
            csv_btn = gr.Button("Export CSV", elem_id="find-csv-btn")
        status = gr.Markdown(elem_id="find-status")
        table = gr.Dataframe(interactive=False, wrap=True, label="Matching rows (click one)", elem_id="find-table", max_height=480)
        csv_file = gr.File(label="CSV of the filtered rows", interactive=False, visible=False, elem_id="find-csv")

    inputs = [lang, model, k, model_a, a, model_b, b, sigma, noise, min_u, text, sort]

    def filters(language, name, above, ma, va, mb, vb, min_sigma, label, u, words, by) -> tuple[list, Filters]:
        chosen = list(dict.fromkeys([*main_names, *(n for n in (name, ma, mb) if n)]))  # a rank column each
        by = by or ""
        return chosen, Filters(language, name or "", above, ma or "", va, mb or "", vb, min_sigma, label, u, words or "",
                               by[2:] if by[:2] in ("↓ ", "↑ ") else by, not by.startswith("↑ "))

    @guarded(5)
    def do_find(*values):
        chosen, f = filters(*values)
        rows, line = find(world, chosen, f)
        order = [""] + [f"{d} {c}" for c in rows.columns for d in ("↓", "↑")]
        labels = noise_choices(world)
        return (line, gr.update(value=rows.head(MAX_SHOWN), column_widths=column_widths(rows.columns)), gr.update(choices=order), gr.update(choices=labels, info=noise_note(labels)),
                gr.update(visible=False, value=None))

    find_outputs = [status, table, sort, noise, csv_file]
    gr.on([tab.select, go_btn.click, text.submit], do_find, inputs, find_outputs, api_name="finder")

    @guarded(2)
    def do_csv(*values):
        chosen, f = filters(*values)
        rows, line = find(world, chosen, f)
        return line + f" CSV: {len(rows):,} rows.", gr.update(visible=True, value=str(export_csv(world, rows, f)))

    csv_btn.click(do_csv, inputs, [status, csv_file], api_name="finder_csv")

    def row_item(evt=None):
        return selected(evt, "row_value")[0]

    page.link_instance(table.select, [], row_item, api_name="finder_open")
