"""``small_loss``: the baseline trained on its small-loss pairs only. In each batch and each target language the 30%
of (image, machine-translated caption) pairs with the highest InfoNCE loss are dropped, and the loss is the mean over
the rest: a noisy translation, attached to the wrong image, tends to have a high loss (the small-loss criterion of
co-teaching and NCR). English pairs, written by people, are all kept.

A CCR Lab plugin that only changes the loss: the baseline's loss hook ``pair_loss`` plus a registration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ccr_core.methods import losses
from ccr_core.methods.base import METHODS
from ccr_core.methods.baseline import Baseline, BaselineConfig


@dataclass
class SmallLossConfig(BaselineConfig):
    keep: float = 0.7  # share of each target language's pairs trained on per batch: the lowest-loss ones


@METHODS.register("small_loss")
class SmallLoss(Baseline):
    name = "small_loss"
    config_class = SmallLossConfig
    description = "the baseline trained, in each batch and target language, on its 70% lowest-loss pairs only."
    loss_keys = ("visual_source", "visual_target")

    def __init__(self, config: SmallLossConfig, text_top=None):
        super().__init__(config, text_top)
        if config.loss_kind != "infonce" or not 0 < config.keep <= 1:
            raise ValueError(f"small_loss ranks pairs by InfoNCE and keeps a share in (0, 1]: got {config.loss_kind!r}, {config.keep}")

    def pair_loss(self, v: torch.Tensor, t: torch.Tensor, lang: str) -> torch.Tensor:
        per_pair = losses.info_nce_per_sample(v, t, self.config.temperature)  # (B,)
        if lang == "en":
            return per_pair.mean()
        kept = per_pair.topk(max(1, math.ceil(self.config.keep * len(per_pair))), largest=False).values  # (⌈0.7 B⌉,)
        return kept.mean()
