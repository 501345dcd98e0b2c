"""Retrieval evaluation of a trained model on a bundle's test split: R@K / SumR per language and caption
source, MRV across languages, and NRCCR's fused scoring where back-translated queries exist;
:func:`evaluate_with_detectors` adds the noise detectors on the labelled training pairs.

Query groups: a language's test captions are split by what they are -- ``zh`` (human-written),
``zh/human-translation`` (e.g. Flickr8k-CN's human-translated test captions), ``zh/mt`` -- and each
group is evaluated over the test items that have a caption in it (for Flickr8k-ML's de/fr/cs that
is the test images with Multi30K captions). MRV uses one caption (the first) per image per language
over the images captioned in every one of those languages.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ccr_core import metrics
from ccr_core.data.bundle import Bundle, source_matches
from ccr_core.eval.detectors import training_pair_detectors
from ccr_core.training.inference import TrainedModel

NATIVE_SOURCES = ("human", "generated")


def query_groups(bundle: Bundle, split: str = "test") -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{group name: (lang, sources)}`` for the split's captions (see module docstring)."""
    groups: dict[str, tuple[str, tuple[str, ...]]] = {}
    for lang in bundle.languages:
        kinds = {c.source.split(":")[0] for c in bundle.captions if c.split == split and c.lang == lang}
        if kinds & set(NATIVE_SOURCES):
            groups[lang] = (lang, NATIVE_SOURCES)
        if "human-translation" in kinds:
            groups[lang if lang not in groups else f"{lang}/human-translation"] = (lang, ("human-translation",))
        if "mt" in kinds and not (kinds & set(NATIVE_SOURCES)) and "human-translation" not in kinds:
            groups[f"{lang}/mt"] = (lang, ("mt:",))
    return groups


def group_queries(bundle: Bundle, split: str, position: dict[str, int]):
    """Per query group of the split (:func:`query_groups`) with captions of the items in ``position`` (item id ->
    row of the image embeddings): ``(group, lang, captions, gallery, c2i)`` -- ``gallery`` the sorted rows of the
    items captioned in this group, ``c2i`` each caption's column in that gallery."""
    for group, (lang, sources) in query_groups(bundle, split).items():
        caps = [c for c in bundle.captions_in(split, lang) if source_matches(c.source, sources) and c.item in position]
        if not caps:
            continue
        gallery = sorted({position[c.item] for c in caps})  # items captioned in this group
        remap = {g: k for k, g in enumerate(gallery)}
        yield group, lang, caps, gallery, np.array([remap[position[c.item]] for c in caps])


def evaluate_model(model: TrainedModel, bench=None, split: str = "test", kind: str = "image", mrv_languages: Sequence[str] | None = None) -> dict:
    """All test numbers of one model on ``bench.bundle`` (items of one ``kind``); ``bench`` defaults to the model's."""
    if bench is not None:
        model = model.on(bench)
    bundle = model.bench.bundle
    items = bundle.items_in(split, kind)
    if not items:
        return {}
    image_emb = model.encode_items(items)  # (N, E)
    position = {it.id: i for i, it in enumerate(items)}
    out: dict = {"model": model.name, "method": model.meta["method"], "split": split, "kind": kind, "groups": {}}
    sims_for_mrv, c2i_for_mrv = {}, {}
    for group, lang, caps, gallery, c2i in group_queries(bundle, split, position):
        text_emb = model.encode_captions(caps, lang)
        sim = (text_emb @ image_emb[gallery].T).numpy()  # (M, N_group)
        report = metrics.retrieval_report(sim, c2i)
        backs = _back_translations(bundle, caps)
        if backs is not None:
            back_emb = model.encode_captions(backs, "en")
            fused = metrics.fuse_similarities(sim, (back_emb @ image_emb[gallery].T).numpy(), weight_target=0.5)
            report["fused"] = metrics.retrieval_report(fused, c2i)
        out["groups"][group] = report
        if "/" not in group:
            full_sim = (text_emb @ image_emb.T).numpy()
            sims_for_mrv[lang], c2i_for_mrv[lang] = full_sim, np.array([position[c.item] for c in caps])
    langs = [l for l in (mrv_languages or list(sims_for_mrv)) if l in sims_for_mrv]
    if len(langs) >= 2:
        try:
            out["mrv"] = metrics.mrv_report({l: sims_for_mrv[l] for l in langs}, {l: c2i_for_mrv[l] for l in langs})
        except ValueError as exc:  # no image captioned in every language
            out["mrv"] = {"error": str(exc)}
    out["train_seconds"] = model.meta.get("train_seconds")
    return out


def _back_translations(bundle: Bundle, caps) -> list | None:
    by_ref = {c.ref: c for c in bundle.captions if c.source.startswith("back-translation:") and c.ref}
    backs = [by_ref.get(c.id) for c in caps]
    return backs if all(b is not None for b in backs) else None


def evaluate_with_detectors(model: TrainedModel, bench=None, noisy_bench=None, mrv_languages: Sequence[str] | None = None) -> dict:
    """:func:`evaluate_model` on ``bench``'s test split (default the model's workbench), plus, when
    ``noisy_bench`` is given and its training pairs carry noise labels, every noise detector's report
    (``"detectors"``, ``"noisy_fraction"``) and for a method with uncertainty the flat ``"noise"`` cell
    the tables read. ``noisy_bench``: the workbench of the bundle the model trained on, with its noise
    (:func:`ccr_core.training.workbench.with_noise`); it may be ``bench`` itself. ``{}`` without test items."""
    model = model.on(bench) if bench is not None else model
    result = evaluate_model(model, mrv_languages=mrv_languages)
    if not result:  # no test items of the kind: nothing to add to
        return result
    found = training_pair_detectors(model, noisy_bench) if noisy_bench is not None else None
    if found:
        detectors = found["detectors"]
        result["detectors"], result["noisy_fraction"] = detectors, found["noisy_fraction"]
        if "uncertainty" in detectors:
            result["noise"] = {"auroc": detectors["uncertainty"]["auroc"], "auroc_mismatch": detectors["mismatch"]["auroc"],
                               "auprc_mismatch": detectors["mismatch"]["auprc"], "noisy_fraction": found["noisy_fraction"]}
    return result
