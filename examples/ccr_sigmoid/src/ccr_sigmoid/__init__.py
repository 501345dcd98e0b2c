"""``sigmoid``: the translate-train baseline's heads trained with the pairwise sigmoid loss of SigLIP
(Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023) instead of InfoNCE.

Every (image, caption) pair of a batch is a binary problem -- matching or not -- so the loss needs no softmax
over the batch. A worked example of a CCR Lab plugin: a method outside ``ccr_core``, registered by the
entry point in this package's pyproject.toml.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ccr_core.methods.base import METHODS
from ccr_core.methods.baseline import Baseline, BaselineConfig


def sigmoid_pair_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss: ``-1/B Σ_i Σ_j log σ(z_ij (s · a_i·b_j + c))``, z = +1 for i = j, -1 otherwise.

    Args:
        a: (B, D) L2-normalised embeddings; ``a[i]`` matches ``b[i]``.
        b: (B, D) L2-normalised embeddings.
        scale: scalar s > 0 (SigLIP's t), multiplies the cosine.
        bias: scalar c, SigLIP's b (starts very negative: most pairs do not match).

    Returns:
        Scalar loss, summed over the B² pairs and divided by B.
    """
    logits = scale * (a @ b.T) + bias  # (B, B)
    signs = 2 * torch.eye(a.shape[0], dtype=logits.dtype, device=logits.device) - 1  # (B, B): +1 matching, -1 not
    return -F.logsigmoid(signs * logits).sum() / a.shape[0]


@dataclass
class SigmoidConfig(BaselineConfig):
    scale_init: float = 10.0  # SigLIP's initial t (learned as log t)
    bias_init: float = -10.0  # SigLIP's initial b: at the start every pair is taken for a non-match


@METHODS.register("sigmoid")
class SigmoidCCR(Baseline):
    """The baseline (its heads, or the floor's linear heads with ``head="linear"``; (v, en) plus the mean of the (v, t)
    terms) with :func:`sigmoid_pair_loss` in its loss hook ``pair_loss``, and SigLIP's learned scale and bias."""

    name = "sigmoid"
    config_class = SigmoidConfig
    description = "the baseline trained with SigLIP's pairwise sigmoid loss instead of InfoNCE."
    loss_keys = ("visual_source", "visual_target", "scale")

    def __init__(self, config: SigmoidConfig, text_top=None):
        super().__init__(config, text_top)
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.scale_init)))
        self.bias = nn.Parameter(torch.tensor(config.bias_init))

    def pair_loss(self, v: torch.Tensor, t: torch.Tensor, lang: str) -> torch.Tensor:
        return sigmoid_pair_loss(v, t, self.log_scale.exp(), self.bias)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        return {**super().loss(batch), "scale": self.log_scale.exp().detach()}  # the learned scale, logged
