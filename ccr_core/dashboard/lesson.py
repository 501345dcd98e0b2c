"""Start here: a short guided lesson for teaching, in plain words before any formula. Each step is one
click and shows real results of this world -- the same description in two languages, a noisy machine
translation, the rank spread that MRV averages, UML flagging a bad training pair, and where the
methods stand -- with pictures first."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ccr_core.dashboard import audit, consistency, leaderboard, search
from ccr_core.dashboard.colours import main_models
from ccr_core.dashboard.errors import InputError
from ccr_core.dashboard.glossary import TERMS
from ccr_core.dashboard.world import NATIVE_SOURCES, World, language_name


@dataclass
class LessonStep:
    title: str
    text: str  # Markdown, plain words first
    gallery: list[tuple[str, str]] = field(default_factory=list)  # (thumbnail path, caption)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


INTRO = ("**Start here.** This dashboard compares models that find pictures from descriptions written in many languages. They "
         "learned from English descriptions and from *machine translations* of them, and machine translation makes mistakes. Six "
         "short steps, one click each, show what that means; the other tabs let you explore further.")


def _model_for_lesson(world: World, method: str | None = None):
    models = main_models(world.model_list()) or world.model_list()
    return next((m for m in models if m.method == method), models[0]) if method else models[0]


def _instance_in(world: World, langs: tuple[str, str]) -> tuple[str, dict[str, object]]:
    """A test image with a native caption in both languages, and those captions."""
    for item in world.gallery:
        caps = {}
        for i in world.captions_of_item[item.id]:
            c = world.captions[i]
            if c.lang in langs and c.source in NATIVE_SOURCES and c.lang not in caps:
                caps[c.lang] = c
        if len(caps) == len(langs):
            return item.id, caps
    raise InputError("This world has no test image described in two languages.")


def step_two_languages(world: World) -> LessonStep:
    """The same picture described in English and in another language: where does each put it?"""
    other = next((l for l in world.languages if l != "en"), None)
    if other is None or "en" not in world.languages:
        raise InputError("This world has no second language to compare with English.")
    item, caps = _instance_in(world, ("en", other))
    model = _model_for_lesson(world, "one_to_k")
    gallery, rows = [], []
    for lang in ("en", other):
        result = search.text_search(world, caps[lang].text, lang, [model.name], 4, caps[lang].id)
        hits = result.methods[0]
        gallery += [(str(h.thumb), f"{language_name(lang)} #{h.rank}" + (" ✓ the described picture" if h.is_target else "")) for h in hits.hits]
        rows.append({"language": language_name(lang), "description": caps[lang].text, "rank of the described picture": hits.target_rank})
    ranks = [r["rank of the described picture"] for r in rows]
    verdict = "Both languages find it at the same place." if ranks[0] == ranks[1] else (
        f"The two languages put it at different places ({ranks[0]} and {ranks[1]}): the model is not equally good in both.")
    text = (f"### 1 · One picture, two languages\nThe same picture is described in English and in {language_name(other)}. The model "
            f"(**{model.name}**) ranks all {len(world.gallery):,} test pictures for each description; the first row of pictures is the "
            f"English search, the second the {language_name(other)} one, and the described picture is framed in yellow. {verdict}")
    return LessonStep("Two languages", text, gallery, pd.DataFrame(rows))


def step_noisy_translation(world: World) -> LessonStep:
    """A machine-translated training caption that does not say what the picture shows, beside its English source."""
    noise = world.bundle.noise
    text_of = {c.id: c for c in world.bundle.captions}
    bad = next((c for c in world.bundle.captions if noise.get(c.id, "clean") != "clean" and c.ref in text_of and c.item in {it.id for it in world.bundle.items}), None)
    base = ("### 2 · A noisy translation\nThe models learn other languages from machine translations of English descriptions. "
            "Some translations are wrong (a word with the wrong sense, a dropped colour, left and right swapped) and some are "
            "attached to the wrong picture altogether (*noisy correspondence*).")
    if bad is None:
        return LessonStep("A noisy translation", base + " This world's training data has no labelled noisy translation to show.")
    source = text_of[bad.ref]
    rows = [{"what": "English description (human)", "text": source.text},
            {"what": f"machine translation into {language_name(bad.lang)}", "text": bad.text},
            {"what": "what is wrong", "text": noise[bad.id]}]
    return LessonStep("A noisy translation", base + f" Here is one from the training data, labelled **{noise[bad.id]}**: compare the "
                      "translation with its English source.", [(str(world.thumbnail(bad.item)), f"training picture {bad.item}")], pd.DataFrame(rows))


def step_rank_spread(world: World) -> LessonStep:
    """The instance whose ranks differ most across languages, and MRV as the average of that spread."""
    model = _model_for_lesson(world, "baseline")
    table = consistency.rank_tables(world, model)
    ranks = table["t2i"].astype(np.float64)
    sigma = ranks.std(axis=1)
    j = int(np.argmax(sigma))
    item = table["items"][j]
    rows = [{"language": language_name(l), "rank of the picture": int(ranks[j, k])} for k, l in enumerate(table["languages"])]
    mrv = float(sigma.mean())
    text = ("### 3 · Rank spread and MRV\nDescribe one picture in every language and look at the rank each description gives it. "
            f"If the ranks are far apart, the model is **inconsistent** across languages. For **{model.name}** this picture has the "
            f"largest spread: its ranks differ by a standard deviation of **{sigma[j]:.1f}**. Averaging that spread over all "
            f"{len(sigma):,} pictures gives **MRV = {mrv:.2f}** (mean rank variance; 0 would mean every language agrees on every picture). "
            "Lower is better; the Consistency tab compares it across models.")
    return LessonStep("Rank spread = MRV", text, [(str(world.thumbnail(item)), f"test picture {item}")], pd.DataFrame(rows))


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
    keep = [c for c in ("#", "true label", "language", "machine-translated caption", "English source", "uncertainty", "mismatch") if c in rows.columns]
    text = ("### 4 · UML flags a bad pair\nUML learns, while training, how much to trust each (picture, translation) pair. Left: the "
            f"pair **{model.name}** trusts least; right: the one it trusts most. Its *uncertainty* goes from 0 (sure) to 1; the "
            "*mismatch* score is what it trains with to set doubtful pairs aside. Where the true label is known it is shown: "
            "the Audit tab measures how often the flags are right, and compares them with simpler detectors.")
    return LessonStep("UML flags a bad pair", text, gallery + g2, rows[keep])


def step_standings(world: World) -> LessonStep:
    """The main methods ranked, with what the repeated runs can and cannot tell apart."""
    ranked = leaderboard.ranking_table(world, show_variants=False)
    cols = ["rank", "model", "target SumR", "target SumR over seeds (95% CI)", "verdict"]
    text = ("### 5 · Where the methods stand\nEach model's score on the non-English test captions (SumR: the share of searches "
            "with the right answer in the top 1, 5 and 10, both ways, at most 600). Training again with another random seed moves "
            "the score a little, so the interval says how much. A difference from the baseline counts only when its interval "
            "excludes zero; otherwise it says **not resolved**. " + TERMS["interval"].split(": ", 1)[1])
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


def build_tab(world: World, page) -> None:
    """The Start here tab: six one-click steps."""
    import gradio as gr

    from ccr_core.dashboard.glossary import glossary_markdown
    from ccr_core.dashboard.ui import guarded

    with gr.Tab("Start here", id="lesson"):
        gr.Markdown(INTRO)
        with gr.Row():
            buttons = [gr.Button(label, size="sm", elem_id=f"lesson-step-{i + 1}", min_width=100) for i, (label, _) in enumerate(STEPS)]
        text = gr.Markdown("Press **1 · Two languages** to begin.", elem_id="lesson-text")
        gallery = gr.Gallery(show_label=False, columns=4, height=300, object_fit="contain", allow_preview=True, elem_id="lesson-gallery")
        table = gr.Dataframe(interactive=False, wrap=True, elem_id="lesson-table")
        with gr.Accordion("Words used in this dashboard", open=False):
            gr.Markdown(glossary_markdown(any(m.fine_tuned for m in world.model_list())), elem_id="lesson-glossary")

    for i, (button, (_, step)) in enumerate(zip(buttons, STEPS)):
        @guarded(3)
        def show(step=step):
            shown = step(world)
            return shown.text, gr.update(value=shown.gallery, visible=bool(shown.gallery)), gr.update(value=shown.table, visible=not shown.table.empty)

        button.click(show, None, [text, gallery, table], api_name=f"lesson_{i + 1}")

    def picture_item(evt=None):
        from ccr_core.dashboard.instance import item_of_picture
        from ccr_core.dashboard.ui import selected

        return item_of_picture(world, selected(evt, "value"))

    page.link_instance(gallery.select, [], picture_item, api_name="lesson_open_instance")
