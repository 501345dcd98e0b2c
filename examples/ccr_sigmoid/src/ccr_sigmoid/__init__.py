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

from ccr_core.methods.base import METHODS, CCRMethod, TextBatch
from ccr_core.methods.heads import EncoderConfig, encode_batch_visual, make_text_head, make_visual_head


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
class SigmoidConfig(EncoderConfig):
    scale_init: float = 10.0  # SigLIP's initial t (learned as log t)
    bias_init: float = -10.0  # SigLIP's initial b: at the start every pair is taken for a non-match


@METHODS.register("sigmoid")
class SigmoidCCR(CCRMethod):
    """The baseline's text head and visual tower (or the floor's linear heads with ``head="linear"``), trained on
    (v, en) and (v, t) with :func:`sigmoid_pair_loss`; the target-language terms are averaged, as in the baseline."""

    name = "sigmoid"
    config_class = SigmoidConfig

    def __init__(self, config: SigmoidConfig, text_top=None):
        super().__init__(config, text_top)
        self.text_head = make_text_head(config)
        self.visual = make_visual_head(config)
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.scale_init)))
        self.bias = nn.Parameter(torch.tensor(config.bias_init))

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        return self.text_head(self.backbone_states(text), text.mask)  # (B, E)

    def encode_visual(self, visual, frames=None, frame_mask=None) -> torch.Tensor:
        return self.visual(visual, frames, frame_mask)  # (B, E)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        v = encode_batch_visual(self, batch)  # (B, E)
        scale = self.log_scale.exp()

        def pair(lang: str) -> torch.Tensor:
            return sigmoid_pair_loss(v, self.encode_text(batch["text"][lang], lang), scale, self.bias)

        out = {"visual_source": pair("en")}
        targets = batch.get("targets", [])
        out["visual_target"] = torch.stack([pair(lang) for lang in targets]).mean() if targets else v.new_zeros(())
        return {"loss": out["visual_source"] + out["visual_target"], **out, "scale": scale.detach()}
