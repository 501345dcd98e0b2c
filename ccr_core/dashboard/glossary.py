"""Plain-words explanations of the names and numbers the dashboard shows (tooltips, the About tab and
the lesson): what a model name's parts mean, and what each score measures, before any formula."""
from __future__ import annotations

import html

from ccr_core.methods import METHODS, main_methods, method_label, ordered_methods


def method_term(name: str) -> str:
    """A method's glossary entry, ``"<label>: <description>"`` from its class; the bare name when it has none."""
    description = METHODS.get(name).description if name in METHODS else ""
    return f"{method_label(name)}: {description}" if description else name


TERMS = {
    **{name: method_term(name) for name in ordered_methods(plugins=False)},
    "-noise": "-noise0.4: the same method trained with 40% of its translated training captions swapped for another "
              "image's (injected noise), to see how well it copes with bad training pairs.",
    "-ft": "-ft: the last blocks of the image and text encoders were fine-tuned too (only in worlds that ship such models).",
    "trained here": "trained here: a model trained in this dashboard's Experiment tab and published by its trainer.",
    "uncertainty": "UML uncertainty: how unsure UML is about this query, from 0 (sure) to 1. It compares the query with its "
                   "closest images; a value near 0.01 means the model is confident, not that the answer is right.",
    "SumR": "SumR: the sum of recall at 1, 5 and 10 in both directions (text → image and image → text), at most 600. Higher is better.",
    "MRV": "MRV (mean rank variance): for each image, how far apart its rank is when the same description is given in different "
           "languages, averaged. 0 means every language finds it equally well. Lower is better.",
    "interval": "± interval: the 95% confidence interval of the mean over training seeds. Two methods whose difference's "
                "interval includes 0 are not told apart by this experiment (not resolved).",
}


def model_terms(name: str, method: str, noise: float = 0.0, fine_tuned: bool = False, shipped: bool = True) -> list[str]:
    """The glossary entries a model's name is made of (method, then its variant parts)."""
    out = [TERMS.get(method) or method_term(method)]
    if noise > 0:
        out.append(TERMS["-noise"].replace("0.4", f"{noise:g}").replace("40%", f"{noise:.0%}"))
    if fine_tuned or "-ft" in name:
        out.append(TERMS["-ft"])
    if not shipped:
        out.append(TERMS["trained here"])
    return out


def model_tooltip(model) -> str:
    """A model's explanation as an HTML attribute value (``title="…"``)."""
    terms = model_terms(model.name, model.method, model.noise, getattr(model, "fine_tuned", False), getattr(model, "shipped", True))
    return html.escape(" ".join(terms), quote=True)


def glossary_markdown(has_fine_tuned: bool, methods: bool = True) -> str:
    """The glossary as a Markdown list; ``-ft`` only where the world has such models; ``methods=False``: without
    the main methods (for a page that has just introduced them); the built-in variants (``baseline-en``) follow them."""
    named = main_methods() if methods else []
    variants = [n for n in ordered_methods(plugins=False) if not METHODS.get(n).main]
    keys = [*named, *variants, "-noise", *(["-ft"] if has_fine_tuned else []), "trained here", "uncertainty", "SumR", "MRV", "interval"]
    return "\n".join(f"- {TERMS[k]}" for k in keys)
