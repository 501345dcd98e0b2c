"""Evaluate trained methods on a bundle's test split: R@K / SumR per language and caption source,
MRV across languages, NRCCR's fused scoring where back-translated queries exist, and the noise AUROC
of per-pair uncertainty where training noise labels exist. Writes JSON and a markdown table.

Query groups: a language's test captions are split by what they are -- ``zh`` (human-written),
``zh/human-translation`` (e.g. Flickr8k-CN's human-translated test captions), ``zh/mt`` -- and each
group is evaluated over the test items that have a caption in it (for Flickr8k-ML's de/fr/cs that
is the test images with Multi30K captions). MRV uses one caption (the first) per image per language
over the images captioned in every one of those languages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ccr_core.data.bundle import Bundle
from ccr_core.encoding import TrainedModel, embed_captions, embed_items  # also importable from here, their old home
from ccr_core.eval import metrics
from ccr_core.training.checkpoint import check_compatible, load_weights, verify_checkpoint

NATIVE_SOURCES = ("human", "generated")


def load_trained(folder: str | Path, bench, name: str | None = None) -> TrainedModel:
    """Load a checkpoint folder (or a run folder's ``best/``) for the backbones in ``bench``."""
    import ccr_core.methods  # noqa: F401  (registers every method)
    from ccr_core.methods.base import build_method
    from ccr_core.training.image_cache import ImageTop
    from ccr_core.training.text_cache import TextTop

    folder = Path(folder)
    if not (folder / "manifest.json").exists() and (folder / "best" / "manifest.json").exists():
        folder = folder / "best"
    meta = verify_checkpoint(folder)
    check_compatible(meta, visual=bench.visual_identity, text=bench.text_identity, where=str(folder))
    try:
        method = build_method(meta["method"], meta.get("method_config", {}))
    except (ValueError, TypeError, KeyError) as exc:
        from ccr_core.training.checkpoint import CheckpointError

        raise CheckpointError(f"{folder}: config.json does not describe a usable {meta['method']!r} method ({str(exc)[:300]})") from None
    if meta.get("text_trainable_layers", 0) > 0:
        method.text_top = TextTop(bench.text_encoder, meta["text_trainable_layers"])
    image_blocks = int(meta.get("visual_trainable_blocks", 0) or 0)
    if image_blocks > 0:  # the trained copy of the top blocks is in the weights; the frozen rest comes from the bench
        if getattr(bench, "visual_backbone", None) is None:
            from ccr_core.training.checkpoint import CheckpointError

            raise CheckpointError(f"{folder}: fine-tunes {image_blocks} image blocks, but the workbench has no visual backbone to run below them")
        try:
            method.visual_top = ImageTop(bench.visual_backbone, image_blocks)
        except ValueError as exc:
            from ccr_core.training.checkpoint import CheckpointError

            raise CheckpointError(f"{folder}: config.json asks for {image_blocks} fine-tuned image blocks ({exc})") from None
        bench.feature_maps(image_blocks)  # computed once per workspace, then read from disk
    state = load_weights(folder)
    try:
        method.load_state_dict(state)
    except RuntimeError as exc:
        from ccr_core.training.checkpoint import CheckpointError

        raise CheckpointError(f"{folder}: weights do not fit method {meta['method']!r} ({str(exc)[:300]})") from None
    method.eval()
    return TrainedModel(name or meta["method"], method, meta, folder)


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


def _select(caps, sources):
    return [c for c in caps if any(c.source == s or (s.endswith(":") and c.source.startswith(s)) for s in sources)]


def group_queries(bundle: Bundle, split: str, position: dict[str, int]):
    """Per query group of the split (:func:`query_groups`) with captions of the items in ``position`` (item id ->
    row of the image embeddings): ``(group, lang, captions, gallery, c2i)`` -- ``gallery`` the sorted rows of the
    items captioned in this group, ``c2i`` each caption's column in that gallery."""
    for group, (lang, sources) in query_groups(bundle, split).items():
        caps = [c for c in _select(bundle.captions_in(split, lang), sources) if c.item in position]
        if not caps:
            continue
        gallery = sorted({position[c.item] for c in caps})  # items captioned in this group
        remap = {g: k for k, g in enumerate(gallery)}
        yield group, lang, caps, gallery, np.array([remap[position[c.item]] for c in caps])


def evaluate_model(model: TrainedModel, bench, split: str = "test", kind: str = "image", mrv_languages: Sequence[str] | None = None) -> dict:
    """All test numbers of one model on ``bench.bundle`` (items of one ``kind``)."""
    bundle = bench.bundle
    items = bundle.items_in(split, kind)
    if not items:
        return {}
    image_emb = embed_items(model, bench, items)  # (N, E)
    position = {it.id: i for i, it in enumerate(items)}
    out: dict = {"model": model.name, "method": model.meta["method"], "split": split, "kind": kind, "groups": {}}
    sims_for_mrv, c2i_for_mrv = {}, {}
    for group, lang, caps, gallery, c2i in group_queries(bundle, split, position):
        text_emb = embed_captions(model, bench, caps, lang)
        sim = (text_emb @ image_emb[gallery].T).numpy()  # (M, N_group)
        report = metrics.retrieval_report(sim, c2i)
        backs = _back_translations(bundle, caps)
        if backs is not None:
            back_emb = embed_captions(model, bench, backs, "en")
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


@torch.no_grad()
def every_training_pair_uncertainty(model: TrainedModel, bench, batch_size: int = 128) -> dict | None:
    """Per-pair uncertainty of every (image, English, target) training pair, labelled or not, computed
    in deterministic batches as in training (the batch matters: UML's evidence is batch-relative).
    Returns ``{"caption_ids", "item_ids", "langs", "scores" (P,) u, "mismatch" (P,) or None,
    "detectors": {name: (P,)}}`` (mismatch: the noise score UML trains with, see ``UML.mismatch``;
    detectors: those and the trivial ones, see :mod:`ccr_core.eval.detectors`), or None when the method
    has no uncertainty. The noise audit tab and :func:`training_pair_uncertainty` both read this."""
    if not hasattr(model.method, "pair_scores"):
        return None
    from ccr_core.eval.detectors import training_pair_scores

    every = training_pair_scores(model, bench, batch_size)
    return {**every, "scores": every["detectors"]["uncertainty"], "mismatch": every["detectors"]["mismatch"]}


def training_pair_detectors(model: TrainedModel, bench, batch_size: int = 128) -> dict | None:
    """Every noise detector of the model (:mod:`ccr_core.eval.detectors`: the trivial cosine and per-pair
    loss, and UML's own) on the training pairs that carry a noise label; positives are the injected
    noisy-correspondence pairs. Returns ``{"caption_ids", "labels", "kinds", "noisy_fraction",
    "scores": {name: (P,)}, "detectors": {name: {"auroc", "auprc", "precision_at_100", "precision_at_n_noisy"}}}``,
    or None without noise labels."""
    if not bench.bundle.noise:
        return None
    from ccr_core.eval.detectors import detector_report, training_pair_scores

    every = training_pair_scores(model, bench, batch_size)
    keep = [k for k, cid in enumerate(every["caption_ids"]) if cid in bench.bundle.noise]
    kinds = [bench.bundle.noise[every["caption_ids"][k]] for k in keep]
    # The injected noise is noisy correspondence; simulated MT errors are reported apart.
    noisy = np.array([k == "noisy-correspondence" for k in kinds], dtype=int)
    if not keep or len(set(noisy.tolist())) < 2:
        return None
    scores = {name: values[keep] for name, values in every["detectors"].items()}
    return {"caption_ids": [every["caption_ids"][k] for k in keep], "labels": noisy, "kinds": kinds,
            "noisy_fraction": float(noisy.mean()), "scores": scores,
            "detectors": {name: detector_report(values, noisy) for name, values in scores.items()}}


def training_pair_uncertainty(model: TrainedModel, bench, batch_size: int = 128) -> dict | None:
    """UML's uncertainty quality on the labelled training pairs (:func:`training_pair_detectors`), in the
    flat form the audit tab and reports read: scores/labels/AUROC/AUPRC/precision@100 of u, the AUROC
    against any label other than clean, the same for its mismatch score (``*_mismatch``), and every
    detector's report under ``"detectors"``. None for a method without uncertainty."""
    if not hasattr(model.method, "pair_scores"):
        return None
    found = training_pair_detectors(model, bench, batch_size)
    if found is None:
        return None
    s, m, noisy, d = found["scores"]["uncertainty"], found["scores"]["mismatch"], found["labels"], found["detectors"]
    any_error = np.array([k != "clean" for k in found["kinds"]], dtype=int)
    return {"caption_ids": found["caption_ids"], "scores": s, "labels": noisy, "kinds": found["kinds"],
            "auroc": d["uncertainty"]["auroc"], "auprc": d["uncertainty"]["auprc"], "precision_at_100": d["uncertainty"]["precision_at_100"],
            "noisy_fraction": found["noisy_fraction"],
            "auroc_any_error": metrics.auroc(s, any_error) if 0 < any_error.sum() < len(any_error) else None,
            "mismatch_scores": m, "auroc_mismatch": d["mismatch"]["auroc"], "auprc_mismatch": d["mismatch"]["auprc"],
            "precision_at_100_mismatch": d["mismatch"]["precision_at_100"], "detectors": d, "detector_scores": found["scores"]}


def markdown_table(results: list[dict], metric: str = "SumR") -> str:
    """One row per model: R@1/5/10 both directions and SumR per query group, MRV, noise AUROC, and
    training seconds -- or, when some model is evaluated on a bundle it was not trained on, the
    bundle each was trained on instead."""
    groups = sorted({g for r in results for g in r.get("groups", {})})
    foreign = any(r.get("trained_on") not in (None, r.get("evaluated_on")) for r in results)
    header = ["model"] + [f"{g} {metric}" for g in groups] + ["MRV (i2t/t2i)", "noise AUROC", "trained on" if foreign else "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        row = [r["model"]]
        for g in groups:
            rep = r.get("groups", {}).get(g)
            row.append(f"{rep[metric]:.1f}" if rep else "")
        m = r.get("mrv", {})
        row.append(f"{m['mrv_i2t']:.2f} / {m['mrv_t2i']:.2f}" if "mrv_i2t" in m else "")
        row.append(f"{r['noise']['auroc']:.3f}" if r.get("noise") else "")
        if foreign:
            row.append(str(r.get("trained_on", "")))
        else:
            row.append(f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def detector_table(results: list[dict]) -> str:
    """One row per model evaluated on noisy training pairs: every detector's AUROC / AUPRC / precision at
    the number of noisy pairs, the trivial ones (cosine, per-pair loss) first. Empty without such rows."""
    rows = [r for r in results if r.get("detectors")]
    if not rows:
        return ""
    names = [n for n in ("cosine", "pair_loss", "uncertainty", "mismatch") if any(n in r["detectors"] for r in rows)]
    labels = {"cosine": "1 − cosine (trivial)", "pair_loss": "per-pair loss (trivial)", "uncertainty": "UML u = B/S", "mismatch": "UML DECL score"}
    lines = ["Noise detectors on the injected noisy pairs (AUROC / AUPRC / precision@#noisy):", "",
             "| model | noisy share | " + " | ".join(labels[n] for n in names) + " |", "|" + "---|" * (len(names) + 2)]
    for r in rows:
        cells = [" / ".join(f"{r['detectors'][n][k]:.3f}" for k in ("auroc", "auprc", "precision_at_n_noisy")) if n in r["detectors"] else "" for n in names]
        lines.append(f"| {r['model']} | {r.get('noisy_fraction', 0):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
