"""The quality floor: the simplest model on the shared backbones (issue: "one linear map on each
side"). Frozen e5 sentence embeddings (mean over all tokens, L2-normalised -- e5's own pooling) and
frozen visual features, each through ONE linear map, trained with symmetric InfoNCE on (v, en) and
(v, t). Any method worth its cost must clearly beat it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ccr_core.methods import losses
from ccr_core.methods.base import METHODS, CCRMethod, TextBatch
from ccr_core.methods.heads import EncoderConfig, masked_mean


@dataclass
class FloorConfig(EncoderConfig):  # shares the common fields; uses only the dims
    temperature: float = 0.05  # fixed InfoNCE temperature, as the baseline


@METHODS.register("floor")
class LinearFloor(CCRMethod):
    """``t = W_t · normalise(mean_tokens(states))``, ``v = W_v · features``; both L2-normalised."""

    name = "floor"
    label = "floor"
    description = ("the simplest model -- the frozen image and text encoders, each followed by one linear map, "
                   "trained on English captions and their machine translations. Every method should beat it.")
    colour = "grey"
    display_order = 0
    main = True
    role = "reference"
    loss_keys = ("visual_source", "visual_target")
    config_class = FloorConfig

    def __init__(self, config: FloorConfig, text_top=None):
        super().__init__(config, text_top)
        self.text_map = nn.Linear(config.text_dim, config.embed_dim)
        self.visual_map = nn.Linear(config.visual_dim, config.embed_dim)

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        sentence = F.normalize(masked_mean(self.backbone_states(text), text.mask), dim=-1)  # (B, Dt): e5's embedding
        return F.normalize(self.text_map(sentence), dim=-1)  # (B, E)

    def encode_visual(self, visual, frames=None, frame_mask=None) -> torch.Tensor:
        if frames is not None:  # a video: the mean of its frame features, no temporal model
            visual = masked_mean(frames, frame_mask)  # (B, Dv)
        return F.normalize(self.visual_map(visual), dim=-1)  # (B, E)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        v = self.encode_visual(batch["visual"], batch.get("frames"), batch.get("frame_mask"))  # (B, E)
        out = {"visual_source": losses.info_nce(v, self.encode_text(batch["text"]["en"]), self.config.temperature)}
        targets = batch.get("targets", [])
        out["visual_target"] = (torch.stack([losses.info_nce(v, self.encode_text(batch["text"][t]), self.config.temperature) for t in targets]).mean()
                                if targets else v.new_zeros(()))
        return {"loss": out["visual_source"] + out["visual_target"], **out}
