"""Retrieval metrics as pure functions over similarity matrices: ranks both ways, R@K, median rank,
the per-direction report, and NRCCR's test-time fusion of two similarity matrices.

Conventions (docs/methods.md, section 2):

* ``sim`` is a ``(n_captions, n_images)`` similarity matrix; rows are caption queries, columns are
  images. NumPy arrays are used as they are (float32 stays float32, nothing is copied); torch
  tensors are converted to NumPy first.
* ``caption_to_image`` is an int array ``(n_captions,)`` giving each caption's image column; an
  image may have several captions.
* Ranks are 1-based.

Tie rule, used by every ranking function here: candidates are ordered by a stable sort on
descending score, ties broken by ascending index. So the rank of the correct candidate is
``1 + (number of candidates with a strictly greater score)
+ (number of candidates with an equal score and a smaller index)``. It is deterministic and neither
optimistic nor pessimistic on purpose; the reference code's unstable argsort makes ties arbitrary.
NaN scores never outrank anything; a NaN score for a correct pair is an error.

The ranking functions never sort: each compares every score with the correct one, in row chunks
that bound memory to a few MiB, so a (25000, 5000) float32 matrix is ranked in both directions in
a fraction of a second on two cores.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["text_to_image_ranks", "image_to_text_ranks", "retrieval_ranks", "recall_at_k", "median_rank", "retrieval_report",
           "minmax_normalise", "fuse_similarities"]

# Elements per row chunk: 2**20 float32 scores are 4 MiB, plus two 1 MiB boolean masks. Measured on
# the 2-core dev machine with (25000, 5000): chunks of 64..1024 rows are all within 10 %.
_CHUNK_ELEMENTS = 1 << 20


# --------------------------------------------------------------------------------------------------
# input handling


def _to_numpy(x: Any) -> np.ndarray:
    """A NumPy view of ``x``; torch tensors are detached and moved to the CPU (bfloat16 becomes
    float32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 holds it exactly
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _check_sim(sim: Any) -> np.ndarray:
    sim = _to_numpy(sim)
    if sim.ndim != 2:
        raise ValueError(f"sim must be a 2-D (n_captions, n_images) matrix, got shape {sim.shape}")
    if not (np.issubdtype(sim.dtype, np.floating) or np.issubdtype(sim.dtype, np.integer)):
        raise TypeError(f"sim must hold real numbers, got dtype {sim.dtype}")
    if 0 in sim.shape:
        raise ValueError(f"sim must not be empty, got shape {sim.shape}")
    return sim


def _check_caption_to_image(caption_to_image: Any, n_captions: int, n_images: int) -> np.ndarray:
    c2i = _to_numpy(caption_to_image)
    if c2i.shape != (n_captions,):
        raise ValueError(
            f"caption_to_image must have shape ({n_captions},) to match sim, got {c2i.shape}"
        )
    if not np.issubdtype(c2i.dtype, np.integer):
        raise TypeError(f"caption_to_image must hold integer image indices, got dtype {c2i.dtype}")
    c2i = c2i.astype(np.int64, copy=False)
    if c2i.size and (c2i.min() < 0 or c2i.max() >= n_images):
        raise ValueError(
            f"caption_to_image values must lie in [0, {n_images}), "
            f"got min {c2i.min()} and max {c2i.max()}"
        )
    return c2i


def _chunk_rows(n_images: int, chunk_rows: int | None) -> int:
    if chunk_rows is None:
        return max(1, _CHUNK_ELEMENTS // n_images)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def _correct_scores(sim: np.ndarray, c2i: np.ndarray) -> np.ndarray:
    correct = sim[np.arange(sim.shape[0]), c2i]  # (n_captions,)
    if np.issubdtype(correct.dtype, np.floating) and np.isnan(correct).any():
        bad = np.flatnonzero(np.isnan(correct))
        raise ValueError(
            f"{bad.size} correct caption-image scores are NaN (first captions: {bad[:5].tolist()})"
        )
    return correct


def _best_caption_per_image(correct: np.ndarray, c2i: np.ndarray, n_images: int):
    """For each image: the highest correct score among its captions and the smallest caption index
    reaching it. Under the tie rule that caption is the image's best-ranked own caption."""
    n_captions = correct.shape[0]
    if np.issubdtype(correct.dtype, np.floating):
        lowest = -np.inf
    else:
        lowest = np.iinfo(correct.dtype).min
    best = np.full(n_images, lowest, dtype=correct.dtype)  # (n_images,)
    np.maximum.at(best, c2i, correct)
    reaches_best = correct == best[c2i]  # (n_captions,)
    best_idx = np.full(n_images, n_captions, dtype=np.int64)  # n_captions marks "no caption"
    np.minimum.at(best_idx, c2i[reaches_best], np.flatnonzero(reaches_best))
    missing = np.flatnonzero(best_idx == n_captions)
    if missing.size:
        raise ValueError(
            f"{missing.size} of {n_images} images have no caption in caption_to_image "
            f"(first: {missing[:10].tolist()}); image-to-text ranks need at least one caption per "
            "image - drop those columns from sim first"
        )
    return best, best_idx


# --------------------------------------------------------------------------------------------------
# ranks


def retrieval_ranks(
    sim: Any,
    caption_to_image: Any,
    *,
    text_to_image: bool = True,
    image_to_text: bool = True,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Ranks in both directions from one pass over ``sim`` (each row chunk is read once, while it
    is in cache, for both directions).

    Tie rule: stable sort by descending score, ties broken by ascending index (see the module
    docstring).

    Args:
        sim: ``(n_captions, n_images)`` similarities, rows = caption queries.
        caption_to_image: ``(n_captions,)`` image column of each caption.
        text_to_image: compute the caption-query ranks.
        image_to_text: compute the image-query ranks (every image needs at least one caption).
        chunk_rows: rows per chunk; ``None`` picks about 2**20 scores per chunk.

    Returns:
        ``(t2i_ranks, i2t_ranks)``: int64 arrays ``(n_captions,)`` and ``(n_images,)``, 1-based;
        ``None`` for a direction not asked for.

    Example:
        >>> sim = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3]], dtype=np.float32)
        >>> t2i, i2t = retrieval_ranks(sim, np.array([0, 1, 1]))
        >>> t2i.tolist(), i2t.tolist()
        ([1, 2, 1], [1, 1])
    """
    sim = _check_sim(sim)
    n_captions, n_images = sim.shape
    c2i = _check_caption_to_image(caption_to_image, n_captions, n_images)
    step = _chunk_rows(n_images, chunk_rows)
    correct = _correct_scores(sim, c2i)  # (n_captions,)
    column_index = np.arange(n_images)  # (n_images,)

    t2i = np.empty(n_captions, dtype=np.int64) if text_to_image else None
    if image_to_text:
        best, best_idx = _best_caption_per_image(correct, c2i, n_images)  # (n_images,) x 2
        i2t = np.ones(n_images, dtype=np.int64)
    else:
        i2t = None

    for start in range(0, n_captions, step):
        stop = min(start + step, n_captions)
        block = sim[start:stop]  # (R, n_images), a view

        if t2i is not None:
            own = correct[start:stop, None]  # (R, 1)
            greater = np.count_nonzero(block > own, axis=1)  # (R,)
            tied = np.count_nonzero(block >= own, axis=1) - greater  # (R,), includes the own image
            rank = 1 + greater
            rows = np.flatnonzero(tied > 1)  # rows where another image ties with the own one
            if rows.size:
                sub = block[rows]  # (T, n_images)
                earlier = column_index[None, :] < c2i[start + rows, None]  # (T, n_images)
                rank[rows] += np.count_nonzero((sub == own[rows]) & earlier, axis=1)
            t2i[start:stop] = rank

        if i2t is not None:
            greater = np.count_nonzero(block > best, axis=0)  # (n_images,)
            at_least = np.count_nonzero(block >= best, axis=0)  # (n_images,)
            # Captions of this chunk that tie with an image's best own caption outrank it only when
            # they come first: all of them if that caption lies after the chunk, none if before.
            i2t += np.where(best_idx >= stop, at_least, greater)
            inside = np.flatnonzero((best_idx >= start) & (best_idx < stop))  # (M,)
            if inside.size:
                sub = block[:, inside]  # (R, M)
                row_index = np.arange(stop - start)[:, None]  # (R, 1)
                earlier = row_index < (best_idx[inside] - start)[None, :]  # (R, M)
                i2t[inside] += np.count_nonzero((sub == best[inside]) & earlier, axis=0)
    return t2i, i2t


def text_to_image_ranks(
    sim: Any, caption_to_image: Any, *, chunk_rows: int | None = None
) -> np.ndarray:
    """1-based rank of each caption's own image among all images.

    Tie rule: stable sort by descending score, ties broken by ascending image index, i.e.
    ``rank = 1 + #(images scoring higher) + #(images scoring equal with a smaller column index)``.

    Args:
        sim: ``(n_captions, n_images)`` similarities, rows = caption queries.
        caption_to_image: ``(n_captions,)`` image column of each caption.
        chunk_rows: rows per chunk (memory bound); ``None`` picks about 2**20 scores per chunk.

    Returns:
        int64 array ``(n_captions,)``.

    Example:
        >>> sim = np.array([[0.9, 0.1, 0.5],
        ...                 [0.4, 0.4, 0.2],
        ...                 [0.3, 0.6, 0.6]], dtype=np.float32)
        >>> text_to_image_ranks(sim, np.array([0, 1, 2])).tolist()
        [1, 2, 2]
    """
    ranks, _ = retrieval_ranks(sim, caption_to_image, image_to_text=False, chunk_rows=chunk_rows)
    return ranks


def image_to_text_ranks(
    sim: Any, caption_to_image: Any, *, chunk_rows: int | None = None
) -> np.ndarray:
    """1-based rank, for each image as query over all captions, of its best-placed own caption.

    This is the hit-rate definition of the reference code (the smallest rank among the image's
    captions), not torchmetrics' retrieval recall. Tie rule: stable sort by descending score,
    ties broken by ascending caption (row) index.

    Args:
        sim: ``(n_captions, n_images)`` similarities; column ``j`` is image ``j``'s query.
        caption_to_image: ``(n_captions,)`` image column of each caption.
        chunk_rows: rows per chunk (memory bound); ``None`` picks about 2**20 scores per chunk.

    Returns:
        int64 array ``(n_images,)``.

    Raises:
        ValueError: if an image has no caption.

    Example:
        >>> sim = np.array([[0.9, 0.8],
        ...                 [0.1, 0.8],
        ...                 [0.5, 0.2]], dtype=np.float32)
        >>> image_to_text_ranks(sim, np.array([0, 1, 1])).tolist()
        [1, 2]
    """
    _, ranks = retrieval_ranks(sim, caption_to_image, text_to_image=False, chunk_rows=chunk_rows)
    return ranks


def _check_ranks(ranks: Any) -> np.ndarray:
    ranks = _to_numpy(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if ranks.min() < 1:
        raise ValueError(f"ranks are 1-based, got a minimum of {ranks.min()}")
    return ranks


def recall_at_k(ranks: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Percentage of queries whose rank is at most ``k``, for each ``k``.

    Args:
        ranks: 1-based ranks ``(n_queries,)``, e.g. from :func:`text_to_image_ranks`.
        ks: cut-offs.

    Returns:
        ``{k: R@k in percent}`` as Python floats.

    Example:
        >>> recall_at_k(np.array([1, 2, 6, 11]), ks=(1, 5, 10))
        {1: 25.0, 5: 50.0, 10: 75.0}
    """
    ranks = _check_ranks(ranks)
    return {int(k): 100.0 * float(np.count_nonzero(ranks <= k)) / ranks.size for k in ks}


def median_rank(ranks: Any) -> float:
    """MedR: the median of the 1-based ranks; with an even number of queries, the mean of the two
    middle ranks (so it can end in .5).

    This is what NRCCR's evaluation reports: ``validate.py`` (lines 18 and 22) scores both directions
    with ``util/metrics.py``'s ``eval_q2m``, whose MedR is ``np.median`` of 1-based ranks (line 153;
    HuiGuanLab/nrccr). The same file's older ``t2v``/``v2t`` (VSE++ lineage, ``floor(median(r0)) + 1`` on
    0-based ranks, lines 26 and 55) round half ranks down, but NRCCR's validation and tests do not call
    them. Rounding would also hide half a rank of difference between two models.

    Args:
        ranks: 1-based ranks ``(n_queries,)``.

    Returns:
        MedR as a Python float.

    Example:
        >>> median_rank(np.array([1, 2, 5, 9]))
        3.5
    """
    ranks = _check_ranks(ranks)
    return float(np.median(ranks))


def retrieval_report(
    sim: Any,
    caption_to_image: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    chunk_rows: int | None = None,
) -> dict[str, float | int]:
    """All retrieval numbers of one similarity matrix, JSON-serialisable.

    Tie rule: stable sort by descending score, ties broken by ascending index (module docstring).

    Args:
        sim: ``(n_captions, n_images)`` similarities, rows = caption queries.
        caption_to_image: ``(n_captions,)`` image column of each caption; every image needs a
            caption (image-to-text).
        ks: recall cut-offs.
        chunk_rows: rows per chunk; ``None`` picks about 2**20 scores per chunk.

    Returns:
        A flat dict: ``t2i_R@k`` and ``i2t_R@k`` (percent) for each ``k``; ``SumR`` (sum of all of
        them, max 600 for the default ks); ``mean_recall`` (= SumR / (2 len(ks))); ``t2i_MedR``,
        ``i2t_MedR`` (:func:`median_rank`); ``t2i_mean_rank``, ``i2t_mean_rank``; and the sizes
        ``n_captions`` and ``n_images`` (ints). All other values are Python floats.

    Example:
        >>> sim = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3]], dtype=np.float32)
        >>> report = retrieval_report(sim, np.array([0, 1, 1]), ks=(1,))
        >>> report["t2i_R@1"], report["i2t_R@1"], report["SumR"], report["t2i_MedR"]
        (66.66666666666667, 100.0, 166.66666666666669, 1.0)
    """
    t2i, i2t = retrieval_ranks(sim, caption_to_image, chunk_rows=chunk_rows)
    report: dict[str, float | int] = {}
    sum_r = 0.0
    for direction, ranks in (("t2i", t2i), ("i2t", i2t)):
        for k, value in recall_at_k(ranks, ks).items():
            report[f"{direction}_R@{k}"] = value
            sum_r += value
    report["SumR"] = sum_r
    report["mean_recall"] = sum_r / (2 * len(ks))
    for direction, ranks in (("t2i", t2i), ("i2t", i2t)):
        report[f"{direction}_MedR"] = median_rank(ranks)
        report[f"{direction}_mean_rank"] = float(ranks.mean())
    report["n_captions"] = int(t2i.size)
    report["n_images"] = int(i2t.size)
    return report


# --------------------------------------------------------------------------------------------------
# NRCCR test-time fusion


def minmax_normalise(sim: Any) -> np.ndarray:
    """Min-max normalise a similarity matrix over the whole matrix (not per row) to [0, 1].

    A constant matrix has no range and maps to zeros. Float inputs keep their dtype; integer
    inputs become float64.

    Args:
        sim: similarity matrix of any shape.

    Returns:
        ``(sim - sim.min()) / (sim.max() - sim.min())``, a new array.

    Example:
        >>> minmax_normalise(np.array([[1.0, 3.0], [2.0, 5.0]])).tolist()
        [[0.0, 0.5], [0.25, 1.0]]
    """
    sim = _to_numpy(sim)
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    low, high = sim.min(), sim.max()
    out = np.subtract(sim, low)  # a new array; the division below happens in place
    if high > low:
        out /= high - low
    else:
        out[...] = 0
    return out


def fuse_similarities(
    sim_target: Any, sim_backtranslated: Any, weight_target: float = 0.5
) -> np.ndarray:
    """NRCCR test-time fusion: ``w * minmax(sim_target) + (1 - w) * minmax(sim_backtranslated)``.

    Each matrix is min-max normalised over the whole matrix first. NRCCR uses ``w = 0.5`` at test
    time and ``w = 0.8`` (target) for model selection.

    Args:
        sim_target: ``(n_captions, n_images)`` similarities of the target-language queries.
        sim_backtranslated: same shape, the queries' machine translations back into English.
        weight_target: weight ``w`` in [0, 1] of the target-language matrix.

    Returns:
        The fused matrix, same shape.

    Example:
        >>> fuse_similarities(np.array([[0.0, 2.0]]), np.array([[1.0, 0.0]]), 0.75).tolist()
        [[0.25, 0.75]]
    """
    if not 0.0 <= weight_target <= 1.0:
        raise ValueError(f"weight_target must lie in [0, 1], got {weight_target}")
    target = minmax_normalise(sim_target)
    back = minmax_normalise(sim_backtranslated)
    if target.shape != back.shape:
        raise ValueError(f"shapes differ: {target.shape} and {back.shape}")
    target *= weight_target
    back *= 1.0 - weight_target
    target += back
    return target
