"""Noise detectors on training pairs, the trivial ones beside the learned ones (docs/methods.md §8).

Every trained model gives two trivial scores per (image, target caption) training pair: ``cosine``
(1 − cos(v_i, t_i): a plain contrastive model already separates most mismatched pairs) and
``pair_loss`` (the pair's own symmetric InfoNCE loss in its batch: the small-loss criterion of NCR,
Huang et al., NeurIPS 2021). UML adds ``uncertainty`` (u = B/S, docs/methods.md) and ``mismatch`` (the DECL
score its training uses). Scores are oriented so that higher means "more likely noisy".

Pairs are scored in the deterministic batches of :func:`ccr_core.training.data.BatchSource.epoch_batches`
(seed 0), as in training, because the batch-relative scores (``pair_loss``, UML's) depend on the batch.
"""
from __future__ import annotations

import numpy as np
import torch

from ccr_core import metrics
from ccr_core.methods.losses import info_nce_per_sample
from ccr_core.training.data import BatchSource, training_examples
from ccr_core.training.inference import TrainedModel

TRIVIAL = ("cosine", "pair_loss")
DEFAULT_TEMPERATURE = 0.05  # τ of pair_loss for a method without a temperature of its own (the baseline's)


def pair_loss_temperature(method) -> float:
    """The temperature of the method's own contrastive term, or the baseline's default."""
    value = getattr(getattr(method, "config", None), "temperature", None)
    if isinstance(value, (int, float)):
        return float(value)
    learned = getattr(method, "temperature", None)  # 1-to-K's learnable τ
    return float(learned().detach()) if callable(learned) else DEFAULT_TEMPERATURE


@torch.no_grad()
def training_pair_scores(model: TrainedModel, bench=None, batch_size: int = 128) -> dict:
    """Every detector's score of every (image, English, target) training pair of the model's training set.

    Args:
        model: a loaded checkpoint (:class:`ccr_core.training.inference.TrainedModel`).
        bench: the workbench of the (possibly noisy) bundle the pairs come from; default the model's.
        batch_size: pairs per batch (the training batch size: batch-relative scores depend on it).

    Returns:
        ``{"caption_ids", "item_ids", "langs", "detectors": {name: (P,) float64}}``; the detectors are
        ``cosine`` and ``pair_loss`` for every model, plus ``uncertainty`` and ``mismatch`` for UML.
    """
    bench = bench if bench is not None else model.bench
    method = model.method
    method.eval()
    cfg = model.meta.get("train_config", {})
    examples = training_examples(bench.bundle, "train", cfg.get("target_langs"), cfg.get("target_sources", ("mt:", "human-translation")))
    top = getattr(method, "visual_top", None)  # a trained image top runs on cached feature maps
    maps = bench.feature_maps(top.trainable_blocks) if top is not None else None
    source = BatchSource(examples, bench.features, bench.text_states, bench.bundle, maps)
    tau = pair_loss_temperature(method)
    learned = hasattr(method, "embedding_pair_scores")  # UML: u and its DECL score from the same embeddings
    names = TRIVIAL + (("uncertainty", "mismatch") if learned else ())
    out: dict = {"caption_ids": [], "item_ids": [], "langs": [], "detectors": {name: [] for name in names}}
    for b, indices in enumerate(source.epoch_batches(batch_size, seed=0, drop_last=False)):
        batch = method.with_visual_top(source.make_batch(indices, seed=b, flip=False))
        v = method.encode_visual(batch["visual"], batch.get("frames"), batch.get("frame_mask"))  # (B, E)
        s = method.encode_text(batch["text"]["en"], "en") if learned else None  # (B, E) UML's English view
        for lang in batch["targets"]:
            t = method.encode_text(batch["text"][lang], lang)  # (B, E)
            scores = out["detectors"]
            scores["cosine"] += (1.0 - (v * t).sum(dim=1)).tolist()
            scores["pair_loss"] += info_nce_per_sample(v, t, tau).tolist()
            if learned:
                pair = method.embedding_pair_scores(v, s, t)
                scores["uncertainty"] += pair["uncertainty"].tolist()
                scores["mismatch"] += pair["mismatch"].tolist()
            out["caption_ids"] += batch["caption_ids"][lang]
            out["item_ids"] += batch["item_ids"]
            out["langs"] += [lang] * len(indices)
    out["detectors"] = {name: np.asarray(values, dtype=np.float64) for name, values in out["detectors"].items()}
    return out


def detector_report(scores: np.ndarray, labels: np.ndarray) -> dict:
    """AUROC, AUPRC, precision@100 and precision@(number of noisy pairs) of one detector.

    Args:
        scores: (P,) scores, higher = more likely noisy.
        labels: (P,) 1 for a noisy pair, 0 for a clean one (both present).
    """
    positives = int(labels.sum())
    return {"auroc": metrics.auroc(scores, labels), "auprc": metrics.auprc(scores, labels),
            "precision_at_100": metrics.precision_at_k(scores, labels, min(100, len(scores))),
            "precision_at_n_noisy": metrics.precision_at_k(scores, labels, max(positives, 1))}


@torch.no_grad()
def every_training_pair_uncertainty(model: TrainedModel, bench=None, batch_size: int = 128) -> dict | None:
    """Per-pair uncertainty of every (image, English, target) training pair, labelled or not, computed
    in deterministic batches as in training (the batch matters: UML's evidence is batch-relative).
    Returns ``{"caption_ids", "item_ids", "langs", "scores" (P,) u, "mismatch" (P,) or None,
    "detectors": {name: (P,)}}`` (mismatch: the noise score UML trains with, see ``UML.mismatch``;
    detectors: those and the trivial ones, see :mod:`ccr_core.eval.detectors`), or None when the method
    has no uncertainty. The noise audit tab and :func:`training_pair_uncertainty` both read this."""
    if not hasattr(model.method, "pair_scores"):
        return None
    every = training_pair_scores(model, bench, batch_size)
    return {**every, "scores": every["detectors"]["uncertainty"], "mismatch": every["detectors"]["mismatch"]}


def training_pair_detectors(model: TrainedModel, bench=None, batch_size: int = 128) -> dict | None:
    """Every noise detector of the model (:mod:`ccr_core.eval.detectors`: the trivial cosine and per-pair
    loss, and UML's own) on the training pairs that carry a noise label; positives are the injected
    noisy-correspondence pairs. Returns ``{"caption_ids", "labels", "kinds", "noisy_fraction",
    "scores": {name: (P,)}, "detectors": {name: {"auroc", "auprc", "precision_at_100", "precision_at_n_noisy"}}}``,
    or None without noise labels."""
    bench = bench if bench is not None else model.bench
    if not bench.bundle.noise:
        return None
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


def training_pair_uncertainty(model: TrainedModel, bench=None, batch_size: int = 128) -> dict | None:
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
