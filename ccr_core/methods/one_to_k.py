"""1-to-K contrastive learning (KDD 2024), docs/methods.md §7: every image competes against the captions of
all K languages at once, so no language is a pivot (the image–text matching and masked-LM terms of
the paper need a fusion encoder and are left out)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ccr_core.methods import losses
from ccr_core.methods.base import METHODS, CCRMethod, TextBatch
from ccr_core.methods.heads import EncoderConfig, encode_batch_visual, make_text_head, make_visual_head


@dataclass
class OneToKConfig(EncoderConfig):
    temperature_init: float = 0.07  # learnable τ starts here (CCRK / ALBEF)
    temperature_min: float = losses.TEMPERATURE_MIN  # τ clamp, lower end (0.001 in the code)
    temperature_max: float = losses.TEMPERATURE_MAX  # τ clamp, upper end (0.5 in the code)
    # Not in the paper (an ablation): English's share of each image's positives; None = 1/K as in the
    # paper, w = English w and each of the K-1 targets (1-w)/(K-1) (a batch with no target: English 1)
    english_weight: float | None = None


@METHODS.register("one_to_k")
class OneToK(CCRMethod):
    """Text head (masked mean → mapping head) and visual tower, trained with the 1-to-K loss over the
    K = 1 + len(targets) captions of each image, laid out image-major ([en, *targets] per image);
    ``L = (L_i2t + L_t2i) / (2K)`` with a learnable temperature clamped to [0.001, 0.5]."""

    name = "one_to_k"
    label = "1-to-K"
    description = "trains every language against the same image at once, so all languages are pulled to one place."
    colour = "reddish purple"
    display_order = 60
    main = True
    loss_keys = ("one_to_k", "temperature")
    targets_per_batch = 0
    config_class = OneToKConfig

    def __init__(self, config: OneToKConfig, text_top=None):
        super().__init__(config, text_top)
        self.text_head = make_text_head(config)
        self.visual = make_visual_head(config)
        self.temperature = losses.LearnableTemperature(
            config.temperature_init, config.temperature_min, config.temperature_max
        )

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        return self.text_head(self.backbone_states(text), text.mask)  # (B, E)

    def encode_visual(self, visual, frames=None, frame_mask=None) -> torch.Tensor:
        return self.visual(visual, frames, frame_mask)  # (B, E)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        v = encode_batch_visual(self, batch)  # (B, E)
        languages = ["en", *batch.get("targets", [])]
        texts = torch.stack([self.encode_text(batch["text"][lang], lang) for lang in languages], dim=1)  # (B, K, E)
        k = len(languages)
        tau = self.temperature()  # () clamped in place to [min, max]
        weights = None
        w = self.config.english_weight
        if w is not None and k > 1:
            weights = torch.tensor([w] + [(1.0 - w) / (k - 1)] * (k - 1), dtype=v.dtype, device=v.device)  # (K,)
        one_to_k = losses.one_to_k_contrastive(v, texts.reshape(-1, texts.shape[-1]), tau, k, weights)  # texts (B*K, E)
        return {"loss": one_to_k, "one_to_k": one_to_k, "temperature": tau.detach()}
