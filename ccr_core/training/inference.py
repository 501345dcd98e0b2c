"""A trained model ready to encode: a checkpoint loaded onto the workbench of its backbones.

The one inference path of the library. Evaluation, benchmarks, experiments, the command line and
the dashboard load a checkpoint with :func:`load_trained` and encode through the returned
:class:`TrainedModel`: bundle items (:meth:`~TrainedModel.encode_items`), bundle captions
(:meth:`~TrainedModel.encode_captions`) and free-typed text (:meth:`~TrainedModel.encode_texts`).
Items and captions go through :mod:`ccr_core.encoding`, as training's validation does.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

import ccr_core.methods  # noqa: F401  (registers every built-in method, so build_method knows the checkpoint's)
from ccr_core.devices import module_device
from ccr_core.encoding import encode_captions, encode_items
from ccr_core.methods.base import TextBatch, build_method
from ccr_core.training.checkpoint import CheckpointError, check_compatible, load_weights, verify_checkpoint
from ccr_core.training.config import BackboneConfig
from ccr_core.training.text_cache import frozen_states
from ccr_core.training.workbench import attach_backbone_tops


@dataclass
class TrainedModel:
    """A loaded checkpoint and the workbench it encodes with (``bench``: a
    :class:`ccr_core.training.workbench.Workbench` whose backbones match the checkpoint's)."""

    name: str  # display name, e.g. "nrccr" or "nrccr@noise0.4"
    method: torch.nn.Module  # in eval mode
    meta: dict  # the checkpoint's config.json
    folder: Path
    bench: object = None

    def on(self, bench) -> "TrainedModel":
        """The same weights over another workbench with the same caches (a noisy or reduced bundle)."""
        return replace(self, bench=bench)

    @property
    def backbones(self) -> BackboneConfig:
        """The backbones, fine-tuned text layers and prefix it was trained with (models that agree share a workbench)."""
        return BackboneConfig.of_checkpoint(self.meta)

    def encode_items(self, items) -> torch.Tensor:
        """(N, E) embeddings of bundle items (images, videos) from the workbench's caches."""
        return encode_items(self.method, self.bench, items)

    def encode_captions(self, captions, lang: str) -> torch.Tensor:
        """(M, E) embeddings of bundle captions in ``lang`` from the workbench's text-state cache."""
        return encode_captions(self.method, self.bench, captions, lang)

    def text_batch(self, texts: Sequence[str]) -> TextBatch:
        """Text states of free texts as this model's text head reads them: from the workbench's text-state
        cache when every text is in it, else through the frozen text backbone (seconds for e5 on a CPU).
        Models with the same backbones, trainable layers and prefix can share one batch."""
        texts = list(texts)
        if all(t in self.bench.text_states for t in texts):
            return self.bench.text_states.batch(texts)
        states, mask = frozen_states(self.bench.text_encoder, texts, self.backbones.text_trainable_layers, self.backbones.text_prefix)
        return TextBatch(states.float(), mask)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], lang: str, batch: TextBatch | None = None) -> torch.Tensor:
        """(len(texts), E) embeddings of free-typed ``texts`` in ``lang``; ``batch``: their
        :meth:`text_batch` when already computed (for another model of the same text configuration)."""
        batch = batch if batch is not None else self.text_batch(texts)
        return self.method.encode_text(batch.to(module_device(self.method)), lang).cpu()


def load_trained(folder: str | Path, bench, name: str | None = None) -> TrainedModel:
    """Load a checkpoint folder (or a run folder's ``best/``) onto ``bench``.

    Raises:
        CheckpointError: the folder is incomplete or altered, was trained on other backbones, or its
            config or weights do not describe a usable method.
    """
    folder = Path(folder)
    if not (folder / "manifest.json").exists() and (folder / "best" / "manifest.json").exists():
        folder = folder / "best"
    meta = verify_checkpoint(folder)
    check_compatible(meta, visual=bench.visual_identity, text=bench.text_identity, where=str(folder))
    try:
        method = build_method(meta["method"], meta.get("method_config", {}))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: config.json does not describe a usable {meta['method']!r} method ({str(exc)[:300]})") from None
    text_layers, image_blocks = BackboneConfig.of_checkpoint(meta).text_trainable_layers, int(meta.get("visual_trainable_blocks", 0) or 0)
    try:  # the trained copy of the top layers and blocks is in the weights; the frozen rest comes from the bench
        attach_backbone_tops(method, bench, text_layers, image_blocks)
    except ValueError as exc:
        raise CheckpointError(f"{folder}: config.json asks for {text_layers} fine-tuned text layers and {image_blocks} image blocks ({exc})") from None
    if image_blocks > 0:
        bench.feature_maps(image_blocks)  # computed once per workspace, then read from disk
    state = load_weights(folder)
    try:
        method.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: weights do not fit method {meta['method']!r} ({str(exc)[:300]})") from None
    method.eval()
    return TrainedModel(name or meta["method"], method, meta, folder, bench)
