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

from ccr_core.eval import metrics

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
def training_pair_scores(model, bench, batch_size: int = 128) -> dict:
    """Every detector's score of every (image, English, target) training pair of the model's training set.

    Args:
        model: a :class:`ccr_core.evaluate.TrainedModel`.
        bench: the workbench of the (possibly noisy) bundle the pairs come from.
        batch_size: pairs per batch (the training batch size: batch-relative scores depend on it).

    Returns:
        ``{"caption_ids", "item_ids", "langs", "detectors": {name: (P,) float64}}``; the detectors are
        ``cosine`` and ``pair_loss`` for every model, plus ``uncertainty`` and ``mismatch`` for UML.
    """
    from ccr_core.methods.losses import info_nce_per_sample
    from ccr_core.training.data import BatchSource, training_examples

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
