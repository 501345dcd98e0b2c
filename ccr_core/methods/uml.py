"""UML, uncertainty-aware and mutual learning (Sci. China Inf. Sci. 2025), as docs/methods.md §6 reads it:
DECL's evidential noise rule on two clean anchors (image and English source) after a one-hot warm-up,
labels softened by certainty, a Fisher-weighted evidential loss whose KL term keeps the hard label, and
the adaptive mutual learning (AML) loss that pulls clean pairs and pushes only flagged ones. The authors'
code is not public: the way the pieces are put together is our interpretation.

The building blocks are DECL's (QinYang79/DECL: evidence, Dirichlet KL, EDL loss, the noise rule of
``get_correspondence``) and I-EDL's (danruod/IEDL: the Fisher-weighted loss); what was compared with
those references, and how closely they agree, is in ``ccr_core.methods.losses``."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ccr_core.methods import losses
from ccr_core.methods.base import METHODS, CCRMethod, TextBatch
from ccr_core.methods.heads import EncoderConfig, encode_batch_visual, make_text_head, make_visual_head


# The measurements behind these defaults (the command, the numbers) are in docs/method-notes.md, "UML's defaults".


@dataclass
class UMLConfig(EncoderConfig):
    # [ours] τ of the English contrastive term and of AML's pull term: the baseline's 0.05, so the pull on a clean
    # pair is the baseline's InfoNCE
    temperature: float = 0.05
    evidence_temperature: float = 0.1  # τ_e in e = exp(tanh(s)/τ_e) (DECL)
    # [ours] DECL warms up W epochs (5 on Flickr30K) with one-hot labels before it trusts its noise flags;
    # counted in optimiser steps so the method needs nothing from the trainer (about one demo-world epoch)
    warmup_steps: int = 80
    # [ours] the pair's noise score from its two views (image → target, English → target): "mean" | "max"
    view_combination: str = "mean"
    # [ours] a pair is flagged noisy when DECL's argmax rule flags it in "all" views (both clean anchors
    # disagree with the caption) or in "any" view; "all" spares clean pairs with one poor view
    flag_views: str = "all"
    # [ours] certainty c_i of a pair: "views" = the share of its views whose argmax is its own candidate (1 when
    # both clean anchors agree; DECL's hard rule, per view); "evidence" = 1 − its noise score, which caps the label
    # (and the pull) far below 1 when a clean pair holds a small share of its row's evidence
    certainty: str = "views"
    # [ours] where the softened label's remaining mass 1 − c_i goes: "none" (dropped; ỹ_ii = c_i, rest 0) or
    # "fisher" (spread ∝ ψ₁(α_ij), our first reading: it lands on the least similar candidates)
    label_spread: str = "none"
    kl_weight: float = 0.1  # λ_KL once annealed (DECL / EDL); its α̃ always uses the hard label
    # [ours] λ_KL = kl_weight · min(1, step / kl_anneal_steps): EDL's 10-epoch ramp, in steps
    # (≈ 10 Multi30K epochs at batch 128), so it needs nothing from the trainer
    kl_anneal_steps: int = 2000
    fisher_weight: float = 0.01  # λ_F of I-EDL's −log|I(α)| term
    aml_margin: float = 0.1  # [ours] AML push: how far below its hardest clean negative a flagged pair is pushed
    aml_push_weight: float = 1.0  # [ours] AML push weight relative to its pull
    contrastive_weight: float = 1.0  # [ours] plain InfoNCE(v, en), so the model also learns English
    # [ours] weight of the Fisher-weighted EDL term, kept small: its evidence on cosines pushes every negative
    # towards −1, which a 256-d space cannot give 127 negatives at once
    evidential_weight: float = 0.1
    # [ours] weight of the AML term: its pull averages three pair terms, (v, s), (v, t) and (s, t), so 3 gives the
    # image–target pair the baseline's weight
    mutual_weight: float = 3.0


@METHODS.register("uml")
class UML(CCRMethod):
    """Our interpretation of UML (docs/methods.md §6, marked [ours] there), built on DECL's noise rule.

    Per target language t and batch of B pairs (v_i, s_i, t_i):

    - two views of each pair: the image view (v · tᵀ) and the English view (s · tᵀ);
    - noise detector (the one training uses): per view, DECL's rule on the symmetric, row-normalised
      evidence ``E + Eᵀ`` (:func:`losses.decl_noise_scores`): score ``1 − own normalised evidence``, flag
      when the own candidate is not the row's argmax. The pair's score combines the views
      (``view_combination``), its flag needs ``flag_views``; its certainty c_i is the share of views that
      pick its own candidate (``certainty``). During the first ``warmup_steps`` no pair is flagged and
      c_i = 1 (DECL's one-hot warm-up);
    - Fisher-weighted EDL (I-EDL) on rows and columns of both views with labels ``ỹ_ii = c_i`` for clean
      pairs and an all-zero row for flagged ones (their evidence is removed); the KL evidence-removal term
      always takes the hard label (one-hot or zero), so it never penalises a clean pair's own evidence;
    - AML: pull v, s, t of clean pairs together weighted by c_i; push the target caption of flagged pairs
      below their anchors' hardest clean negative (silent for clean pairs);
    - plus a plain InfoNCE(v, s) so that the English side is learned too.

    ``L = w_c·InfoNCE(v, s) + mean_t [w_e·EDL + w_m·AML]``. Test time: plain cosine of the text and
    visual embeddings. ``u = B / S`` (docs/methods.md) is still computed and reported (:meth:`uncertainty`),
    but it is not the noise detector: on cosine similarities it measures how hub-like a row is.

    Flags are recomputed from every batch (no extra pass); DECL recomputes them once per epoch over the
    whole training set, which would cost one more forward pass of every training pair per epoch. The
    step counter ``step`` (a buffer, saved with the weights so a resumed run continues warm-up and the
    λ_KL ramp) grows by one at every ``loss`` call in training mode; a trainer may set it.
    """

    name = "uml"
    label = "UML"
    description = ("learns how uncertain each training pair is and trusts doubtful pairs less; it can flag pairs "
                   "that look mismatched.")
    colour = "vermillion"
    display_order = 50
    main = True
    loss_keys = ("contrastive", "evidential", "mutual", "mean_uncertainty", "flagged_fraction")
    config_class = UMLConfig

    def __init__(self, config: UMLConfig, text_top=None):
        super().__init__(config, text_top)
        if config.view_combination not in ("mean", "max"):
            raise ValueError(f"view_combination must be 'mean' or 'max', got {config.view_combination!r}")
        if config.flag_views not in ("all", "any"):
            raise ValueError(f"flag_views must be 'all' or 'any', got {config.flag_views!r}")
        if config.certainty not in ("views", "evidence"):
            raise ValueError(f"certainty must be 'views' or 'evidence', got {config.certainty!r}")
        if config.label_spread not in ("none", "fisher"):
            raise ValueError(f"label_spread must be 'none' or 'fisher', got {config.label_spread!r}")
        self.text_head = make_text_head(config)
        self.visual = make_visual_head(config)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training loss() calls; drives warm-up and λ_KL

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        return self.text_head(self.backbone_states(text), text.mask)  # (B, E)

    def encode_visual(self, visual, frames=None, frame_mask=None) -> torch.Tensor:
        return self.visual(visual, frames, frame_mask)  # (B, E)

    # -- uncertainty -------------------------------------------------------------------------------
    def current_kl_weight(self) -> float:
        c = self.config
        ramp = 1.0 if c.kl_anneal_steps <= 0 else min(1.0, int(self.step) / c.kl_anneal_steps)
        return c.kl_weight * ramp

    def _alpha(self, sim: torch.Tensor) -> torch.Tensor:
        return losses.evidence_from_similarity(sim, self.config.evidence_temperature) + 1.0  # Dirichlet α

    def _view_alphas(self, v: torch.Tensor, s: torch.Tensor | None, t: torch.Tensor) -> list[torch.Tensor]:
        """Dirichlet α (B, B) of each view of the targets t: the image view, then the English view if given."""
        return [self._alpha(x @ t.T) for x in ([v] if s is None else [v, s])]

    def _uncertainty_from(self, alphas: list[torch.Tensor]) -> torch.Tensor:
        u = [losses.dirichlet_uncertainty(a) for a in alphas]  # each (B,)
        return u[0] if len(u) == 1 else losses.combine_view_uncertainty(u[0], u[1], self.config.view_combination)

    def _views(self, v: torch.Tensor, s: torch.Tensor | None, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DECL's rule per view (image, then English if ``s`` is given): scores and flags, each (views, B)."""
        per_view = [losses.decl_noise_scores(x @ t.T, self.config.evidence_temperature) for x in ([v] if s is None else [v, s])]
        return torch.stack([score for score, _ in per_view]), torch.stack([flag for _, flag in per_view])

    def noise_detector(self, v: torch.Tensor, s: torch.Tensor | None, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The detector training uses: ``(score (B,), flagged (B,) bool)`` of aligned pairs, no gradient.

        Per view (image, then English if ``s`` is given) DECL's rule (:func:`losses.decl_noise_scores`);
        the score combines the views by ``view_combination``, the flag by ``flag_views``."""
        return self._combine(*self._views(v, s, t))

    def _combine(self, scores: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair's score (``view_combination``) and flag (``flag_views``) from the per-view ones (views, B)."""
        score = scores.mean(dim=0) if self.config.view_combination == "mean" else scores.max(dim=0).values
        flagged = flags.all(dim=0) if self.config.flag_views == "all" else flags.any(dim=0)
        return score, flagged

    def in_warmup(self) -> bool:
        return int(self.step) < self.config.warmup_steps

    def training_weights(self, v: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a training step gives each pair: ``{"score", "flagged", "certainty", "weight"}`` (each (B,)).

        ``weight`` = c_i · (1 − f_i) is the pair's weight in the ranking (AML pull) term; in warm-up every
        pair has certainty and weight 1 and no flag."""
        scores, flags = self._views(v, s, t)
        score, flagged = self._combine(scores, flags)
        if self.in_warmup():
            flagged = torch.zeros_like(flagged)
            certainty = torch.ones_like(score)
        elif self.config.certainty == "views":
            certainty = 1.0 - flags.to(score.dtype).mean(dim=0)  # (B,) share of views that pick the pair's own candidate
        else:
            certainty = 1.0 - score
        return {"score": score, "flagged": flagged, "certainty": certainty, "weight": certainty * (~flagged).to(score.dtype)}

    @torch.no_grad()
    def pair_scores(
        self, text: TextBatch, visual: torch.Tensor, source: TextBatch | None = None, frames=None, frame_mask=None
    ) -> dict[str, torch.Tensor]:
        """Both per-pair scores of aligned pairs (text[i], visual[i]) from one encoding of the batch:
        ``{"uncertainty": (B,), "mismatch": (B,)}`` (see :meth:`uncertainty` and :meth:`mismatch`)."""
        t = self.encode_text(text)  # (B, E)
        v = self.encode_visual(visual, frames, frame_mask)  # (B, E)
        s = None if source is None else self.encode_text(source, "en")  # (B, E)
        return self.embedding_pair_scores(v, s, t)

    @torch.no_grad()
    def embedding_pair_scores(self, v: torch.Tensor, s: torch.Tensor | None, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`pair_scores` from embeddings already computed: v (B, E), s (B, E) or None, t (B, E)."""
        score, _ = self.noise_detector(v, s, t)
        return {"uncertainty": self._uncertainty_from(self._view_alphas(v, s, t)), "mismatch": score}

    def uncertainty(
        self, text: TextBatch, visual: torch.Tensor, source: TextBatch | None = None, frames=None, frame_mask=None
    ) -> torch.Tensor:
        """Per-pair uncertainty u_i = B / S_i ∈ (0, 1] of aligned pairs (text[i], visual[i]) (docs/methods.md);
        row i's candidate set is the batch given. With ``source`` (the English captions of the same
        items) the English view is combined in; without it, the image view alone. Reported beside
        :meth:`mismatch`, which is the detector training uses."""
        return self.pair_scores(text, visual, source, frames, frame_mask)["uncertainty"]

    def mismatch(
        self, text: TextBatch, visual: torch.Tensor, source: TextBatch | None = None, frames=None, frame_mask=None
    ) -> torch.Tensor:
        """The noise score training uses (:meth:`noise_detector`): 1 − the pair's own share of the
        symmetric, row-normalised evidence, mean of the image and English views when ``source`` is
        given. In (0, 1); high for a likely mismatched pair."""
        return self.pair_scores(text, visual, source, frames, frame_mask)["mismatch"]

    @torch.no_grad()
    def query_uncertainty(self, query_emb: torch.Tensor, gallery_emb: torch.Tensor, top_k: int = 10) -> torch.Tensor:
        """How sure a ranking is: u = k / Σα over the query's top-k gallery candidates, in (0, 1].

        Args:
            query_emb: (E,), (1, E) or (Q, E) L2-normalised query embeddings.
            gallery_emb: (N, E) L2-normalised gallery embeddings.
            top_k: candidates considered (fewer when the gallery is smaller).

        Returns:
            (Q,) uncertainties; low when one candidate stands out, near 1 when none is similar.
        """
        query = query_emb.reshape(-1, query_emb.shape[-1])  # (Q, E)
        sim = query @ gallery_emb.T  # (Q, N)
        top = sim.topk(min(top_k, sim.shape[1]), dim=1).values  # (Q, k)
        return losses.dirichlet_uncertainty(self._alpha(top))  # (Q,)

    # -- loss --------------------------------------------------------------------------------------
    def _evidential(self, sim: torch.Tensor, weights: dict[str, torch.Tensor], kl_weight: float) -> torch.Tensor:
        """Fisher-weighted EDL on the rows and the columns of one view's (B, B) similarities."""
        soft, hard = losses.clean_pair_labels(weights["certainty"], weights["flagged"])  # (B, B) each
        terms = []
        for view in (sim, sim.T):  # (B, B): anchor → candidates, then candidates → anchor
            alpha = self._alpha(view)  # (B, B)
            labels = soft
            if self.config.label_spread == "fisher":
                spread = losses.certainty_softened_labels(1.0 - weights["certainty"], alpha)  # (B, B)
                labels = spread * (~weights["flagged"]).to(spread.dtype)[:, None]
            terms.append(losses.fisher_edl_loss(alpha, labels, kl_weight, self.config.fisher_weight, kl_labels=hard))
        return torch.stack(terms).mean()

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        v = encode_batch_visual(self, batch)  # (B, E)
        s = self.encode_text(batch["text"]["en"], "en")  # (B, E)
        contrastive = losses.info_nce(v, s, c.temperature)
        kl_weight = self.current_kl_weight()
        per_target = []  # rows: (evidential, mutual, mean uncertainty u, flagged fraction)
        for lang in batch.get("targets", []):
            t = self.encode_text(batch["text"][lang], lang)  # (B, E)
            weights = self.training_weights(v.detach(), s.detach(), t.detach())
            with torch.no_grad():
                u = self._uncertainty_from(self._view_alphas(v, s, t))  # (B,) reported, not used
            evidential = (self._evidential(v @ t.T, weights, kl_weight) + self._evidential(s @ t.T, weights, kl_weight)) / 2
            mutual = losses.adaptive_mutual_learning_loss(
                v, s, t, weights["certainty"], weights["flagged"], c.temperature, c.aml_margin, c.aml_push_weight
            )
            per_target.append(torch.stack([evidential, mutual, u.mean(), weights["flagged"].float().mean()]))
        if self.training:
            self.step += 1
        if per_target:
            evidential, mutual, mean_u, flagged = torch.stack(per_target).mean(dim=0)
        else:
            evidential = mutual = mean_u = flagged = v.new_zeros(())
        total = c.contrastive_weight * contrastive + c.evidential_weight * evidential + c.mutual_weight * mutual
        return {
            "loss": total,
            "contrastive": contrastive,
            "evidential": evidential,
            "mutual": mutual,
            "mean_uncertainty": mean_u.detach(),
            "flagged_fraction": flagged.detach(),
        }
