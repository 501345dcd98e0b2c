"""Translate-train contrastive baseline (docs/methods.md §3), and its English-only variant ``baseline-en``
that is trained on (image, English) pairs only and evaluated zero-shot on the target languages."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ccr_core.methods import losses
from ccr_core.methods.base import METHODS, CCRMethod, TextBatch
from ccr_core.methods.heads import EncoderConfig, encode_batch_visual, make_text_head, make_visual_head


@dataclass
class BaselineConfig(EncoderConfig):
    # InfoNCE by default: with heads trained from scratch and small CPU batches it is better behaved
    # early in training than the hardest-negative triplet, which needs large batches and some warm-up.
    loss_kind: str = "infonce"  # "infonce" | "triplet" (VSE++ hardest negative, summed, as NRCCR)
    temperature: float = 0.05  # InfoNCE τ: a usual fixed value for retrieval fine-tuning (CLIP learns ~0.01)
    margin: float = 0.2  # triplet margin (VSE++ / NRCCR)
    train_languages: str = "all"  # "all": (v, en) and (v, t) for every target; "en": (v, en) only


@METHODS.register("baseline")
class Baseline(CCRMethod):
    """Text head (masked mean pooling → mapping head) and visual tower, trained on (v, en) and (v, t).

    ``L = L(v, en) + mean over targets t of L(v, t)``: the target terms are averaged so that a batch
    with several target languages keeps the 1:1 English/target balance of the one-target setting.
    """

    name = "baseline"
    label = "baseline"
    description = "one text encoder trained on English captions and their machine translations, no noise handling."
    colour = "blue"
    display_order = 10
    main = True
    role = "baseline"
    loss_keys = ("visual_source", "visual_target")
    config_class = BaselineConfig
    # In the grid's common setting (head="linear", InfoNCE at the floor's τ) this is the floor's model, loss and
    # initialisation: the grid runs it once, as the floor (ccr_core/study/grid.py).
    common_setting_is_floor = True

    def __init__(self, config: BaselineConfig, text_top=None):
        super().__init__(config, text_top)
        if config.loss_kind not in ("infonce", "triplet"):
            raise ValueError(f"loss_kind must be 'infonce' or 'triplet', got {config.loss_kind!r}")
        if config.train_languages not in ("all", "en"):
            raise ValueError(f"train_languages must be 'all' or 'en', got {config.train_languages!r}")
        self.text_head = make_text_head(config)
        self.visual = make_visual_head(config)

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        return self.text_head(self.backbone_states(text), text.mask)  # (B, E)

    def encode_visual(self, visual, frames=None, frame_mask=None) -> torch.Tensor:
        return self.visual(visual, frames, frame_mask)  # (B, E)

    def pair_loss(self, v: torch.Tensor, t: torch.Tensor, lang: str) -> torch.Tensor:
        """The loss hook: the scalar loss of a batch's (image, caption in ``lang``) pairs, ``v`` (B, E) and ``t`` (B, E)
        L2-normalised, ``v[i]`` matching ``t[i]``. ``loss()`` sums the English term and the mean of the target terms, so
        a method that only changes this loss subclasses the baseline, overrides this function and registers itself
        (examples/ccr_sigmoid, examples/ccr_small_loss)."""
        if self.config.loss_kind == "infonce":
            return losses.info_nce(v, t, self.config.temperature)
        return losses.triplet_hardest_negative(v, t, self.config.margin, reduction="sum")

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        v = encode_batch_visual(self, batch)  # (B, E)
        out = {"visual_source": self.pair_loss(v, self.encode_text(batch["text"]["en"], "en"), "en")}
        total = out["visual_source"]
        if self.config.train_languages == "all":
            targets = batch.get("targets", [])
            if targets:
                out["visual_target"] = torch.stack(
                    [self.pair_loss(v, self.encode_text(batch["text"][lang], lang), lang) for lang in targets]
                ).mean()
            else:
                out["visual_target"] = v.new_zeros(())
            total = total + out["visual_target"]
        return {"loss": total, **out}


@dataclass
class EnglishOnlyBaselineConfig(BaselineConfig):
    train_languages: str = "en"  # English-only training; target languages are evaluated zero-shot


@METHODS.register("baseline-en")
class EnglishOnlyBaseline(Baseline):
    """The baseline trained on (v, en) only: shows what the multilingual backbone gives for free."""

    name = "baseline-en"
    label = "baseline-en"
    description = ("the baseline trained on English captions only; other languages work only through the "
                   "multilingual text encoder.")
    colour = "sky blue"
    display_order = 20
    main = False
    role = ""
    loss_keys = ("visual_source",)
    config_class = EnglishOnlyBaselineConfig
