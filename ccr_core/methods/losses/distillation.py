"""Distillation and alignment losses of NRCCR (docs/methods.md §4) and CL2CM (§5): soft cross-entropy
and KL between distributions, similarity- and feature-view distillation, the language discriminator,
Sinkhorn optimal transport over words, and relational distillation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
