"""Evidential (Dirichlet) losses and noise scores of UML (docs/methods.md §6): evidence from
similarities, uncertainty, EDL and Fisher-EDL losses, DECL's noise scores, and adaptive mutual learning."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ccr_core.methods.losses.contrastive import Reduction, _reduce, info_nce_per_sample

# --------------------------------------------------------------------------------------------------
# UML / evidential learning (docs/methods.md §6)
# --------------------------------------------------------------------------------------------------
def evidence_from_similarity(sim: Tensor, tau_e: float = 0.1) -> Tensor:
    """DECL evidence ``e = exp(tanh(s)/τ_e)``, in ``[exp(−1/τ_e), exp(1/τ_e)]``; Dirichlet α = e + 1.

    Args:
        sim: (..., C) similarities.
        tau_e: evidence temperature τ_e (0.1).

    Returns:
        Evidence with the shape of ``sim``.
    """
    return torch.exp(torch.tanh(sim) / tau_e)


def dirichlet_uncertainty(alpha: Tensor) -> Tensor:
    """Subjective-logic uncertainty ``u = C / S`` with ``S = Σ_j α_j`` and C the number of candidates.

    Args:
        alpha: (..., C) Dirichlet parameters (α ≥ 1 for evidence ≥ 0).

    Returns:
        (...,) uncertainty in (0, 1] for α ≥ 1; 1 exactly when all evidence is zero.
    """
    return alpha.shape[-1] / alpha.sum(dim=-1)


def combine_view_uncertainty(
    u_image_view: Tensor, u_source_view: Tensor, mode: Literal["mean", "max", "min"] = "mean"
) -> Tensor:
    """Pair uncertainty from the image view (v_i → t) and the English-source view (s_i → t).

    Our interpretation (docs/methods.md §6): the doc says the views are combined by a mean, configurable.

    Args:
        u_image_view: (B,) uncertainties from the visual anchor.
        u_source_view: (B,) uncertainties from the English anchor.
        mode: ``"mean"`` (default), ``"max"`` (pessimistic) or ``"min"``.

    Returns:
        (B,) combined uncertainty.
    """
    if mode == "mean":
        return (u_image_view + u_source_view) / 2
    if mode == "max":
        return torch.maximum(u_image_view, u_source_view)
    if mode == "min":
        return torch.minimum(u_image_view, u_source_view)
    raise ValueError(f"unknown mode {mode!r}; expected 'mean', 'max' or 'min'")


def dirichlet_kl_to_uniform(alpha: Tensor) -> Tensor:
    """``KL(Dir(α) ‖ Dir(1))`` per row.

    ``= lnΓ(S) − lnΓ(C) − Σ_j lnΓ(α_j) + Σ_j (α_j − 1)(ψ(α_j) − ψ(S))``.

    Args:
        alpha: (..., C) Dirichlet parameters.

    Returns:
        (...,) KL divergences (≥ 0).
    """
    num_classes = alpha.shape[-1]
    strength = alpha.sum(dim=-1, keepdim=True)  # (..., 1)
    log_norm = (
        torch.lgamma(strength.squeeze(-1))
        - torch.lgamma(alpha.new_tensor(float(num_classes)))
        - torch.lgamma(alpha).sum(dim=-1)
    )  # (...,)
    expected = ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(strength))).sum(dim=-1)  # (...,)
    return log_norm + expected


def edl_mse_loss(
    alpha: Tensor, y: Tensor, kl_weight: float = 0.1, reduction: Reduction = "mean"
) -> Tensor:
    """Evidential (EDL) squared-error loss per row, as used by DECL/UML.

    ``Σ_j (y_j − p̂_j)² + Σ_j α_j(S − α_j)/(S²(S+1)) + λ_KL · KL(Dir(α̃) ‖ Dir(1))`` with
    ``p̂ = α/S`` and ``α̃ = y + (1 − y) ⊙ α`` (the evidence of the true candidate removed).

    Args:
        alpha: (N, C) Dirichlet parameters.
        y: (N, C) labels, one-hot or soft (rows summing to 1).
        kl_weight: λ_KL (DECL keeps 0.1 constant, ``opts.py:84``; EDL and I-EDL anneal it).
        reduction: ``"mean"`` / ``"sum"`` over rows, or ``"none"`` for (N,).

    Returns:
        Scalar (or (N,)) loss.

    Checked against DECL's ``mse_loss`` (``model/DECL.py:19-27``) with hard labels on seeded α (B = 8,
    32, 128): per-row differences 4e-8 to 1.2e-6 in float64, exactly 0.1 × the difference between
    DECL's float32 ``lgamma(C)`` constant and ours (its ``beta`` is created float32). With a soft label the
    KL term's ``α̃`` keeps ``(1 − y_ii)·α_ii``: use :func:`fisher_edl_loss` with ``kl_labels``.
    """
    strength = alpha.sum(dim=-1, keepdim=True)  # (N, 1)
    prob = alpha / strength  # (N, C)
    error = ((y - prob) ** 2).sum(dim=-1)  # (N,)
    variance = (alpha * (strength - alpha) / (strength**2 * (strength + 1))).sum(dim=-1)  # (N,)
    alpha_tilde = y + (1 - y) * alpha  # (N, C)
    per_row = error + variance + kl_weight * dirichlet_kl_to_uniform(alpha_tilde)  # (N,)
    return _reduce(per_row, reduction)


def dirichlet_fisher_logdet(alpha: Tensor) -> Tensor:
    """``log |I(α)|`` of the Fisher information of Dir(α), ``I = diag(ψ₁(α)) − ψ₁(S) 11ᵀ``.

    By the matrix determinant lemma, ``Σ_j log ψ₁(α_j) + log(1 − ψ₁(S) Σ_j 1/ψ₁(α_j))``. The second
    argument is positive in exact arithmetic; it is clamped at the dtype's ``tiny`` so that float32
    rounding at very large α cannot produce log of a non-positive number. In float32 the result is
    accurate to about 1e-2 absolute at α ~ e¹⁰ (the largest DECL evidence), ample for λ_F = 0.01.

    Args:
        alpha: (..., C) Dirichlet parameters.

    Returns:
        (...,) log-determinants.
    """
    trigamma = torch.special.polygamma(1, alpha)  # (..., C)
    trigamma_strength = torch.special.polygamma(1, alpha.sum(dim=-1))  # (...,)
    correction = 1 - trigamma_strength * (1 / trigamma).sum(dim=-1)  # (...,)
    correction = correction.clamp(min=torch.finfo(alpha.dtype).tiny)
    return torch.log(trigamma).sum(dim=-1) + torch.log(correction)


def fisher_edl_loss(
    alpha: Tensor,
    y: Tensor,
    kl_weight: float = 0.1,
    fisher_weight: float = 0.01,
    reduction: Reduction = "mean",
    kl_labels: Tensor | None = None,
) -> Tensor:
    """Fisher-information EDL loss (I-EDL), per row.

    ``Σ_j ψ₁(α_j)(y_j − p̂_j)² + Σ_j ψ₁(α_j) α_j(S − α_j)/(S²(S+1)) − λ_F log|I(α)|
    + λ_KL KL(Dir(α̃) ‖ Dir(1))``.

    Args:
        alpha: (N, C) Dirichlet parameters.
        y: (N, C) labels, one-hot or soft.
        kl_weight: λ_KL (0.1, annealed by the caller).
        fisher_weight: λ_F (≈ 0.01).
        reduction: ``"mean"`` / ``"sum"`` over rows, or ``"none"``.
        kl_labels: (N, C) hard labels (one-hot, or all zero for a pair flagged noisy) for the KL
            evidence-removal term's ``α̃``; default ``y``. DECL and I-EDL always use the hard label there:
            with a soft label ``ỹ_ii < 1`` the term keeps ``(1 − ỹ_ii)·α_ii`` and penalises the pair's own
            evidence, i.e. it pushes a clean pair apart.

    Returns:
        Scalar (or (N,)) loss.

    Checked against I-EDL's code (danruod/IEDL @ 4aca7db2, ``code_classical/models/FisherEvidentialN.py:134-148``)
    with one-hot labels on seeded α: squared error equal, variance to 1e-16, the log-determinant term to
    4e-13 and the whole loss to 4e-6 in float64 (the remainder is the reference's ε = 1e-8 inside its KL's
    lgamma/digamma: with ε = 0 the difference is 3e-11); in float32 both have the same rounding error.
    ``kl_labels`` is our extension: the reference always builds ``α̃`` from its one-hot labels.
    """
    strength = alpha.sum(dim=-1, keepdim=True)  # (N, 1)
    prob = alpha / strength  # (N, C)
    trigamma = torch.special.polygamma(1, alpha)  # (N, C)
    error = (trigamma * (y - prob) ** 2).sum(dim=-1)  # (N,)
    variance = (trigamma * alpha * (strength - alpha) / (strength**2 * (strength + 1))).sum(dim=-1)  # (N,)
    hard = y if kl_labels is None else kl_labels
    alpha_tilde = hard + (1 - hard) * alpha  # (N, C)
    per_row = (
        error
        + variance
        - fisher_weight * dirichlet_fisher_logdet(alpha)
        + kl_weight * dirichlet_kl_to_uniform(alpha_tilde)
    )  # (N,)
    return _reduce(per_row, reduction)


def certainty_softened_labels(
    u: Tensor, alpha: Tensor, positive_index: Tensor | None = None, detach: bool = True
) -> Tensor:
    """Labels softened by certainty: ``ỹ_i,pos = 1 − u_i``, the remaining ``u_i`` spread over the other
    candidates in proportion to ``ψ₁(α_ij)``.

    Our interpretation (docs/methods.md §6). Since ψ₁ is decreasing, candidates with *less* evidence get
    more of the spread mass (the Fisher-information weighting of I-EDL: low-evidence classes are the
    informative ones). Labels are targets, so by default they carry no gradient.

    Args:
        u: (N,) uncertainties in [0, 1].
        alpha: (N, C) Dirichlet parameters of the same rows, C ≥ 2.
        positive_index: optional (N,) long index of each row's matching candidate; default ``i``
            (the diagonal of a square batch).
        detach: compute the labels without gradient (default True).

    Returns:
        (N, C) soft labels, each row summing to 1.
    """
    if detach:
        u, alpha = u.detach(), alpha.detach()
    rows, num_candidates = alpha.shape
    if num_candidates < 2:
        raise ValueError("need at least two candidates per row")
    if positive_index is None:
        positive_index = torch.arange(rows, device=alpha.device)
    is_positive = F.one_hot(positive_index, num_candidates).to(torch.bool)  # (N, C)
    weights = torch.special.polygamma(1, alpha).masked_fill(is_positive, 0.0)  # (N, C)
    spread = weights / weights.sum(dim=-1, keepdim=True)  # (N, C), 0 on the positive
    labels = u[:, None] * spread  # (N, C)
    return torch.where(is_positive, (1 - u)[:, None].expand_as(labels), labels)  # (N, C)


def decl_noise_scores(sim: Tensor, tau_e: float = 0.1) -> tuple[Tensor, Tensor]:
    """DECL's noisy-correspondence rule on one square batch view (QinYang79/DECL, ``get_correspondence``).

    Evidence ``E = exp(tanh(sim)/τ_e)``, made symmetric ``E + Eᵀ`` (both directions of the pair) and
    row-normalised. A pair is predicted clean iff its own candidate is the argmax of its row; the
    continuous score is ``1 − (normalised own evidence)``, in (0, 1), high for a likely-noisy pair.

    Args:
        sim: (B, B) similarities; ``sim[i, i]`` is pair i.
        tau_e: evidence temperature τ_e (0.1).

    Returns:
        ``(score (B,), flagged (B,) bool)``, both without gradient.

    Checked against DECL's code (QinYang79/DECL @ 1b0a7756, ``model/DECL.py:60-63`` and ``train.py:152``)
    on seeded similarity matrices (B = 8, 32, 128; float32 and float64): the flags equal the reference's
    ``pred == 0`` in all 18 cases, and ``1 − score`` equals its ``norm_e`` diagonal to 6e-17 (float64) /
    3e-8 (float32). DECL computes the flags once per epoch, in eval mode, over the whole training set and
    applies them by sample id; UML here computes them from each training batch (see ``UML``).
    """
    with torch.no_grad():
        evidence = evidence_from_similarity(sim, tau_e)  # (B, B)
        symmetric = evidence + evidence.T  # (B, B)
        normalised = symmetric / symmetric.sum(dim=1, keepdim=True)  # (B, B), rows sum to 1
        own = normalised.diagonal()  # (B,)
        flagged = normalised.argmax(dim=1) != torch.arange(sim.shape[0], device=sim.device)  # (B,)
    return 1.0 - own, flagged


def clean_pair_labels(certainty: Tensor, flagged: Tensor) -> tuple[Tensor, Tensor]:
    """Labels of a square batch for the evidential loss, DECL-style, softened by certainty.

    A clean pair keeps its own candidate as label, softened to ``ỹ_ii = c_i`` with the rest 0 (the
    spread of ``1 − c_i`` over the other candidates ∝ ψ₁(α_ij) — our earlier reading — sends that mass to
    the *least* similar candidates, so it is not used); a pair flagged noisy gets an all-zero row (its
    evidence is removed). The KL term gets the hard version (one-hot or zero), see :func:`fisher_edl_loss`.

    Args:
        certainty: (B,) certainty c_i in [0, 1] (no gradient is taken).
        flagged: (B,) bool, True for a pair predicted noisy.

    Returns:
        ``(soft (B, B), hard (B, B))`` labels.
    """
    keep = (~flagged).to(certainty.dtype)  # (B,)
    hard = torch.diag(keep)  # (B, B)
    soft = torch.diag(keep * certainty.detach())  # (B, B)
    return soft, hard


def adaptive_mutual_learning_loss(
    v: Tensor,
    s: Tensor,
    t: Tensor,
    certainty: Tensor,
    flagged: Tensor,
    temperature: float | Tensor = 0.07,
    margin: float = 0.1,
    push_weight: float = 1.0,
) -> Tensor:
    """UML's adaptive mutual learning (AML) loss, as docs/methods.md §6 reads it.

    Our interpretation ([ours] in docs/methods.md). With certainty ``c_i`` and the noise flags ``f_i``:

    - pull: per-pair symmetric InfoNCE on each of (v, s), (v, t), (s, t), averaged over the three and
      weighted by ``c_i·(1 − f_i)``: clean pairs are aggregated, flagged ones leave the ranking term;
    - push, flagged pairs only: ``[v_i·t_i − max_{j≠i, j clean} v_i·t_j + margin]_+`` and the same with
      ``s_i`` — the target caption of a flagged pair is pushed below the anchor's hardest clean negative.
      A clean pair (f_i = 0) has no push at all, so AML is attractive on every clean pair.

    ``L = mean_i (c_i (1 − f_i) · pull_i + push_weight · f_i · push_i)``.

    Args:
        v: (B, D) visual embeddings.
        s: (B, D) English (source) caption embeddings.
        t: (B, D) target-language caption embeddings.
        certainty: (B,) certainty c_i in [0, 1] (used as a fixed weight, no gradient).
        flagged: (B,) bool, pairs predicted noisy.
        temperature: InfoNCE temperature of the pull term (0.07).
        margin: how far below the hardest clean negative a flagged pair's similarity is pushed (0.1).
        push_weight: weight of the push term (1.0).

    Returns:
        Scalar loss.
    """
    flag = flagged.to(v.dtype)  # (B,)
    weight = certainty.detach() * (1 - flag)  # (B,)
    pull = (
        info_nce_per_sample(v, s, temperature)
        + info_nce_per_sample(v, t, temperature)
        + info_nce_per_sample(s, t, temperature)
    ) / 3  # (B,)
    push = v.new_zeros(v.shape[0])  # (B,)
    if bool(flagged.any()):
        eye = torch.eye(v.shape[0], dtype=torch.bool, device=v.device)  # (B, B)
        excluded = eye | flagged[None, :]  # own candidate and flagged candidates are not negatives
        for anchor in (v, s):
            sim = anchor @ t.T  # (B, B)
            hardest = sim.masked_fill(excluded, float("-inf")).max(dim=1).values  # (B,)
            hardest = torch.where(torch.isfinite(hardest), hardest, torch.zeros_like(hardest)).detach()  # (B,)
            push = push + (sim.diagonal() - hardest + margin).clamp(min=0)  # (B,)
    return (weight * pull + push_weight * flag * push).mean()
