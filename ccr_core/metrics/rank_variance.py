"""Mean rank variance (MRV) across languages: per instance (an image with one caption per language),
the rank of its own answer in each language, and the population spread of those ranks, averaged.
Conventions and tie rule as in :mod:`ccr_core.metrics.retrieval`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ccr_core.metrics.retrieval import (_check_caption_to_image, _check_sim, _to_numpy, image_to_text_ranks, retrieval_ranks,
                                        text_to_image_ranks)

__all__ = ["rank_table_text_to_image", "rank_table_image_to_text", "mrv", "mrv_report"]

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
