"""Start here: a short guided lesson for teaching, in plain words before any formula. Each step is one
click and shows real results of this world -- the same description in two languages, a noisy machine
translation, the rank spread that MRV averages, UML flagging a bad training pair, and where the
methods stand -- with pictures first."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ccr_core.dashboard import audit, consistency, leaderboard, search
from ccr_core.dashboard.colours import main_models
from ccr_core.dashboard.errors import InputError
from ccr_core import metrics
from ccr_core.dashboard.world import NATIVE_SOURCES, World, language_name
from ccr_core.methods import BASELINE, methods_with


@dataclass
class LessonStep:
    title: str
    text: str  # Markdown, plain words first
    gallery: list[tuple[str, str]] = field(default_factory=list)  # (thumbnail path, caption)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    targets: list[int] = field(default_factory=list)  # indices in ``gallery`` of the step's own picture (framed)
    row_length: int = 0  # pictures per row where the text names rows (0: as many as fit)

    def figures_html(self) -> str:
        """The step's pictures as HTML figures at their natural size (never upscaled, never cropped: max-width
        100%, height auto), each with its caption below it; the step's own picture framed in yellow."""
        figures = []
        for i, (path, caption) in enumerate(self.gallery):
            cls = "ccr-lesson-figure ccr-lesson-target" if i in self.targets else "ccr-lesson-figure"
            if self.row_length and i and i % self.row_length == 0:  # a new row, as the text says
                figures.append('<div class="ccr-lesson-row-break"></div>')
            figures.append(f'<figure class="{cls}"><img src="/gradio_api/file={html.escape(str(path), quote=True)}" alt="{html.escape(caption, quote=True)}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return f'<div class="ccr-lesson-figures">{"".join(figures)}</div>' if figures else ""


INTRO = ("**Start here.** This dashboard compares models that find pictures from descriptions written in many languages. They "
         "learned from English descriptions and from *machine translations* of them, and machine translation makes mistakes. Six "
         "short steps, one click each, show what that means; the other tabs let you explore further.")
LESSON_K = 4  # pictures shown per search in step 1
# What each noise label means, in words (the labels themselves, "mt:word-order", are codes a reader should not see).
NOISE_WORDS = {
    "clean": "nothing: a correct translation",
    "noisy-correspondence": "it describes another picture (attached to the wrong one)",
    "mt:word-order": "the words are in the wrong order",
    "mt:wrong-sense": "a word is translated in the wrong sense",
    "mt:untranslated": "words were left untranslated",
    "mt:dropped-attribute": "a detail (such as a colour) was dropped",
    "mt:flipped-relation": "a relation is reversed (such as left and right swapped)",
}
# Kinds in the order their mistake is easiest to see against the English source.
VISIBLE_NOISE = ("noisy-correspondence", "mt:flipped-relation", "mt:dropped-attribute", "mt:wrong-sense", "mt:untranslated", "mt:word-order")


def noise_words(label: str | None) -> str:
    """A noise label in plain words; an unknown one without its code prefix."""
    if not label:
        return "not labelled"
    return NOISE_WORDS.get(label) or label.split(":", 1)[-1].replace("-", " ")


def _model_for_lesson(world: World, method: str | None = None):
    models = main_models(world.model_list()) or world.model_list()
    return next((m for m in models if m.method == method), models[0]) if method else models[0]


def _native_pairs(world: World, langs: tuple[str, str]) -> list[tuple[str, dict]]:
    """Test images with a native caption in both languages, and those captions."""
    out = []
    for item in world.gallery:
        caps = {}
        for i in world.captions_of_item[item.id]:
            c = world.captions[i]
            if c.lang in langs and c.source in NATIVE_SOURCES and c.lang not in caps:
                caps[c.lang] = c
        if len(caps) == len(langs):
            out.append((item.id, caps))
    return out


def pick_two_language_instance(world: World, model, langs: tuple[str, str], k: int = LESSON_K) -> tuple[str, dict, dict]:
    """(item, its captions, their ranks) for step 1, chosen from this world's ranks so the step's point shows:
    both descriptions put the picture in the top ``k`` at different places if any image allows it; else one of
    them does and the other does not (the picture is then shown first in that row); else the closest."""
    pairs = _native_pairs(world, langs)
    if not pairs:
        raise InputError("This world has no test image described in two languages.")
    if model.captions is None:  # test captions still being encoded: no ranks to choose by yet
        return pairs[0][0], pairs[0][1], {}
    ranks = {}
    for lang in langs:
        rows = np.array([world.caption_pos[caps[lang].id] for _, caps in pairs])
        targets = np.array([world.gallery_pos[item] for item, _ in pairs])
        ranks[lang] = metrics.text_to_image_ranks((model.captions[rows] @ model.image_emb.T).astype(np.float32), targets)  # (P,)
    a, b = ranks[langs[0]], ranks[langs[1]]
    differ = a != b
    tier = np.where(differ & (a <= k) & (b <= k), 0, np.where(differ & (np.minimum(a, b) <= k), 1, 2))
    j = int(np.lexsort((np.maximum(a, b), tier))[0])
    return pairs[j][0], pairs[j][1], {langs[0]: int(a[j]), langs[1]: int(b[j])}


def step_two_languages(world: World) -> LessonStep:
    """The same picture described in English and in another language: where does each put it?"""
    other = next((l for l in world.languages if l != "en"), None)
    if other is None or "en" not in world.languages:
        raise InputError("This world has no second language to compare with English.")
    model = _model_for_lesson(world, next(iter(methods_with(targets_per_batch=0)), None))  # trained on every language at once
    item, caps, _ = pick_two_language_instance(world, model, ("en", other))
    gallery, rows, targets = [], [], []
    for lang in ("en", other):
        result = search.text_search(world, caps[lang].text, lang, [model.name], LESSON_K, caps[lang].id)
        hits = result.methods[0]
        shown = hits.hits
        if not any(h.is_target for h in shown):  # the described picture is always shown: first, with its rank
            target = search.Hit(item, hits.target_rank, float("nan"), world.thumbs[item], True)
            shown = [target, *shown[: LESSON_K - 1]]
        for h in shown:
            if h.is_target:
                targets.append(len(gallery))
            gallery.append((str(world.thumbs[h.item_id]), f"{language_name(lang)} · #{h.rank}" + (" · ✓ the described picture" if h.is_target else "")))
        rows.append({"language": language_name(lang), "description": caps[lang].text, "rank of the described picture": hits.target_rank})
    ranks = [r["rank of the described picture"] for r in rows]
    verdict = "Both languages find it at the same place." if ranks[0] == ranks[1] else (
        f"The two languages put it at different places ({ranks[0]} and {ranks[1]}): the model is not equally good in both.")
    outside = [r["language"] for r in rows if r["rank of the described picture"] > LESSON_K]
    where = (f" In the {' and '.join(outside)} row it is not among the first {LESSON_K}, so it is shown first, with its rank." if outside else "")
    text = (f"### 1 · One picture, two languages\nThe same picture is described in English and in {language_name(other)}. The model "
            f"(**{model.name}**) ranks all {len(world.gallery):,} test pictures for each description; the first row of pictures is the "
            f"English search, the second the {language_name(other)} one, and the described picture is framed in yellow.{where} {verdict}")
    return LessonStep("Two languages", text, gallery, pd.DataFrame(rows), targets, row_length=LESSON_K)


def pick_noisy_translation(world: World):
    """A labelled mistranslated training caption whose mistake is easy to see against its English source (kinds in
    :data:`VISIBLE_NOISE` order, shorter sources first), else any machine translation with its source; or None."""
    noise = world.bundle.noise
    by_id = {c.id: c for c in world.bundle.captions}
    items = {it.id for it in world.bundle.items}
    usable = [c for c in world.bundle.captions if c.source.startswith("mt:") and c.ref in by_id and by_id[c.ref].lang == "en" and c.item in items]
    labelled = [c for c in usable if noise.get(c.id, "clean") != "clean"]
    if labelled:
        rank = {kind: i for i, kind in enumerate(VISIBLE_NOISE)}
        return min(labelled, key=lambda c: (rank.get(noise[c.id], len(rank)), abs(len(by_id[c.ref].text) - 60))), by_id
    return (min(usable, key=lambda c: abs(len(by_id[c.ref].text) - 60)), by_id) if usable else (None, by_id)


def step_noisy_translation(world: World) -> LessonStep:
    """A machine-translated training caption that does not say what the picture shows, beside its English source."""
    base = ("### 2 · A noisy translation\nThe models learn other languages from machine translations of English descriptions. "
            "Some translations are wrong (a word with the wrong sense, a dropped colour, left and right swapped) and some are "
            "attached to the wrong picture altogether (*noisy correspondence*).")
    bad, by_id = pick_noisy_translation(world)
    if bad is None:
        return LessonStep("A noisy translation", base + " This world's training data has no machine translation with its English source to show.")
    source, label = by_id[bad.ref], world.bundle.noise.get(bad.id)
    rows = [{"what": "English description (human)", "text": source.text},
            {"what": f"machine translation into {language_name(bad.lang)}", "text": bad.text},
            {"what": "what is wrong", "text": noise_words(label)}]
    said = (f" Here is one from the training data, with its picture: the translation has a mistake (**{noise_words(label)}**); compare it with "
            "its English source." if label and label != "clean" else
            " This world's translations are not labelled, so here is one from the training data beside its English source and picture: "
            "judge it yourself (step 4 shows how UML finds doubtful ones).")
    return LessonStep("A noisy translation", base + said, [(str(world.thumbnail(bad.item)), f"the training picture ({language_name(bad.lang)} translation)")],
                      pd.DataFrame(rows), [0])


def pick_spread_instance(world: World, table: dict) -> int:
    """The instance whose text -> image ranks spread most across languages, among those at least one language finds
    in its top 3 (so the contrast is plain: found at once in one language, far down in another); else the largest spread."""
    ranks = table["t2i"].astype(np.float64)  # (n, L)
    sigma = ranks.std(axis=1)  # population σ (ddof 0), as MRV
    found = ranks.min(axis=1) <= 3
    pool = np.flatnonzero(found) if found.any() else np.arange(len(sigma))
    return int(pool[np.argmax(sigma[pool])])


def lesson_mrv(world: World, model) -> float:
    """The MRV figure the lesson shows: the Leaderboard's "MRV mean" of the model (both directions averaged)."""
    mrv = leaderboard.model_result(world, model).get("mrv", {})
    if "mrv_mean" in mrv:
        return float(mrv["mrv_mean"])
    table = consistency.rank_tables(world, model)
    return (metrics.mrv(table["t2i"]) + metrics.mrv(table["i2t"])) / 2


def step_rank_spread(world: World) -> LessonStep:
    """A picture whose ranks differ across languages, and MRV as the average of that spread."""
    model = _model_for_lesson(world, BASELINE)
    table = consistency.rank_tables(world, model)
    j = pick_spread_instance(world, table)
    item = table["items"][j]
    t2i, i2t = table["t2i"][j].astype(np.float64), table["i2t"][j].astype(np.float64)
    rows = [{"language": language_name(l), "rank of the picture (its description searched)": int(t2i[k]),
             "rank of its description (the picture searched)": int(i2t[k])} for k, l in enumerate(table["languages"])]
    mrv = lesson_mrv(world, model)
    text = ("### 3 · Rank spread and MRV\nDescribe one picture in every language and look at the rank each description gives it "
            "(text → image). If the ranks are far apart, the model is **inconsistent** across languages. For **{model}** this picture's "
            "ranks (in the table) have a standard deviation of **{sd:.1f}**. Take that spread for every one of the {n:,} test "
            "pictures, in both directions (text → image, and image → text: where the picture puts its description), and average it: "
            "that is **MRV = {mrv:.2f}** for {model}, the figure the Leaderboard shows as *MRV mean*. Lower is better; 0 would mean "
            "every language agrees on every picture.\n\n*About the name:* MRV stands for *mean rank variance*, but what the "
            "papers' code (CCRK) computes, and this dashboard too, is the mean of the per-picture **standard deviation** "
            "(population σ, not the variance), so it is measured in ranks.").format(model=model.name, sd=float(t2i.std()), n=len(table["items"]), mrv=mrv)
    return LessonStep("Rank spread = MRV", text, [(str(world.thumbnail(item)), "the picture in the table")], pd.DataFrame(rows), [0])


def step_uml_flags(world: World) -> LessonStep:
    """UML's most doubtful training pair next to one it trusts."""
    names = audit.uncertainty_models(world)
    if not names:
        raise InputError("No UML model in this world.")
    model = world.model(names[0])
    gallery, table, _ = audit.uncertain_pairs(world, model.name, 0, 1)
    ps = audit.pair_uncertainty(world, model)
    last = len(ps.scores) - 1
    g2, t2, _ = audit.uncertain_pairs(world, model.name, last, 1)
    rows = pd.concat([table, t2], ignore_index=True)
    if "true label" in rows.columns:
        rows["true label"] = [noise_words(v) if v != "unlabelled" else "not labelled" for v in rows["true label"]]
    keep = [c for c in ("machine-translated caption", "English source", "true label", "language", "uncertainty", "mismatch") if c in rows.columns]
    shown = [(gallery[0][0], "trusted least"), (g2[0][0], "trusted most")]
    text = ("### 4 · UML flags a bad pair\nUML learns, while training, how much to trust each (picture, translation) pair. Left: the "
            f"pair **{model.name}** trusts least; right: the one it trusts most. Its *uncertainty* goes from 0 (sure) to 1; the "
            "*mismatch* score is what it trains with to set doubtful pairs aside. Where the true label is known it is shown: "
            "the Audit tab measures how often the flags are right, and compares them with simpler detectors.")
    return LessonStep("UML flags a bad pair", text, shown, rows[keep], [])


def step_standings(world: World) -> LessonStep:
    """The main methods ranked, with what the repeated runs can and cannot tell apart."""
    ranked = leaderboard.ranking_table(world, show_variants=False)
    cols = ["rank", "model", "target SumR", "target SumR over seeds (95% CI)", "verdict"]
    text = ("### 5 · Where the methods stand\nEach model's score on the non-English test captions (SumR: the share of searches "
            "with the right answer in the top 1, 5 and 10, both ways, at most 600). Training again with another random seed moves "
            "the score a little, so each method is trained with several seeds and the interval (the 95% confidence interval of "
            "their mean) says how much; the rows are ranked by that mean. A difference from the baseline counts only when its "
            "interval excludes zero; otherwise the table says **not resolved**: this experiment cannot tell the two apart.")
    return LessonStep("Where the methods stand", text, [], ranked[cols])


def step_try_it(world: World) -> LessonStep:
    examples = world.example_queries(per_lang=1)[:3]
    lines = "\n".join(f"- “{t}” ({language_name(l)})" for t, l in examples)
    text = ("### 6 · Try it yourself\nOpen **Search** and type a description in any language (about 90 are understood), or copy one "
            f"of these:\n{lines}\n\n**Languages** compares one description across languages, **Maps** shows how the "
            "models arrange pictures and captions (click or lasso points), **Experiment** trains a model of your own, and **About** "
            "has the formulas.")
    return LessonStep("Try it yourself", text)


STEPS = (("1 · Two languages", step_two_languages), ("2 · A noisy translation", step_noisy_translation), ("3 · Rank spread = MRV", step_rank_spread),
         ("4 · UML flags a bad pair", step_uml_flags), ("5 · Where the methods stand", step_standings), ("6 · Try it yourself", step_try_it))


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


PRESENTER_JS = ("(on) => { document.body.classList.toggle('ccr-presenter', !!on); "
                "if (on) { const el = document.getElementById('lesson-text'); if (el) el.scrollIntoView(); } return []; }")


def build_tab(world: World, page) -> None:
    """The Start here tab: six one-click steps, with Previous / Next and a presenter mode (large type, one step
    per screen: the page header, the intro and the step buttons are hidden)."""
    import gradio as gr

    from ccr_core.dashboard.glossary import glossary_markdown
    from ccr_core.dashboard.ui import guarded

    with gr.Tab("Start here", id="lesson"):
        gr.Markdown(INTRO, elem_id="lesson-intro")
        with gr.Row(elem_id="lesson-steps"):
            buttons = [gr.Button(label, size="sm", elem_id=f"lesson-step-{i + 1}", min_width=100) for i, (label, _) in enumerate(STEPS)]
        with gr.Row(elem_id="lesson-nav"):
            prev_btn = gr.Button("◀ Previous", size="sm", elem_id="lesson-prev", min_width=90)
            next_btn = gr.Button("Next ▶", size="sm", elem_id="lesson-next", min_width=90)
            presenter = gr.Checkbox(value=False, label="Presenter mode (large type, one step per screen)", elem_id="lesson-presenter")
        with gr.Column(elem_id="lesson-step"):
            text = gr.Markdown("Press **1 · Two languages** to begin.", elem_id="lesson-text")
            figures = gr.HTML("", elem_id="lesson-gallery", visible=False)
            table = gr.Dataframe(interactive=False, wrap=True, elem_id="lesson-table", visible=False)
            open_step = gr.Button("Open the step's framed picture in the Instance tab ▸", size="sm", elem_id="lesson-open-instance")
        with gr.Accordion("Words used in this dashboard", open=False, elem_id="lesson-words"):
            glossary = gr.Markdown("", elem_id="lesson-glossary")
        current = gr.State(0)  # the step shown (1-based; 0 before the first)
    words = glossary_markdown(any(m.fine_tuned for m in world.model_list()))
    page.lazy(glossary, lambda: words)  # at page load: not carried in the page config

    def render(index: int):
        shown = STEPS[index - 1][1](world)
        html_figures = shown.figures_html()
        return (shown.text, gr.update(value=html_figures, visible=bool(html_figures)),
                gr.update(value=shown.table, visible=not shown.table.empty), index)

    # An error clears the step's pictures and table: they never stand under another step's text.
    cleared = {1: gr.update(value="", visible=False), 2: gr.update(visible=False)}
    for i, button in enumerate(buttons):
        @guarded(4, on_error=cleared)
        def show(index=i + 1):
            return render(index)

        button.click(show, None, [text, figures, table, current], api_name=f"lesson_{i + 1}")

    @guarded(4, on_error=cleared)
    def step_by(at, delta):
        return render(min(len(STEPS), max(1, int(at or 0) + delta)))

    prev_btn.click(lambda at: step_by(at, -1), current, [text, figures, table, current], api_visibility="private")
    next_btn.click(lambda at: step_by(at, +1), current, [text, figures, table, current], api_visibility="private")
    presenter.change(None, presenter, None, js=PRESENTER_JS)

    def step_item(at, evt=None):
        """The item of the shown step's own (framed) picture."""
        from ccr_core.dashboard.instance import item_of_picture

        if not at:
            raise InputError("Pick a step first: its framed picture then opens in the Instance tab.")
        shown = STEPS[int(at) - 1][1](world)
        if not shown.targets:
            raise InputError("This step has no picture of its own to open.")
        return item_of_picture(world, str(shown.gallery[shown.targets[0]][0]))

    page.link_instance(open_step.click, [current], step_item, api_name="lesson_open_instance")
