"""Loss functions of the CCR methods (baseline, NRCCR, CL2CM, UML, 1-to-K) as pure functions over
tensors, each with a reference test in ``tests/test_losses.py``; formulas follow docs/methods.md §3-7.

Conventions: embeddings are L2-normalised, so ``a @ b.T`` is a cosine-similarity matrix; in a batch,
row ``i`` of every view belongs to the same image (the positive is the diagonal) unless a function
says otherwise. ``temperature`` may be a float or a 0-d tensor (a learnable one).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Reduction = Literal["mean", "sum", "none"]

TEMPERATURE_MIN = 0.001  # 1-to-K / ALBEF clamp range for a learnable temperature (docs/methods.md §7)
TEMPERATURE_MAX = 0.5


def _reduce(per_item: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return per_item.mean()
    if reduction == "sum":
        return per_item.sum()
    if reduction == "none":
        return per_item
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")


# --------------------------------------------------------------------------------------------------
# Temperature
# --------------------------------------------------------------------------------------------------
def clamp_temperature(
    temperature: float | Tensor, min_value: float = TEMPERATURE_MIN, max_value: float = TEMPERATURE_MAX
) -> float | Tensor:
    """Clamp a temperature to ``[min_value, max_value]`` (out of place; a tensor keeps its graph).

    Args:
        temperature: a float or a tensor.
        min_value: lower bound (0.001 in the 1-to-K code).
        max_value: upper bound (0.5 in the 1-to-K code).

    Returns:
        The clamped temperature, of the same kind as the input.
    """
    if isinstance(temperature, Tensor):
        return temperature.clamp(min_value, max_value)
    return min(max(float(temperature), min_value), max_value)


class LearnableTemperature(nn.Module):
    """A learnable softmax temperature, initialised at 0.07 and kept in ``[0.001, 0.5]`` (docs/methods.md §7).

    Like the 1-to-K / ALBEF code, the parameter itself is projected back into range (in place, without
    gradient) at the start of a forward call, so gradients stay those of the identity (projected
    gradient descent). The projection is done only when the value is out of range, so calling the
    module several times inside one graph does not trip autograd's in-place check (the range check
    costs one host-device sync per call, negligible next to a training step).
    """

    def __init__(
        self, init: float = 0.07, min_value: float = TEMPERATURE_MIN, max_value: float = TEMPERATURE_MAX
    ):
        super().__init__()
        if not min_value <= init <= max_value:
            raise ValueError(f"init {init} outside [{min_value}, {max_value}]")
        self.min_value = min_value
        self.max_value = max_value
        self.temperature = nn.Parameter(torch.tensor(float(init)))  # ()

    def forward(self) -> Tensor:
        """Returns: the current temperature, a 0-d tensor in ``[min_value, max_value]``."""
        with torch.no_grad():
            value = self.temperature
            if bool((value < self.min_value) | (value > self.max_value)):
                value.clamp_(self.min_value, self.max_value)
        return self.temperature

    def extra_repr(self) -> str:
        return f"value={self.temperature.item():.4g}, range=[{self.min_value}, {self.max_value}]"


# --------------------------------------------------------------------------------------------------
# Baseline (docs/methods.md §3) and shared pieces
# --------------------------------------------------------------------------------------------------
def info_nce_per_sample(a: Tensor, b: Tensor, temperature: float | Tensor) -> Tensor:
    """Symmetric InfoNCE per pair: ``(CE of row i of a·bᵀ/τ + CE of column i) / 2``.

    Args:
        a: (B, D) embeddings; ``a[i]`` is positive with ``b[i]``.
        b: (B, D) embeddings.
        temperature: softmax temperature τ.

    Returns:
        (B,) per-pair losses.
    """
    logits = a @ b.T / temperature  # (B, B)
    a_to_b = -torch.diagonal(F.log_softmax(logits, dim=1))  # (B,)
    b_to_a = -torch.diagonal(F.log_softmax(logits, dim=0))  # (B,)
    return (a_to_b + b_to_a) / 2  # (B,)


def info_nce(a: Tensor, b: Tensor, temperature: float | Tensor = 0.07) -> Tensor:
    """Symmetric contrastive loss (CLIP/InfoNCE): the mean of the a→b and b→a cross-entropies.

    Args:
        a: (B, D) L2-normalised embeddings; ``a[i]`` is positive with ``b[i]``.
        b: (B, D) L2-normalised embeddings.
        temperature: softmax temperature τ.

    Returns:
        Scalar loss ``(CE(a·bᵀ/τ, diag) + CE(b·aᵀ/τ, diag)) / 2``.
    """
    return info_nce_per_sample(a, b, temperature).mean()


def triplet_hardest_negative(
    a: Tensor,
    b: Tensor,
    margin: float = 0.2,
    positive_mask: Tensor | None = None,
    reduction: Literal["sum", "mean"] = "sum",
) -> Tensor:
    """VSE++ max-of-hinges triplet loss in both directions (NRCCR's ``TripletLoss``, max_violation).

    For anchor ``a[i]`` the hardest negative is ``max_{j not positive} s_ij``; for anchor ``b[j]`` it is
    ``max_{i not positive} s_ij``; each contributes ``[margin + s_neg − s_pos]_+``.

    Args:
        a: (B, D) embeddings; ``a[i]`` is positive with ``b[i]``.
        b: (B, D) embeddings.
        margin: hinge margin (0.2 in NRCCR).
        positive_mask: optional (B, B) bool, True where ``a[i]`` and ``b[j]`` are also a positive pair
            (e.g. two captions of the same image in one batch); such pairs are never negatives. The
            diagonal is always treated as positive.
        reduction: ``"sum"`` over the batch (NRCCR's ``cost_style='sum'``, the default) or ``"mean"``.

    Returns:
        Scalar loss: (reduction over i of the a-anchored hinge) + (reduction over j of the b-anchored one).
    """
    scores = a @ b.T  # (B, B)
    positives = torch.diagonal(scores)  # (B,)
    not_negative = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)  # (B, B)
    if positive_mask is not None:
        not_negative = not_negative | positive_mask.to(torch.bool)
    # anchor a[i]: compare each row's negatives with that row's positive
    cost_a_anchor = (margin + scores - positives[:, None]).clamp(min=0)  # (B, B)
    # anchor b[j]: compare each column's negatives with that column's positive
    cost_b_anchor = (margin + scores - positives[None, :]).clamp(min=0)  # (B, B)
    cost_a_anchor = cost_a_anchor.masked_fill(not_negative, 0).amax(dim=1)  # (B,)
    cost_b_anchor = cost_b_anchor.masked_fill(not_negative, 0).amax(dim=0)  # (B,)
    if reduction == "sum":
        return cost_a_anchor.sum() + cost_b_anchor.sum()
    if reduction == "mean":
        return cost_a_anchor.mean() + cost_b_anchor.mean()
    raise ValueError(f"unknown reduction {reduction!r}; expected 'sum' or 'mean'")


# --------------------------------------------------------------------------------------------------
# 1-to-K contrastive (docs/methods.md §7)
# --------------------------------------------------------------------------------------------------
def one_to_k_contrastive(image: Tensor, texts: Tensor, temperature: float | Tensor, k: int,
                         language_weights: Tensor | None = None) -> Tensor:
    """1-to-K contrastive loss: one softmax over all K·B texts, so no language is a pivot.

    ``L_i2t = −(1/B) Σ_i Σ_k log softmax_over_all_texts(v_i·t/τ)[i,k]``,
    ``L_t2i = −(1/(BK)) Σ_j Σ_k log softmax_over_images(v·t_{j,k}/τ)[j]``, ``L = (L_i2t + L_t2i)/(2K)``
    (both divided by K, as in the CCRK code). With K = 1 it equals :func:`info_nce`, i.e. the sum of
    the two directions' cross-entropies halved.

    Args:
        image: (B, D) image embeddings.
        texts: (B·K, D) caption embeddings laid out image-major: ``texts[i*K + k]`` is caption k
            (language k) of image i.
        temperature: softmax temperature τ (see :class:`LearnableTemperature`).
        k: number of captions per image.
        language_weights: optional (K,) weights of the K positives of each image, summing to 1 (not in
            the paper, for ablations): positive k's log-probability counts ``K·w_k`` times in both
            directions; the softmaxes are unchanged. None (the paper) is ``w_k = 1/K``.

    Returns:
        Scalar loss.
    """
    batch = image.shape[0]
    if texts.shape[0] != batch * k:
        raise ValueError(f"texts has {texts.shape[0]} rows, expected B*K = {batch}*{k}")
    if language_weights is not None:
        if language_weights.shape != (k,) or abs(float(language_weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"language_weights must be K = {k} weights summing to 1, got {language_weights.tolist()}")
    logits = image @ texts.T / temperature  # (B, B*K)
    owner = torch.arange(batch * k, device=image.device) // k  # (B*K,) image index of each text
    is_positive = owner[None, :] == torch.arange(batch, device=image.device)[:, None]  # (B, B*K)
    if language_weights is not None:  # column c is language c % K of its image
        column = (k * language_weights.to(logits))[torch.arange(batch * k, device=image.device) % k]  # (B*K,)
        is_positive = is_positive * column[None, :]  # (B, B*K) weighted positives
    log_p_i2t = F.log_softmax(logits, dim=1)  # (B, B*K) over all texts
    log_p_t2i = F.log_softmax(logits, dim=0)  # (B, B*K) over images, per text
    loss_i2t = -(log_p_i2t * is_positive).sum(dim=1).mean()  # Σ_k, then mean over B
    loss_t2i = -(log_p_t2i * is_positive).sum(dim=0).mean()  # mean over B*K texts
    return (loss_i2t + loss_t2i) / (2 * k)


# --------------------------------------------------------------------------------------------------
# Distillation between distributions (NRCCR §4, CL2CM §5)
# --------------------------------------------------------------------------------------------------
def soft_cross_entropy_distillation(
    teacher_logits: Tensor, student_logits: Tensor, detach_teacher: bool = True
) -> Tensor:
    """Soft cross-entropy ``−Σ_j softmax(teacher)_j · log_softmax(student)_j``, averaged over rows.

    Equals KL(teacher ‖ student) + H(teacher); see :func:`kl_distillation` for the KL itself.

    Args:
        teacher_logits: (N, C) teacher logits (already divided by any temperature).
        student_logits: (N, C) student logits.
        detach_teacher: stop the gradient through the teacher (True = usual distillation).

    Returns:
        Scalar loss.
    """
    if detach_teacher:
        teacher_logits = teacher_logits.detach()
    teacher_p = F.softmax(teacher_logits, dim=-1)  # (N, C)
    student_log_p = F.log_softmax(student_logits, dim=-1)  # (N, C)
    return -(teacher_p * student_log_p).sum(dim=-1).mean()


def kl_distillation(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """KL(softmax(teacher) ‖ softmax(student)) over the last dim, averaged over rows; teacher detached.

    Args:
        teacher_logits: (N, C) teacher logits (stop-gradient).
        student_logits: (N, C) student logits.

    Returns:
        Scalar loss, 0 when the two are equal.
    """
    teacher_log_p = F.log_softmax(teacher_logits.detach(), dim=-1)  # (N, C)
    student_log_p = F.log_softmax(student_logits, dim=-1)  # (N, C)
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)  # (N,)
    return kl.mean()


# --------------------------------------------------------------------------------------------------
# NRCCR (docs/methods.md §4)
# --------------------------------------------------------------------------------------------------
def similarity_view_distillation(
    v: Tensor,
    h_c: Tensor,
    c_t: Tensor,
    temperature: float = 0.07,
    detach_visual_in_teacher: bool = False,
) -> Tensor:
    """NRCCR's similarity-view distillation ``L_sim`` (the code's ``DtlLoss``).

    Teacher distributions come from the cross-attention pseudo-target ``h_c`` (detached), student ones
    from the target-language branch ``c_t``; soft cross-entropy in both directions, averaged:
    image→text ``softmax_j(v_i·h_c_j/τ)`` vs ``softmax_j(v_i·c_t_j/τ)`` and text→image
    ``softmax_i(h_c_j·v_i/τ)`` vs ``softmax_i(c_t_j·v_i/τ)``.

    Args:
        v: (B, D) visual embeddings.
        h_c: (B, D) pseudo-target embeddings (teacher side; always detached).
        c_t: (B, D) target-language (MT) embeddings (student side).
        temperature: τ (0.07 in NRCCR).
        detach_visual_in_teacher: NRCCR's code detaches only ``h_c``, so ``v`` also receives gradient
            through the teacher softmax; set True to make the teacher a pure constant.

    Returns:
        Scalar loss.
    """
    h_c = h_c.detach()
    v_teacher = v.detach() if detach_visual_in_teacher else v
    teacher = v_teacher @ h_c.T / temperature  # (B, B) image→text
    student = v @ c_t.T / temperature  # (B, B)
    loss_v2t = soft_cross_entropy_distillation(teacher, student, detach_teacher=False)
    loss_t2v = soft_cross_entropy_distillation(teacher.T, student.T, detach_teacher=False)
    return (loss_v2t + loss_t2v) / 2


def feature_view_distillation(
    c_t: Tensor, h_c: Tensor, beta: float = 4.0, detach_target: bool = False
) -> Tensor:
    """NRCCR's feature-view distillation ``L_feat``: SmoothL1 (β = 4) between ``c_t`` and ``h_c``.

    Args:
        c_t: (B, D) target-language embeddings.
        h_c: (B, D) cross-attention pseudo-target embeddings.
        beta: SmoothL1 transition point (4 in NRCCR).
        detach_target: NRCCR's code does not detach ``h_c`` here (both branches get gradient);
            True makes it a one-way distillation.

    Returns:
        Scalar loss, the element-wise mean.
    """
    target = h_c.detach() if detach_target else h_c
    return F.smooth_l1_loss(c_t, target, beta=beta, reduction="mean")


def discriminator_loss(logits_en: Tensor, logits_tgt: Tensor) -> Tensor:
    """Language-discriminator loss: BCE with English = 1 and target language = 0.

    As in NRCCR's ``Adversarial.update``: ``0.5 * (BCE(en, 1) + BCE(tgt, 0))``, each a mean. Pass
    detached encoder features to the discriminator when computing this.

    Args:
        logits_en: (N, ...) discriminator logits on English features.
        logits_tgt: (M, ...) discriminator logits on target-language features.

    Returns:
        Scalar loss.
    """
    loss_en = F.binary_cross_entropy_with_logits(logits_en, torch.ones_like(logits_en))
    loss_tgt = F.binary_cross_entropy_with_logits(logits_tgt, torch.zeros_like(logits_tgt))
    return 0.5 * (loss_en + loss_tgt)


def encoder_adversarial_loss(logits_tgt: Tensor) -> Tensor:
    """Encoder-side adversarial loss: BCE of target features against the English label (1).

    NRCCR's ``gen_loss`` in ``GAN`` mode: the encoder is rewarded when the discriminator takes target
    features for English. Only the encoder's optimizer should step on this term.

    Args:
        logits_tgt: (M, ...) discriminator logits on (non-detached) target-language features.

    Returns:
        Scalar loss.
    """
    return F.binary_cross_entropy_with_logits(logits_tgt, torch.ones_like(logits_tgt))


# --------------------------------------------------------------------------------------------------
# CL2CM (docs/methods.md §5)
# --------------------------------------------------------------------------------------------------
def uniform_marginals(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform distribution over the non-padding tokens of each sequence.

    Args:
        mask: (B, L) bool or 0/1, True / 1 for real tokens.
        dtype: floating dtype of the result.

    Returns:
        (B, L) weights, ``1/n_valid`` on real tokens and 0 on padding.
    """
    mask = mask.to(dtype)  # (B, L)
    return mask / mask.sum(dim=-1, keepdim=True).clamp(min=1)  # (B, L)


def sinkhorn(
    cost: Tensor, a: Tensor, b: Tensor, epsilon: float = 0.05, iterations: int = 50
) -> Tensor:
    """Entropic optimal-transport plan by log-domain Sinkhorn, batched.

    Solves ``min_T ⟨T, C⟩ − ε H(T)`` s.t. ``T 1 = a``, ``Tᵀ 1 = b``. Potentials are updated with
    logsumexp, so small ε does not underflow. Zero entries of ``a`` / ``b`` mark padding: they get
    ``log a = −inf`` and zero mass in the plan, and the cost there is ignored (masked to 0, so even a
    NaN there does not reach the plan or the cost's gradient).
    The last update fits the columns, so ``Tᵀ1 = b`` exactly and ``T1 ≈ a`` up to convergence.

    Args:
        cost: (B, P, Q) or (P, Q) cost matrix.
        a: (B, P) or (P,) non-negative row marginals, each summing to the same mass as ``b``.
        b: (B, Q) or (Q,) non-negative column marginals.
        epsilon: entropic regularisation ε (0.05 in docs/methods.md §5).
        iterations: number of (row, column) update pairs (50 in docs/methods.md §5).

    Returns:
        Transport plan with the shape of ``cost``. Differentiable with respect to ``cost`` (unroll).

    Raises:
        ValueError: if some sequence has no positive marginal entry (nothing to transport).
    """
    unbatched = cost.dim() == 2
    if unbatched:
        cost, a, b = cost[None], a[None], b[None]
    valid_a = a > 0  # (B, P)
    valid_b = b > 0  # (B, Q)
    if not bool((valid_a.any(dim=-1) & valid_b.any(dim=-1)).all()):
        raise ValueError("every sequence needs at least one non-padding token on each side")
    valid_pair = valid_a[:, :, None] & valid_b[:, None, :]  # (B, P, Q)
    cost = cost.masked_fill(~valid_pair, 0.0)  # (B, P, Q) padding costs never matter
    neg_inf = torch.tensor(float("-inf"), dtype=cost.dtype, device=cost.device)
    tiny = torch.finfo(cost.dtype).tiny
    # torch.where (not log(0)) so that no inf * 0 reaches the backward pass
    log_a = torch.where(valid_a, a.to(cost.dtype).clamp(min=tiny).log(), neg_inf)  # (B, P)
    log_b = torch.where(valid_b, b.to(cost.dtype).clamp(min=tiny).log(), neg_inf)  # (B, Q)
    scaled_cost = cost / epsilon  # (B, P, Q)
    # scaled dual potentials u = f/ε, w = g/ε
    u = torch.zeros_like(log_a)  # (B, P)
    # padding columns start at -inf, not 0: otherwise the first row update counts them, and the plan
    # after a finite number of iterations would depend on how much padding a batch has
    w = torch.where(valid_b, torch.zeros_like(log_b), neg_inf)  # (B, Q)
    for _ in range(iterations):
        u = log_a - torch.logsumexp(w[:, None, :] - scaled_cost, dim=2)  # (B, P)
        w = log_b - torch.logsumexp(u[:, :, None] - scaled_cost, dim=1)  # (B, Q)
    plan = torch.exp(u[:, :, None] + w[:, None, :] - scaled_cost)  # (B, P, Q)
    return plan[0] if unbatched else plan


def word_ot_loss(
    tokens_s: Tensor,
    mask_s: Tensor,
    tokens_t: Tensor,
    mask_t: Tensor,
    epsilon: float = 0.05,
    iterations: int = 50,
    detach_plan: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """CL2CM word-level alignment: OT cost ``⟨T*, C⟩`` between source and target token sets.

    ``C_pq = 1 − cos(s_p, t_q)``; ``T*`` is the entropic Sinkhorn plan with uniform marginals over
    non-padding tokens, so ``⟨T*, C⟩`` is a transport-weighted mean cost in [0, 2].
    This is our interpretation (docs/methods.md §5): the doc gives ``⟨T*, C⟩`` with T* from Sinkhorn but
    not whether T* carries gradient. Default ``detach_plan=True`` (the usual choice, as in IOT/UOT
    alignment losses): T* is a fixed matching and gradients flow only through ``C``; with False the
    gradient is unrolled through all Sinkhorn iterations (more memory, same forward value).

    Args:
        tokens_s: (B, P, D) source (English) token features (need not be normalised).
        mask_s: (B, P) bool / 0-1, True for real tokens.
        tokens_t: (B, Q, D) target-language token features.
        mask_t: (B, Q) bool / 0-1.
        epsilon: Sinkhorn ε (0.05).
        iterations: Sinkhorn iterations (50).
        detach_plan: compute T* without gradient (see above).
        reduction: "mean" over the batch, or "none" for each pair's ``⟨T*_b, C_b⟩`` (B,). Pairs are
            independent, so several target languages can share one call (padded to one length:
            padding has zero mass and changes nothing).

    Returns:
        Scalar loss, mean over the batch of ``⟨T*_b, C_b⟩`` (or the (B,) costs).
    """
    s = F.normalize(tokens_s, dim=-1)  # (B, P, D)
    t = F.normalize(tokens_t, dim=-1)  # (B, Q, D)
    cost = 1.0 - s @ t.transpose(1, 2)  # (B, P, Q)
    valid_pair = mask_s.to(torch.bool)[:, :, None] & mask_t.to(torch.bool)[:, None, :]  # (B, P, Q)
    cost = cost.masked_fill(~valid_pair, 0.0)  # (B, P, Q)
    a = uniform_marginals(mask_s, cost.dtype)  # (B, P)
    b = uniform_marginals(mask_t, cost.dtype)  # (B, Q)
    if detach_plan:
        with torch.no_grad():
            plan = sinkhorn(cost.detach(), a, b, epsilon, iterations)  # (B, P, Q)
    else:
        plan = sinkhorn(cost, a, b, epsilon, iterations)  # (B, P, Q)
    costs = (plan * cost).sum(dim=(1, 2))  # (B,)
    if reduction == "none":
        return costs
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return costs.mean()


def relational_distillation(
    teacher_sim: Tensor, student_sim: Tensor, temperature: float = 0.07
) -> Tensor:
    """CL2CM knowledge transfer ``L_KT = KL(P^CL ‖ P^CM)`` over rows and over columns, averaged.

    Teacher ``P^CL_i = softmax_j(s_i·t_j/τ)`` (cross-lingual network, stop-gradient), student
    ``P^CM_i = softmax_j(v_i·t_j/τ)`` (cross-modal network); the column version normalises over i.
    Our interpretation (docs/methods.md §5) of "rows and columns": the mean of the two KLs, each averaged
    over its rows.

    Args:
        teacher_sim: (B, B) teacher cosine similarities ``s @ t.T`` (detached here).
        student_sim: (B, B) student cosine similarities ``v @ t.T``.
        temperature: τ (0.07).

    Returns:
        Scalar loss, 0 when the two similarity matrices are equal.
    """
    teacher = teacher_sim / temperature  # (B, B)
    student = student_sim / temperature  # (B, B)
    loss_rows = kl_distillation(teacher, student)
    loss_cols = kl_distillation(teacher.T, student.T)
    return (loss_rows + loss_cols) / 2


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
            evidence, i.e. it pushes a clean pair apart (issue 12, fault 3).

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
