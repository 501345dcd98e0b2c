"""The names ``ccr_core.evaluate`` used to hold, for the callers not yet switched (dashboard/world.py,
audit.py, consistency.py, experiment.py, leaderboard.py; protocol.py; experiments.py). Evaluation lives in
:mod:`ccr_core.eval`, checkpoint loading and encoding in :mod:`ccr_core.training.inference`. Delete this
module once those import from there."""
from __future__ import annotations

from ccr_core.eval.detectors import every_training_pair_uncertainty, training_pair_detectors, training_pair_uncertainty  # noqa: F401
from ccr_core.eval.retrieval import NATIVE_SOURCES, evaluate_model, group_queries, query_groups  # noqa: F401
from ccr_core.eval.tables import detector_table, markdown_table  # noqa: F401
from ccr_core.training.inference import TrainedModel, load_trained  # noqa: F401


def embed_items(model: TrainedModel, bench, items):
    """``model.on(bench).encode_items(items)``; call that instead."""
    return model.on(bench).encode_items(items)


def embed_captions(model: TrainedModel, bench, captions, lang: str):
    """``model.on(bench).encode_captions(captions, lang)``; call that instead."""
    return model.on(bench).encode_captions(captions, lang)
