"""How well a score detects noisy training pairs (label 1 = noisy, higher score = more likely noisy):
ROC and precision-recall curves, their areas, and precision among the top k.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ccr_core.metrics.retrieval import _to_numpy

__all__ = ["roc_curve", "pr_curve", "auroc", "auprc", "precision_at_k"]

# --------------------------------------------------------------------------------------------------
# quality of a noise / uncertainty score (label 1 = noisy, higher score = more likely noisy)


def _check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = _to_numpy(scores).astype(np.float64).ravel()
    labels = _to_numpy(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.size} and {labels.size}")
    if scores.size == 0:
        raise ValueError("scores is empty")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (clean) or 1 (noisy)")
    return scores, labels.astype(bool)


def _curve_counts(scores: np.ndarray, labels: np.ndarray):
    """Cumulative true and false positives at each distinct threshold, highest threshold first."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]  # (n,) descending
    sorted_labels = labels[order]
    last_of_group = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), scores.size - 1]
    true_pos = np.cumsum(sorted_labels)[last_of_group]  # (n_thresholds,)
    false_pos = last_of_group + 1 - true_pos
    return true_pos, false_pos, sorted_scores[last_of_group]


def roc_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve for detecting noisy pairs (sklearn's ``roc_curve`` with
    ``drop_intermediate=False``).

    One point per distinct score, predicting "noisy" for scores >= threshold; tied scores move
    together, which is what gives tied pairs half credit in :func:`auroc`.

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; both classes must occur.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(n_distinct + 1,)``, starting at (0, 0) with threshold
        ``+inf`` and thresholds decreasing.

    Example:
        >>> fpr, tpr, thresholds = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    scores, labels = _check_scores_labels(scores, labels)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both noisy (1) and clean (0) labels")
    true_pos, false_pos, thresholds = _curve_counts(scores, labels)
    fpr = np.r_[0.0, false_pos / n_neg]
    tpr = np.r_[0.0, true_pos / n_pos]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the probability that a random noisy pair scores higher than a
    random clean one, ties counting one half (average ranks, as sklearn's ``roc_auc_score``).

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; both classes must occur.

    Returns:
        AUROC in [0, 1] as a Python float; 0.5 for uninformative (e.g. all-tied) scores.

    Example:
        >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    scores, labels = _check_scores_labels(scores, labels)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both noisy (1) and clean (0) labels")
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]) + 1]
    ends = np.r_[starts[1:], scores.size]
    average_rank = (starts + 1 + ends) / 2.0  # 1-based ranks starts+1 .. ends
    ranks = np.empty(scores.size)
    ranks[order] = np.repeat(average_rank, ends - starts)
    u_statistic = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def pr_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve for detecting noisy pairs (sklearn 1.9's ``precision_recall_curve``).

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; at least one noisy.

    Returns:
        ``(precision, recall, thresholds)``: precision and recall ``(n_distinct + 1,)`` with
        recall decreasing and a final point (precision 1, recall 0) that has no threshold;
        thresholds ``(n_distinct,)`` increasing.

    Example:
        >>> precision, recall, thresholds = pr_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        >>> precision.round(3).tolist(), recall.tolist()
        ([0.5, 0.667, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, 0.0])
    """
    scores, labels = _check_scores_labels(scores, labels)
    if not labels.any():
        raise ValueError("a precision-recall curve needs at least one noisy (1) label")
    true_pos, false_pos, thresholds = _curve_counts(scores, labels)
    precision = true_pos / (true_pos + false_pos)  # never 0/0: each threshold predicts >= 1
    recall = true_pos / true_pos[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def auprc(scores: Any, labels: Any) -> float:
    """Average precision (sklearn's ``average_precision_score``): the step-wise sum
    ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds, with no interpolation.

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; at least one noisy.

    Returns:
        Average precision in [0, 1] as a Python float; equals the noisy fraction for all-tied
        scores.

    Example:
        >>> round(auprc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 4)
        0.8333
    """
    precision, recall, _ = pr_curve(scores, labels)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def precision_at_k(scores: Any, labels: Any, k: int) -> float:
    """Fraction of noisy pairs among the ``k`` highest-scored ones.

    Tie rule at the cut-off: stable sort by descending score, ties broken by ascending index, so
    among equal scores the earlier pairs are taken.

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean.
        k: how many top-scored pairs to inspect, 1 <= k <= n.

    Returns:
        Precision@k in [0, 1] as a Python float.

    Example:
        >>> precision_at_k([0.9, 0.2, 0.7, 0.7], [1, 1, 0, 1], k=3)
        0.6666666666666666
    """
    scores, labels = _check_scores_labels(scores, labels)
    if not 1 <= k <= scores.size:
        raise ValueError(f"k must lie in [1, {scores.size}], got {k}")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].sum()) / k
