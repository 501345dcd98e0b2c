"""The configuration of one training run: every field with its default and why, saved as
``train_config.json`` beside the run and inside each checkpoint's ``config.json``."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from ccr_core.methods import DEFAULT_METHOD


@dataclass
class TrainConfig:
    method: str = DEFAULT_METHOD  # a name from ccr_core.methods.METHODS
    data: str = "demo-world"  # bundle folder or workspace bundle name
    noise: float = 0.0  # fraction of training pairs whose target caption is replaced by another item's
    noise_seed: int = 0  # seed of the noise injection (independent of the training seed)
    seed: int = 0  # model initialisation and batch order
    epochs: int = 10  # upper bound; early stopping may end sooner
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit); the Experiment tab uses it
    eval_every: int = 0  # a learning-curve point (validation SumR per language) every this many steps and at max_steps (0: none)
    batch_size: int = 128  # NRCCR's published batch size
    accumulate: int = 1  # micro-batches per optimiser step (a single-process stand-in for DDP)
    targets_per_batch: int = 0  # target languages per batch, drawn at random (0: all; 1-to-K always uses all)
    lr: float = 1e-4  # Adam, NRCCR's published rate
    lr_decay: float = 0.99  # per epoch
    halve_after: int = 3  # epochs without improvement before the learning rate halves
    patience: int = 10  # epochs without improvement before stopping
    grad_clip: float = 2.0  # gradient-norm clip
    text_backbone: str = "e5-small"
    trainable_layers: int = 0  # top text-backbone layers to fine-tune (0: frozen, cached once)
    trainable_image_blocks: int = 0  # last EfficientNet-Lite0 blocks (+ head conv) to fine-tune over cached maps (0: frozen; 16: all)
    backbone_lr: float = 0.0  # learning rate of the fine-tuned backbone tops (0: the same as lr)
    text_prefix: str = "query: "  # e5's prefix for short texts
    visual_backbone: str = "efficientnet-lite0"
    target_langs: list[str] | None = None  # None: every language with training translations
    target_sources: list[str] = field(default_factory=lambda: ["mt:", "human-translation"])
    select_lang: str | None = None  # validation language for model selection (default: first target)
    threads: int = 0  # torch CPU threads (0: torch's default)
    device: str = "auto"  # "auto": this process's GPU (cuda:LOCAL_RANK) when CUDA is present, else "cpu"; or "cpu", "cuda", "cuda:1"
    method_config: dict = field(default_factory=dict)  # overrides of the method's own config fields

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def apply_overrides(self, pairs: list[str]) -> None:
        """``key=value`` pairs; keys not in TrainConfig go to ``method_config``. Values parse as JSON when they can."""
        known = {f.name for f in fields(self)}
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"expected key=value, got {pair!r}")
            key, raw = pair.split("=", 1)
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            if key in known:
                current = getattr(self, key)
                if isinstance(current, (int, float)) and not isinstance(current, bool) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ValueError(f"{key}={raw}: {key} must be a number (like {current!r})")
                setattr(self, key, value)
            else:
                self.method_config[key] = value


@dataclass(frozen=True)
class BackboneConfig:
    """What a workbench's caches are computed with: models that agree on it share one workbench (one
    feature cache, one text-state cache), whatever their method."""

    text_backbone: str = "e5-small"
    visual_backbone: str = "efficientnet-lite0"
    text_trainable_layers: int = 0  # the text-state cache stops below the fine-tuned top layers
    text_prefix: str = "query: "

    @classmethod
    def of_run(cls, cfg: TrainConfig) -> "BackboneConfig":
        return cls(cfg.text_backbone, cfg.visual_backbone, int(cfg.trainable_layers or 0), cfg.text_prefix)

    @classmethod
    def of_checkpoint(cls, meta: dict) -> "BackboneConfig":
        """From a checkpoint's ``config.json`` (its own fields first, then its training config's)."""
        cfg = meta.get("train_config", {})
        return cls(cfg.get("text_backbone", "e5-small"), cfg.get("visual_backbone", "efficientnet-lite0"),
                   int(meta.get("text_trainable_layers", cfg.get("trainable_layers", 0)) or 0),
                   meta.get("text_prefix", cfg.get("text_prefix", "query: ")))

    def train_config(self, **fields_) -> TrainConfig:
        """A training config with these backbones (``fields_``: any other TrainConfig fields)."""
        return TrainConfig(text_backbone=self.text_backbone, visual_backbone=self.visual_backbone,
                           trainable_layers=self.text_trainable_layers, text_prefix=self.text_prefix, **fields_)
