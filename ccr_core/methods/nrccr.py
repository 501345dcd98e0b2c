"""NRCCR, noise-robust cross-lingual cross-modal retrieval (ACM MM 2022), as in docs/methods.md §4: one
shared text tower with a single attention layer used for every self- and cross-attention call, the
cross-attention pseudo-target as a denoised teacher, and a language discriminator on backbone outputs.

The discriminator has its own Adam (``extra_optimizers()``, for checkpointing) and its own loss,
which is not part of ``"loss"``. The trainer steps it with one call per batch, after the main backward
(``ccr_core.training.train`` does this)::

    out = model.loss(batch)
    out["loss"].backward()
    model.discriminator_step(batch)   # own forward on detached backbone outputs, backward, Adam step
    main_optimizer.step()

``out["loss"]`` never writes gradients into the discriminator (the encoder's adversarial term runs it
with detached weights) and ``discriminator_step`` leaves its gradients at None, so a main optimiser
built over all parameters still leaves the discriminator alone; ``main_parameters()`` excludes it
anyway. ``out["discriminator"]`` is the discriminator's loss on this batch before its step, for logging.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ccr_core.methods import losses
from ccr_core.methods.base import METHODS, CCRMethod, TextBatch
from ccr_core.methods.heads import (
    AttentionLayer,
    EncoderConfig,
    MappingHead,
    Packing,
    TokenProjection,
    encode_batch_visual,
    make_text_head,
    make_visual_head,
    masked_mean,
    pack_parts,
    use_fast_dropout,
)


@dataclass
class NRCCRConfig(EncoderConfig):
    margin: float = 0.2  # VSE++ hardest-negative triplet margin, summed over the batch, both directions
    target_weight: float = 0.6  # Tri(c^T, v)
    similarity_weight: float = 0.4  # L_sim, similarity-view distillation from h^C
    feature_weight: float = 0.1  # L_feat, SmoothL1 between c^T and h^C
    back_weight: float = 0.5  # Tri(c^S, c^B), back-translation consistency (0 when a batch has no "back")
    adversarial_weight: float = 0.001  # L_adv, encoder side of the language adversary
    distill_temperature: float = 0.07  # τ of L_sim
    feature_beta: float = 4.0  # SmoothL1 β of L_feat
    discriminator_lr: float = 1e-3  # the discriminator's own Adam
    discriminator_hidden: int = 0  # 0: logistic regression (the code's default, "weak"); >0: one Tanh hidden layer


@METHODS.register("nrccr")
class NRCCR(CCRMethod):
    """Shared text tower: token projection (LayerNorm → Dropout → Linear → ReLU, learned positions),
    ONE attention layer (no feed-forward) for every call, masked mean pooling, mapping head. Branches:
    c^S (English), c^T (machine translation), c^B (back-translation), and the pseudo-target
    h^C = pool([attn(q = source tokens, k = v = target tokens, no residual) ; target tokens]).

    ``L = Tri(c^S, v) + 0.6·Tri(c^T, v) + 0.4·L_sim + 0.1·L_feat + 0.5·Tri(c^S, c^B) + 0.001·L_adv``.

    Choices beyond docs/methods.md: pooling is masked (the reference code averages padding too, which makes
    an embedding depend on the batch's padding); with several target languages in a batch, each
    target-language term is averaged over the targets (back-translation over the targets that have
    one); the discriminator sees the masked mean of the backbone token states, so the adversarial
    term moves only a trainable ``text_top`` (with a fully frozen backbone it has no effect).
    """

    name = "nrccr"
    label = "NRCCR"
    description = ("learns from the machine translations while guarding against translation noise (three views of "
                   "each caption).")
    colour = "orange"
    display_order = 30
    main = True
    loss_keys = ("source", "target", "similarity_view", "feature_view", "back_translation", "back_translation_weight", "adversarial", "discriminator")
    config_class = NRCCRConfig

    def __init__(self, config: NRCCRConfig, text_top=None):
        super().__init__(config, text_top)
        c = config
        self.text_proj = TokenProjection(c.text_dim, c.hidden_dim, c.max_text_tokens, c.attention_dropout)
        self.attention = AttentionLayer(c.hidden_dim, c.num_heads, c.attention_dropout)  # shared by all calls
        self.text_mapping = MappingHead(c.hidden_dim, c.embed_dim, c.dropout)
        self.visual = make_visual_head(c)
        # Common-encoder setting (head "linear"/"mlp"): c^S, c^T, c^B come from the floor's text head; the
        # attention tower then serves only the cross-attention pseudo-target h^C (the denoised teacher).
        self.text_head = None if c.head == "native" else make_text_head(c)
        if c.discriminator_hidden > 0:
            self.discriminator = nn.Sequential(
                nn.Linear(c.text_dim, c.discriminator_hidden), nn.Tanh(), nn.Linear(c.discriminator_hidden, 1)
            )
        else:
            self.discriminator = nn.Linear(c.text_dim, 1)
        self._discriminator_optimizer: torch.optim.Optimizer | None = None
        self._pooled_of_loss: tuple[list[torch.Tensor], dict[str, torch.Tensor]] | None = None  # for discriminator_step
        for head in (self.text_proj, self.attention, self.text_mapping, self.visual):  # not a backbone top's layers
            use_fast_dropout(head)  # CPU dropout masks from dropout_mask: the same distribution, drawn ~5x faster

    # -- towers ------------------------------------------------------------------------------------
    # Every text batch of a step goes through the tower in one call on real tokens only (no padding;
    # ccr_core.methods.heads.pack_parts): the token projection and the query/key/value projections run on
    # each batch's real tokens, attention runs per batch on its own padded layout, and the cross-attention
    # pseudo-target reuses the English queries and each target's keys and values of that same call (the
    # published model computes them again per call; they are the same numbers). The tokens of the batches
    # stay separate tensors: slicing one (N, H) tensor per batch costs the backward a zero-filled (N, H)
    # gradient per slice, and splitting it a concatenation of all N rows per split. The losses equal the
    # per-batch implementation's to float rounding (tests/test_nrccr_packed.py).
    def _pack_parts(self, texts: list[TextBatch]):
        """Backbone states of each batch, each batch's projected real tokens (n_i, H), and their packing."""
        states = [self.backbone_states(t) for t in texts]  # each (B_i, L_i, Dt)
        rows, packing = pack_parts([(st, t.mask) for st, t in zip(states, texts)])  # (n_i, Dt) each
        positions = packing.pos.split(packing.sizes())
        return states, [self.text_proj.packed(x, pos) for x, pos in zip(rows, positions)], packing  # (n_i, H) each

    def _pack(self, texts: list[TextBatch]):
        """Backbone states of each batch, the projected real tokens (N, H) and their packing."""
        states, parts, packing = self._pack_parts(texts)
        return states, parts[0] if len(parts) == 1 else torch.cat(parts), packing  # (N, H)

    def _padded_heads(self, x: torch.Tensor, packing: Packing, i: int, parts: int) -> list[torch.Tensor]:
        """Batch ``i``'s packed projections (n_i, parts * H) -> ``parts`` padded head tensors (B_i, nh, L_i, dh),
        contiguous: attention reads them as (B_i * nh, L_i, dh) without a copy, however many calls read them."""
        return packing.pad_heads(x, i, parts, self.attention.num_heads)

    def _self_attention(self, tokens, packing: Packing) -> tuple:
        """The shared layer's self-attention over every packed sequence, and each batch's padded (q, k, v) heads.
        ``tokens``: each batch's (n_i, H) (then the outputs are too) or all of them as one (N, H) tensor (then
        the output is one (N, H) tensor)."""
        a = self.attention
        parts = packing.split(tokens) if isinstance(tokens, torch.Tensor) else tokens
        heads, outs = {}, []
        for i, part in enumerate(parts):
            # one projection per tensor (a stacked (n_i, 3H) one costs its backward a concatenation of the three)
            q, k, v = heads[i] = [self._padded_heads(a.project(part, w), packing, i, 1)[0] for w in "qkv"]
            outs.append(a.finish(packing.unpad(a.attend(q, k, v, packing.masks[i]), i), part))  # (n_i, H)
        return (torch.cat(outs) if isinstance(tokens, torch.Tensor) else outs), heads

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        if self.text_head is not None:
            return self.text_head(self.backbone_states(text), text.mask)  # (B, E)
        _, parts, packing = self._pack_parts([text])
        h, _ = self._self_attention(parts, packing)  # [(N, H)]
        return self.text_mapping(packing.mean(h[0], 0))  # (B, E)

    def encode_visual(self, visual, frames=None, frame_mask=None) -> torch.Tensor:
        return self.visual(visual, frames, frame_mask)  # (B, E)

    # -- adversary ---------------------------------------------------------------------------------
    def _frozen_discriminator(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator with its weights detached: the encoder's gradient passes, none is stored."""
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (x,))  # (B, 1)

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """The discriminator's Adam (created once, so its state persists across calls)."""
        if self._discriminator_optimizer is None:
            params = self.discriminator.parameters()
            self._discriminator_optimizer = torch.optim.Adam(params, lr=self.config.discriminator_lr)
        return [self._discriminator_optimizer]

    def discriminator_step(self, batch: dict) -> float:
        """One Adam step of the discriminator on this batch (English = 1, targets = 0); returns its loss.

        Backbone outputs are recomputed without gradient (only the trainable ``text_top``, if any, runs
        again). A batch with no target language is skipped (returns nan).
        """
        targets = batch.get("targets", [])
        if not targets:
            return float("nan")
        cached, self._pooled_of_loss = self._pooled_of_loss, None
        states = [batch["text"][lang].states for lang in ["en", *targets]]
        if cached is not None and len(states) == len(cached[0]) and all(a is b for a, b in zip(states, cached[0])):
            pooled = cached[1]  # this batch's loss pooled the same states (no trainable top: the same numbers)
        else:
            with torch.no_grad():
                pooled = {
                    lang: masked_mean(self.backbone_states(batch["text"][lang]), batch["text"][lang].mask)  # (B, Dt)
                    for lang in ["en", *targets]
                }
        logits_tgt = torch.cat([self.discriminator(pooled[lang]) for lang in targets])  # (B * n_targets, 1)
        loss = losses.discriminator_loss(self.discriminator(pooled["en"]), logits_tgt)
        (optimizer,) = self.extra_optimizers()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # a main optimiser holding these parameters then skips them
        return loss.item()

    # -- loss --------------------------------------------------------------------------------------
    # One loss call: the tower pass over every text batch (_tower), the pseudo-targets h^C (_pseudo_targets),
    # each target language's four terms (_target_terms), and their weighted sum (_total). The module order
    # of the calls (English, then per target: c^T, h^C, c^B) is the BatchNorm and dropout order of the
    # one-body loss this replaced (tests/test_nrccr_packed.py compares the two).
    def _tri(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return losses.triplet_hardest_negative(a, b, self.config.margin, reduction="sum")

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        v = encode_batch_visual(self, batch)  # (B, E)
        source = batch["text"]["en"]
        targets = list(batch.get("targets", []))
        backs = {lang: batch["back"][lang] for lang in targets if batch.get("back", {}).get(lang) is not None}
        tower = self._tower(batch, targets, backs)
        texts = [source] + [batch["text"][lang] for lang in targets]
        # masked means of the backbone states (B, Dt): the discriminator's inputs and (common encoder) the text head's
        means = [masked_mean(tower.states[i], text.mask) for i, text in enumerate(texts)]
        c_s = self._sentence(tower, 0, means[0])  # (B, E)
        teachers = self._pseudo_targets(tower, len(targets)) if tower.q_en is not None else None  # (B, H) each
        target_terms, pooled_targets, back_terms = [], [], []
        for j, lang in enumerate(targets):
            c_t = self._sentence(tower, 1 + j, means[1 + j])  # (B, E)
            pooled_t = means[1 + j]  # (B, Dt) discriminator input
            target_terms.append(self._target_terms(v, c_t, teachers[j] if teachers is not None else None, pooled_t))
            pooled_targets.append(pooled_t.detach())
            if lang in backs:
                back_terms.append(self._tri(c_s, self._back_sentence(tower, backs, lang)))
        pooled_s = means[0]  # (B, Dt) discriminator input, English
        if self.text_top is None and targets:  # discriminator_step on this batch pools the same states: reuse
            self._pooled_of_loss = ([t.states for t in texts], {lang: m.detach() for lang, m in zip(["en", *targets], means)})
        return self._total(v, c_s, pooled_s, target_terms, pooled_targets, back_terms)

    def _tower(self, batch: dict, targets: list[str], backs: dict[str, TextBatch]) -> "_TowerPass":
        """One tower call over English, the targets and (own tower only) the back-translations."""
        c = self.config
        native = self.text_head is None
        # With both distillation weights 0 (an ablation) the pseudo-target h^C feeds no term; in the common
        # encoder the attention tower then serves nothing and is not run (its parameters get no gradient,
        # as they would get zero ones; only the dropout draws of the skipped tower differ).
        teacher = bool(targets) and (c.similarity_weight != 0 or c.feature_weight != 0)
        texts = [batch["text"]["en"]] + [batch["text"][lang] for lang in targets] + (list(backs.values()) if native else [])
        if not (native or teacher):
            return _TowerPass([self.backbone_states(t) for t in texts], native, list(backs))  # each (B_i, L_i, Dt)
        a = self.attention
        states, parts, packing = self._pack_parts(texts)  # parts: (n_i, H) each
        out = _TowerPass(states, native, list(backs), parts=parts, packing=packing)
        if native:  # self-attention of every batch; its English queries and target keys/values serve h^C too
            h, heads = self._self_attention(parts, packing)  # h: (n_i, H) each
            out.pooled = [packing.mean(h_i, i) for i, h_i in enumerate(h)]  # (B, H) each
            out.q_en, out.kv = heads[0][0], {j: heads[1 + j][1:] for j in range(len(targets))}
        else:  # common encoder: the tower serves only h^C -- English queries, target keys and values
            out.q_en = self._padded_heads(a.project(parts[0], "q"), packing, 0, 1)[0]
            out.kv = {j: [self._padded_heads(a.project(parts[1 + j], w), packing, 1 + j, 1)[0] for w in "kv"] for j in range(len(targets))}
        if not teacher:
            out.q_en = out.kv = None
        return out

    def _sentence(self, tower: "_TowerPass", i: int, mean: torch.Tensor) -> torch.Tensor:
        """Sentence embedding (B, E) of the tower pass's batch ``i``: own tower, or the floor's text head on the
        masked mean ``mean`` (B, Dt) of its backbone states."""
        return self.text_mapping(tower.pooled[i]) if tower.native else self.text_head.from_mean(mean)

    def _back_sentence(self, tower: "_TowerPass", backs: dict[str, TextBatch], lang: str) -> torch.Tensor:
        """c^B (B, E): the back-translation of ``lang``'s target, from the tower pass or the text head."""
        if tower.native:
            return self.text_mapping(tower.pooled[len(tower.states) - len(backs) + tower.backs.index(lang)])
        return self.encode_text(backs[lang], "en")

    def _pseudo_targets(self, tower: "_TowerPass", n: int) -> list[torch.Tensor]:
        """h^C per target before the mapping head, (B, H) each: English queries over the target's keys and
        values, no residual, pooled over [cross ; target tokens]."""
        a, packing = self.attention, tower.packing
        teachers = []
        for j in range(n):
            cross = a.finish(packing.unpad(a.attend(tower.q_en, *tower.kv[j], packing.masks[1 + j]), 0), None)  # (n_en, H)
            teachers.append((packing.sums(cross, 0) + packing.sums(tower.parts[1 + j], 1 + j)) / (packing.counts(0) + packing.counts(1 + j)))
        return teachers  # (B, H) each

    def _target_terms(self, v: torch.Tensor, c_t: torch.Tensor, teacher: torch.Tensor | None, pooled_t: torch.Tensor) -> torch.Tensor:
        """One target language's (4,) terms: Tri(c^T, v), L_sim, L_feat (0 without a teacher), L_adv."""
        c = self.config
        if teacher is not None:
            h_c = self.text_mapping(teacher)  # (B, E)
            distill = [losses.similarity_view_distillation(v, h_c, c_t, c.distill_temperature),
                       losses.feature_view_distillation(c_t, h_c, c.feature_beta)]
        else:
            distill = [v.new_zeros(()), v.new_zeros(())]
        return torch.stack([self._tri(c_t, v), *distill, losses.encoder_adversarial_loss(self._frozen_discriminator(pooled_t))])

    def _total(self, v: torch.Tensor, c_s: torch.Tensor, pooled_s: torch.Tensor, target_terms: list[torch.Tensor],
               pooled_targets: list[torch.Tensor], back_terms: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The reported terms and their weighted sum; target terms are averaged over the target languages."""
        c = self.config
        out = {"source": self._tri(c_s, v)}
        zero = v.new_zeros(())
        if target_terms:
            target, similarity, feature, adversarial = torch.stack(target_terms).mean(dim=0)  # 4 scalars
            with torch.no_grad():  # for logging only; discriminator_step trains it
                logits_tgt = self.discriminator(torch.cat(pooled_targets))  # (B * n_targets, 1)
                out["discriminator"] = losses.discriminator_loss(self.discriminator(pooled_s), logits_tgt)
        else:
            target = similarity = feature = adversarial = out["discriminator"] = zero
        out.update(target=target, similarity_view=similarity, feature_view=feature, adversarial=adversarial)
        # with no back-translation in the batch the term is skipped: weight 0, reported below
        back_weight = c.back_weight if back_terms else 0.0
        out["back_translation"] = torch.stack(back_terms).mean() if back_terms else zero
        out["back_translation_weight"] = v.new_tensor(back_weight)
        out["loss"] = (
            out["source"]
            + c.target_weight * target
            + c.similarity_weight * similarity
            + c.feature_weight * feature
            + back_weight * out["back_translation"]
            + c.adversarial_weight * adversarial
        )
        return out


@dataclass
class _TowerPass:
    """What one loss call's tower pass computed, for the steps after it."""
    states: list[torch.Tensor]  # backbone states (B_i, L_i, Dt): English, the targets, (own tower) the back-translations
    native: bool  # sentences from the own attention tower (else from the floor's text head)
    backs: list[str]  # the languages with a back-translation, in batch order
    pooled: list[torch.Tensor] | None = None  # own tower: each batch's pooled self-attention output (B, H)
    parts: list[torch.Tensor] | None = None  # each batch's projected real tokens (n_i, H), when the tower ran
    packing: Packing | None = None
    q_en: torch.Tensor | None = None  # the English query heads, when h^C is computed
    kv: dict[int, list[torch.Tensor]] | None = None  # each target's key and value heads, when h^C is computed
