"""Retrieval and uncertainty metrics as pure functions over similarity matrices and score vectors.

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

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "text_to_image_ranks",
    "image_to_text_ranks",
    "retrieval_ranks",
    "recall_at_k",
    "median_rank",
    "retrieval_report",
    "rank_table_text_to_image",
    "rank_table_image_to_text",
    "mrv",
    "mrv_report",
    "minmax_normalise",
    "fuse_similarities",
    "roc_curve",
    "pr_curve",
    "auroc",
    "auprc",
    "precision_at_k",
]

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
# MRV: mean rank variance across languages


def _instance_rows(
    sims_by_lang: Mapping[str, Any],
    caption_to_image_by_lang: Mapping[str, Any],
    instance_ids: Any | None,
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Languages, instance images, and per language the square ``(n_inst, n_inst)`` sub-matrix
    whose row ``i`` is the first caption of instance image ``i`` and whose columns are the
    instance images."""
    languages = list(sims_by_lang)
    if len(languages) < 2:
        raise ValueError(f"MRV needs at least two languages, got {languages}")
    if set(caption_to_image_by_lang) != set(languages):
        raise ValueError(
            f"sims_by_lang and caption_to_image_by_lang must have the same languages, got "
            f"{sorted(languages)} and {sorted(caption_to_image_by_lang)}"
        )
    sims = {lang: _check_sim(sims_by_lang[lang]) for lang in languages}
    n_images = {sim.shape[1] for sim in sims.values()}
    if len(n_images) != 1:
        raise ValueError(
            "every language must be scored against the same image gallery (same columns), got "
            + ", ".join(f"{lang}: {sims[lang].shape[1]}" for lang in languages)
        )
    (n_images,) = n_images

    first_caption = {}  # lang -> (n_images,) row of the image's first caption, -1 if none
    for lang in languages:
        c2i = _check_caption_to_image(caption_to_image_by_lang[lang], sims[lang].shape[0], n_images)
        first = np.full(n_images, -1, dtype=np.int64)
        # Writing rows in reverse order leaves the smallest row index of each image in place.
        rows = np.arange(c2i.size)[::-1]
        first[c2i[rows]] = rows
        first_caption[lang] = first

    if instance_ids is None:
        covered = np.logical_and.reduce([first_caption[lang] >= 0 for lang in languages])
        instances = np.flatnonzero(covered)
        if instances.size == 0:
            raise ValueError(f"no image has a caption in every language of {languages}")
    else:
        instances = _to_numpy(instance_ids).astype(np.int64).ravel()
        if instances.size == 0:
            raise ValueError("instance_ids is empty")
        if np.unique(instances).size != instances.size:
            raise ValueError("instance_ids must not repeat an image")
        if instances.min() < 0 or instances.max() >= n_images:
            raise ValueError(f"instance_ids must lie in [0, {n_images})")
        for lang in languages:
            lacking = instances[first_caption[lang][instances] < 0]
            if lacking.size:
                raise ValueError(
                    f"{lacking.size} instance images have no {lang!r} caption "
                    f"(first: {lacking[:10].tolist()})"
                )

    squares = {
        lang: sims[lang][first_caption[lang][instances]][:, instances] for lang in languages
    }  # lang -> (n_inst, n_inst)
    return languages, instances, squares


_RANK_TABLE_DOC = """

    An instance is one image together with one caption in each language. When a language has
    several captions for an image, the first one (smallest row index) is used; to use another,
    pass ``sim`` with only the rows you want. Ranks are computed on the retrieval problem
    restricted to the instances, identical in size for every language: the gallery is the
    instance images (text-to-image) or the chosen captions of the instance images
    (image-to-text). With the default ``instance_ids`` and one caption per image per language
    this is the whole test set. Tie rule: stable sort by descending score, ties broken by index.

    Args:
        sims_by_lang: ``{language: (n_captions_lang, n_images) similarities}``, all scored
            against the same images in the same column order.
        caption_to_image_by_lang: ``{language: (n_captions_lang,) image column of each caption}``.
        instance_ids: image columns that form the instances, in the order wanted; ``None`` takes
            every image with a caption in every language.

    Returns:
        ``{"direction": ..., "languages": [lang, ...], "instances": (n_instances,) image columns,
        "ranks": (n_instances, n_languages) int64}``.
"""


def _rank_table(direction, rank_fn, sims_by_lang, caption_to_image_by_lang, instance_ids) -> dict[str, Any]:
    """Ranks of each instance's own answer per language, on the instance-restricted problem."""
    languages, instances, squares = _instance_rows(sims_by_lang, caption_to_image_by_lang, instance_ids)
    own = np.arange(instances.size)
    ranks = np.stack([rank_fn(squares[lang], own) for lang in languages], axis=1)  # (n_instances, n_languages)
    return {"direction": direction, "languages": languages, "instances": instances, "ranks": ranks}


def rank_table_text_to_image(
    sims_by_lang: Mapping[str, Any],
    caption_to_image_by_lang: Mapping[str, Any],
    instance_ids: Any | None = None,
) -> dict[str, Any]:
    return _rank_table("t2i", text_to_image_ranks, sims_by_lang, caption_to_image_by_lang, instance_ids)


def rank_table_image_to_text(
    sims_by_lang: Mapping[str, Any],
    caption_to_image_by_lang: Mapping[str, Any],
    instance_ids: Any | None = None,
) -> dict[str, Any]:
    return _rank_table("i2t", image_to_text_ranks, sims_by_lang, caption_to_image_by_lang, instance_ids)


rank_table_text_to_image.__doc__ = (
    "Per-instance text-to-image ranks of the own image, one column per language (for MRV)."
    + _RANK_TABLE_DOC
    + """
    Example:
        >>> en = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
        >>> de = np.array([[0.3, 0.4], [0.2, 0.8]], dtype=np.float32)
        >>> table = rank_table_text_to_image({"en": en, "de": de},
        ...                                  {"en": np.array([0, 1]), "de": np.array([0, 1])})
        >>> table["ranks"].tolist()
        [[1, 2], [1, 1]]
    """
)
rank_table_image_to_text.__doc__ = (
    "Per-instance image-to-text ranks of the own caption, one column per language (for MRV)."
    + _RANK_TABLE_DOC
    + """
    Example:
        >>> en = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
        >>> de = np.array([[0.3, 0.9], [0.5, 0.8]], dtype=np.float32)
        >>> table = rank_table_image_to_text({"en": en, "de": de},
        ...                                  {"en": np.array([0, 1]), "de": np.array([0, 1])})
        >>> table["ranks"].tolist()
        [[1, 2], [1, 2]]
    """
)


def mrv(rank_table: Any) -> float:
    """Mean Rank Variance (CCRK ``xFlickrCO.py``): the mean over instances of the population
    standard deviation (ddof = 0, despite the name) of the instance's ranks across languages.

    Lower is better; 0 means every language ranks every instance alike.

    Args:
        rank_table: a dict from :func:`rank_table_text_to_image` / :func:`rank_table_image_to_text`,
            or a plain ``(n_instances, n_languages)`` array of ranks.

    Returns:
        MRV as a Python float.

    Example:
        >>> mrv(np.array([[1, 3], [2, 2]]))
        0.5
    """
    ranks = rank_table["ranks"] if isinstance(rank_table, Mapping) else rank_table
    ranks = _to_numpy(ranks)
    if ranks.ndim != 2 or ranks.shape[0] == 0 or ranks.shape[1] < 2:
        raise ValueError(
            f"ranks must be (n_instances, n_languages) with n_languages >= 2, got {ranks.shape}"
        )
    return float(np.std(ranks.astype(np.float64), axis=1, ddof=0).mean())


def mrv_report(
    sims_by_lang: Mapping[str, Any],
    caption_to_image_by_lang: Mapping[str, Any],
    instance_ids: Any | None = None,
) -> dict[str, Any]:
    """MRV in both directions and their mean, with the language set used (e.g. MRV_4 over
    en, de, ja, zh). Instances and caption choice as in :func:`rank_table_text_to_image`.

    Args:
        sims_by_lang: ``{language: (n_captions_lang, n_images) similarities}``, same image columns.
        caption_to_image_by_lang: ``{language: (n_captions_lang,) image column of each caption}``.
        instance_ids: image columns forming the instances; ``None``: every image with a caption
            in every language.

    Returns:
        ``{"languages": [...], "n_instances": int, "mrv_i2t": float, "mrv_t2i": float,
        "mrv_mean": float}`` (JSON-serialisable).

    Example:
        >>> en = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
        >>> de = np.array([[0.3, 0.4], [0.2, 0.8]], dtype=np.float32)
        >>> report = mrv_report({"en": en, "de": de},
        ...                     {"en": np.array([0, 1]), "de": np.array([0, 1])})
        >>> report["languages"], report["n_instances"]
        (['en', 'de'], 2)
        >>> report["mrv_i2t"], report["mrv_t2i"], report["mrv_mean"]
        (0.0, 0.25, 0.125)
    """
    languages, instances, squares = _instance_rows(
        sims_by_lang, caption_to_image_by_lang, instance_ids
    )
    own = np.arange(instances.size)
    t2i, i2t = {}, {}
    for lang in languages:
        t2i[lang], i2t[lang] = retrieval_ranks(squares[lang], own)
    mrv_i2t = mrv(np.stack([i2t[lang] for lang in languages], axis=1))
    mrv_t2i = mrv(np.stack([t2i[lang] for lang in languages], axis=1))
    return {
        "languages": languages,
        "n_instances": int(instances.size),
        "mrv_i2t": mrv_i2t,
        "mrv_t2i": mrv_t2i,
        "mrv_mean": (mrv_i2t + mrv_t2i) / 2,
    }


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


# --------------------------------------------------------------------------------------------------
# quality of a noise / uncertainty score (label 1 = noisy, higher score = more likely noisy)


def _check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = _to_numpy(scores).astype(np.float64).ravel()
    labels = _to_numpy(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.size} and {labels.size}")
    if scores.size == 0:
        raise ValueError("scores is empty")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (clean) or 1 (noisy)")
    return scores, labels.astype(bool)


def _curve_counts(scores: np.ndarray, labels: np.ndarray):
    """Cumulative true and false positives at each distinct threshold, highest threshold first."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]  # (n,) descending
    sorted_labels = labels[order]
    last_of_group = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), scores.size - 1]
    true_pos = np.cumsum(sorted_labels)[last_of_group]  # (n_thresholds,)
    false_pos = last_of_group + 1 - true_pos
    return true_pos, false_pos, sorted_scores[last_of_group]


def roc_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve for detecting noisy pairs (sklearn's ``roc_curve`` with
    ``drop_intermediate=False``).

    One point per distinct score, predicting "noisy" for scores >= threshold; tied scores move
    together, which is what gives tied pairs half credit in :func:`auroc`.

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; both classes must occur.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(n_distinct + 1,)``, starting at (0, 0) with threshold
        ``+inf`` and thresholds decreasing.

    Example:
        >>> fpr, tpr, thresholds = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    scores, labels = _check_scores_labels(scores, labels)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both noisy (1) and clean (0) labels")
    true_pos, false_pos, thresholds = _curve_counts(scores, labels)
    fpr = np.r_[0.0, false_pos / n_neg]
    tpr = np.r_[0.0, true_pos / n_pos]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the probability that a random noisy pair scores higher than a
    random clean one, ties counting one half (average ranks, as sklearn's ``roc_auc_score``).

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; both classes must occur.

    Returns:
        AUROC in [0, 1] as a Python float; 0.5 for uninformative (e.g. all-tied) scores.

    Example:
        >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    scores, labels = _check_scores_labels(scores, labels)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both noisy (1) and clean (0) labels")
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]) + 1]
    ends = np.r_[starts[1:], scores.size]
    average_rank = (starts + 1 + ends) / 2.0  # 1-based ranks starts+1 .. ends
    ranks = np.empty(scores.size)
    ranks[order] = np.repeat(average_rank, ends - starts)
    u_statistic = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def pr_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve for detecting noisy pairs (sklearn 1.9's ``precision_recall_curve``).

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; at least one noisy.

    Returns:
        ``(precision, recall, thresholds)``: precision and recall ``(n_distinct + 1,)`` with
        recall decreasing and a final point (precision 1, recall 0) that has no threshold;
        thresholds ``(n_distinct,)`` increasing.

    Example:
        >>> precision, recall, thresholds = pr_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        >>> precision.round(3).tolist(), recall.tolist()
        ([0.5, 0.667, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, 0.0])
    """
    scores, labels = _check_scores_labels(scores, labels)
    if not labels.any():
        raise ValueError("a precision-recall curve needs at least one noisy (1) label")
    true_pos, false_pos, thresholds = _curve_counts(scores, labels)
    precision = true_pos / (true_pos + false_pos)  # never 0/0: each threshold predicts >= 1
    recall = true_pos / true_pos[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def auprc(scores: Any, labels: Any) -> float:
    """Average precision (sklearn's ``average_precision_score``): the step-wise sum
    ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds, with no interpolation.

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean; at least one noisy.

    Returns:
        Average precision in [0, 1] as a Python float; equals the noisy fraction for all-tied
        scores.

    Example:
        >>> round(auprc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 4)
        0.8333
    """
    precision, recall, _ = pr_curve(scores, labels)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def precision_at_k(scores: Any, labels: Any, k: int) -> float:
    """Fraction of noisy pairs among the ``k`` highest-scored ones.

    Tie rule at the cut-off: stable sort by descending score, ties broken by ascending index, so
    among equal scores the earlier pairs are taken.

    Args:
        scores: ``(n,)`` noise scores, higher = more likely noisy.
        labels: ``(n,)`` 1 = noisy, 0 = clean.
        k: how many top-scored pairs to inspect, 1 <= k <= n.

    Returns:
        Precision@k in [0, 1] as a Python float.

    Example:
        >>> precision_at_k([0.9, 0.2, 0.7, 0.7], [1, 1, 0, 1], k=3)
        0.6666666666666666
    """
    scores, labels = _check_scores_labels(scores, labels)
    if not 1 <= k <= scores.size:
        raise ValueError(f"k must lie in [1, {scores.size}], got {k}")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].sum()) / k
