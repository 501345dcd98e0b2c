"""CL2CM, cross-lingual to cross-modal knowledge transfer (AAAI 2024), as docs/methods.md §5 reads it: a
cross-lingual network (English ↔ target text) guides the cross-modal network (image ↔ text) by
relational distillation. The authors' code is not public: the losses below are our interpretation."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ccr_core.methods import losses
from ccr_core.methods.base import METHODS, CCRMethod, TextBatch
from ccr_core.methods.heads import EncoderConfig, encode_batch_visual, make_text_head, make_visual_head, masked_mean


@dataclass
class CL2CMConfig(EncoderConfig):
    temperature: float = 0.07  # [ours] τ of every InfoNCE term and of the relational distillation
    cross_lingual_weight: float = 1.0  # [ours] λ1, weight of L_CL
    transfer_weight: float = 1.0  # [ours] λ2, weight of L_KT
    word_ot_weight: float = 0.1  # [ours] weight of the word-level OT loss inside L_CL
    ot_epsilon: float = 0.05  # [ours] Sinkhorn entropic regularisation ε
    ot_iterations: int = 50  # [ours] Sinkhorn iterations


@METHODS.register("cl2cm")
class CL2CM(CCRMethod):
    """Our interpretation of CL2CM (docs/methods.md §5, marked [ours] there).

    - Cross-modal network (the only one used at test time: ``encode_text``): text head (masked mean →
      mapping head) and visual tower; ``L_CM = InfoNCE(v, s) + mean_t InfoNCE(v, t)``.
    - Cross-lingual network, its own head over the same backbone states: a per-token Linear into the
      joint width; word tokens are its outputs, the sentence embedding their L2-normalised masked mean.
      ``L_CL = mean_t [InfoNCE(s, t) + 0.1 · ⟨T*, C⟩]`` with C = 1 − cos(tokens of s, tokens of t) and
      T* the Sinkhorn plan (ε 0.05, 50 iterations, uniform over non-padding tokens, plan detached).
    - ``L_KT = mean_t KL(P^CL ‖ P^CM)`` over rows and columns, P^CL = softmax(s·tᵀ/τ) of the
      cross-lingual network (stop-gradient), P^CM = softmax(v·tᵀ/τ) of the cross-modal network.
    - ``L = L_CM + λ1·L_CL + λ2·L_KT``. Target-language terms are averaged over the batch's targets.

    Sharing the word and sentence levels in one token projection is our choice: the paper's
    "multi-level alignment" is one network aligned at two granularities.
    """

    name = "cl2cm"
    label = "CL2CM"
    description = ("first aligns the languages with each other (text to text), then passes that knowledge on to "
                   "text to image.")
    colour = "bluish green"
    display_order = 40
    main = True
    loss_keys = ("cross_modal", "cross_lingual", "sentence_alignment", "word_alignment", "knowledge_transfer")
    config_class = CL2CMConfig

    def __init__(self, config: CL2CMConfig, text_top=None):
        super().__init__(config, text_top)
        self.text_head = make_text_head(config)  # cross-modal
        self.visual = make_visual_head(config)
        self.lingual_tokens = nn.Linear(config.text_dim, config.embed_dim)  # cross-lingual network

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        return self.text_head(self.backbone_states(text), text.mask)  # (B, E)

    def encode_visual(self, visual, frames=None, frame_mask=None) -> torch.Tensor:
        return self.visual(visual, frames, frame_mask)  # (B, E)

    def _both_networks(self, text: TextBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-modal sentence (B, E), cross-lingual sentence (B, E) and tokens (B, L, E)."""
        states = self.backbone_states(text)  # (B, L, Dt), shared by both networks
        tokens = self.lingual_tokens(states)  # (B, L, E)
        lingual = F.normalize(masked_mean(tokens, text.mask), dim=-1)  # (B, E)
        return self.text_head(states, text.mask), lingual, tokens

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        v = encode_batch_visual(self, batch)  # (B, E)
        source = batch["text"]["en"]
        s_cm, s_cl, s_tokens = self._both_networks(source)
        visual_source = losses.info_nce(v, s_cm, c.temperature)

        targets = list(batch.get("targets", []))
        nets = [self._both_networks(batch["text"][lang]) for lang in targets]  # (t_cm, t_cl, t_tokens) per target
        if targets:
            # the word-level OT of every target in one batched Sinkhorn (padded to the longest target)
            length = max(int(batch["text"][lang].mask.shape[1]) for lang in targets)
            t_tokens = torch.cat([F.pad(net[2], (0, 0, 0, length - net[2].shape[1])) for net in nets])  # (n*B, Q, E)
            t_masks = torch.cat([F.pad(batch["text"][lang].mask, (0, length - batch["text"][lang].mask.shape[1])) for lang in targets])
            n = len(targets)
            words = losses.word_ot_loss(s_tokens.repeat(n, 1, 1), source.mask.repeat(n, 1), t_tokens, t_masks,
                                        c.ot_epsilon, c.ot_iterations, reduction="none").view(n, -1).mean(dim=1)  # (n,)
        per_target = []  # rows: (cross-modal v-t, sentence, word, transfer)
        for j, (t_cm, t_cl, _) in enumerate(nets):
            per_target.append(
                torch.stack(
                    [
                        losses.info_nce(v, t_cm, c.temperature),
                        losses.info_nce(s_cl, t_cl, c.temperature),
                        words[j],
                        losses.relational_distillation(s_cl @ t_cl.T, v @ t_cm.T, c.temperature),  # (B, B) each
                    ]
                )
            )
        if per_target:
            visual_target, sentence, word, transfer = torch.stack(per_target).mean(dim=0)
        else:
            visual_target = sentence = word = transfer = v.new_zeros(())
        cross_modal = visual_source + visual_target
        cross_lingual = sentence + c.word_ot_weight * word
        total = cross_modal + c.cross_lingual_weight * cross_lingual + c.transfer_weight * transfer
        return {
            "loss": total,
            "cross_modal": cross_modal,
            "cross_lingual": cross_lingual,
            "sentence_alignment": sentence,
            "word_alignment": word,
            "knowledge_transfer": transfer,
        }
