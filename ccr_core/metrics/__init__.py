"""Metrics as pure functions over similarity matrices and score vectors (docs/methods.md, section 2).

Below training and evaluation, so both use them: :mod:`~ccr_core.metrics.retrieval` (ranks, R@K, reports,
fusion), :mod:`~ccr_core.metrics.rank_variance` (rank variance across languages) and :mod:`~ccr_core.metrics.detection`
(AUROC, AUPRC, precision@k of a noise score). Every public name is importable from here.
"""
from ccr_core.metrics.detection import auprc, auroc, pr_curve, precision_at_k, roc_curve
from ccr_core.metrics.rank_variance import mrv, mrv_report, rank_table_image_to_text, rank_table_text_to_image
from ccr_core.metrics.retrieval import (fuse_similarities, image_to_text_ranks, median_rank, minmax_normalise, recall_at_k,
                                        retrieval_ranks, retrieval_report, text_to_image_ranks)

__all__ = [
    "text_to_image_ranks",
    "image_to_text_ranks",
    "retrieval_ranks",
    "recall_at_k",
    "median_rank",
    "retrieval_report",
    "rank_table_text_to_image",
    "rank_table_image_to_text",
    "mrv",
    "mrv_report",
    "minmax_normalise",
    "fuse_similarities",
    "roc_curve",
    "pr_curve",
    "auroc",
    "auprc",
    "precision_at_k",
]
