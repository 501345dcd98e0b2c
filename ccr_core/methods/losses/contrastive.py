"""Contrastive losses: InfoNCE (per sample and mean), the hardest-negative triplet, 1-to-K contrastive,
and the temperature they share (fixed or learnable). Conventions in :mod:`ccr_core.methods.losses`."""
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
