"""Tests of ccr_core.metrics against independent brute-force NumPy references (loops and stable
argsorts) on seeded random inputs of odd sizes, with deliberate ties, plus hand-computed cases."""
from __future__ import annotations

import doctest
import json
import math
import statistics

import numpy as np
import pytest
import torch

from ccr_core import metrics
from ccr_core.metrics import (
    auprc,
    auroc,
    fuse_similarities,
    image_to_text_ranks,
    median_rank,
    minmax_normalise,
    mrv,
    mrv_report,
    pr_curve,
    precision_at_k,
    rank_table_image_to_text,
    rank_table_text_to_image,
    recall_at_k,
    retrieval_report,
    retrieval_ranks,
    roc_curve,
    text_to_image_ranks,
)

try:
    import sklearn.metrics as skm
except ImportError:  # pragma: no cover - sklearn comes with umap-learn in the dev venv
    skm = None


# --------------------------------------------------------------------------------------------------
# brute-force references: loops over queries, a stable argsort per query


def _stable_descending(scores: np.ndarray) -> np.ndarray:
    """Indices sorted by descending score, ties by ascending index (the documented tie rule)."""
    return np.array(sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i)))


def ref_text_to_image_ranks(sim, c2i):
    ranks = []
    for row, own in zip(sim, c2i):
        order = list(_stable_descending(row))
        ranks.append(order.index(own) + 1)
    return np.array(ranks)


def ref_image_to_text_ranks(sim, c2i):
    ranks = []
    for image in range(sim.shape[1]):
        order = list(_stable_descending(sim[:, image]))
        own = [i for i in range(len(c2i)) if c2i[i] == image]
        ranks.append(min(order.index(i) + 1 for i in own))
    return np.array(ranks)


def ref_recall(ranks, k):
    return 100.0 * sum(1 for r in ranks if r <= k) / len(ranks)


def ref_auroc(scores, labels):
    positives = [s for s, y in zip(scores, labels) if y == 1]
    negatives = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def ref_average_precision(scores, labels):
    """Sum over distinct thresholds t, highest first, of (recall(t) - previous recall) times
    precision(t)."""
    n_pos = sum(labels)
    ap, previous_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        predicted = [y for s, y in zip(scores, labels) if s >= t]
        recall = sum(predicted) / n_pos
        ap += (recall - previous_recall) * sum(predicted) / len(predicted)
        previous_recall = recall
    return ap


def _random_problem(seed, n_captions, n_images, decimals=None, shuffle=True):
    """Random sim with every image captioned (1..several captions each); ``decimals`` rounds the
    scores to force ties."""
    rng = np.random.default_rng(seed)
    c2i = np.concatenate([np.arange(n_images), rng.integers(0, n_images, n_captions - n_images)])
    if shuffle:
        c2i = rng.permutation(c2i)
    sim = rng.standard_normal((n_captions, n_images)).astype(np.float32)
    if decimals is not None:
        sim = np.round(sim, decimals).astype(np.float32)
    return sim, c2i


PROBLEMS = [
    # (seed, n_captions, n_images, decimals): odd sizes, several captions per image, ties
    (0, 37, 13, None),
    (1, 37, 13, 1),
    (2, 101, 29, None),
    (3, 101, 29, 1),
    (4, 101, 29, 0),  # very coarse: most scores tie
    (5, 53, 53, 2),
    (6, 13, 1, 1),  # a single image
]


# --------------------------------------------------------------------------------------------------
# ranks


@pytest.mark.parametrize("seed,n_captions,n_images,decimals", PROBLEMS)
@pytest.mark.parametrize("chunk_rows", [None, 1, 7])
def test_ranks_match_brute_force(seed, n_captions, n_images, decimals, chunk_rows):
    sim, c2i = _random_problem(seed, n_captions, n_images, decimals)
    expected_t2i = ref_text_to_image_ranks(sim, c2i)
    expected_i2t = ref_image_to_text_ranks(sim, c2i)
    np.testing.assert_array_equal(text_to_image_ranks(sim, c2i, chunk_rows=chunk_rows),
                                  expected_t2i)
    np.testing.assert_array_equal(image_to_text_ranks(sim, c2i, chunk_rows=chunk_rows),
                                  expected_i2t)
    t2i, i2t = retrieval_ranks(sim, c2i, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(t2i, expected_t2i)
    np.testing.assert_array_equal(i2t, expected_i2t)


def test_ranks_with_sorted_captions_and_constant_matrix():
    sim, c2i = _random_problem(7, 45, 9, decimals=1, shuffle=False)
    c2i = np.sort(c2i)
    np.testing.assert_array_equal(text_to_image_ranks(sim, c2i, chunk_rows=4),
                                  ref_text_to_image_ranks(sim, c2i))
    np.testing.assert_array_equal(image_to_text_ranks(sim, c2i, chunk_rows=4),
                                  ref_image_to_text_ranks(sim, c2i))
    # All scores tied: the rank is 1 + the number of candidates with a smaller index.
    flat = np.zeros((6, 4), dtype=np.float32)
    c2i = np.array([3, 2, 1, 0, 0, 3])
    assert text_to_image_ranks(flat, c2i).tolist() == [4, 3, 2, 1, 1, 4]
    assert image_to_text_ranks(flat, c2i).tolist() == [4, 3, 2, 1]


def test_ranks_hand_computed_3x3():
    sim = np.array([[0.9, 0.1, 0.5],
                    [0.4, 0.4, 0.2],    # own image 1 ties with image 0, which comes first
                    [0.3, 0.6, 0.6]],   # own image 2 ties with image 1
                   dtype=np.float32)
    c2i = np.array([0, 1, 2])
    assert text_to_image_ranks(sim, c2i).tolist() == [1, 2, 2]
    # columns as queries: image 0 -> [0.9, 0.4, 0.3]: caption 0 first; image 1 -> [0.1, 0.4, 0.6]:
    # caption 1 second; image 2 -> [0.5, 0.2, 0.6]: caption 2 first.
    assert image_to_text_ranks(sim, c2i).tolist() == [1, 2, 1]


def test_ranks_accept_torch_float64_and_infinities():
    sim, c2i = _random_problem(8, 31, 11, decimals=1)
    expected = ref_text_to_image_ranks(sim, c2i)
    np.testing.assert_array_equal(text_to_image_ranks(torch.from_numpy(sim), torch.from_numpy(c2i)),
                                  expected)
    np.testing.assert_array_equal(text_to_image_ranks(sim.astype(np.float64), c2i), expected)
    np.testing.assert_array_equal(
        text_to_image_ranks(torch.from_numpy(sim).to(torch.bfloat16), c2i),
        ref_text_to_image_ranks(torch.from_numpy(sim).to(torch.bfloat16).float().numpy(), c2i))
    sim = sim.copy()
    sim[0, c2i[0]] = -np.inf
    sim[1, :] = np.inf
    sim[:, 3] = -np.inf
    np.testing.assert_array_equal(text_to_image_ranks(sim, c2i), ref_text_to_image_ranks(sim, c2i))
    np.testing.assert_array_equal(image_to_text_ranks(sim, c2i, chunk_rows=5),
                                  ref_image_to_text_ranks(sim, c2i))


def test_rank_errors():
    sim = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="no caption"):
        image_to_text_ranks(sim, np.array([0, 0, 1, 1]))  # image 2 has none
    assert text_to_image_ranks(sim, np.array([0, 0, 1, 1])).tolist() == [1, 1, 2, 2]  # fine here
    with pytest.raises(ValueError, match="shape"):
        text_to_image_ranks(sim, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="lie in"):
        text_to_image_ranks(sim, np.array([0, 1, 2, 3]))
    with pytest.raises(TypeError):
        text_to_image_ranks(sim, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="2-D"):
        text_to_image_ranks(np.zeros(3), np.array([0, 1, 2]))
    bad = sim.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        text_to_image_ranks(bad, np.array([0, 2, 1, 0]))


# --------------------------------------------------------------------------------------------------
# recalls and report


@pytest.mark.parametrize("seed,n_captions,n_images,decimals", PROBLEMS[:4])
def test_retrieval_report_matches_brute_force(seed, n_captions, n_images, decimals):
    sim, c2i = _random_problem(seed, n_captions, n_images, decimals)
    t2i = ref_text_to_image_ranks(sim, c2i)
    i2t = ref_image_to_text_ranks(sim, c2i)
    report = retrieval_report(sim, c2i)
    sum_r = 0.0
    for direction, ranks in (("t2i", t2i), ("i2t", i2t)):
        for k in (1, 5, 10):
            assert report[f"{direction}_R@{k}"] == pytest.approx(ref_recall(ranks, k))
            sum_r += ref_recall(ranks, k)
        # NRCCR's evaluation (util/metrics.py eval_q2m): np.median of the 1-based ranks, halves kept
        assert report[f"{direction}_MedR"] == statistics.median(map(float, ranks))
        assert report[f"{direction}_mean_rank"] == pytest.approx(statistics.mean(map(float, ranks)))
    assert report["SumR"] == pytest.approx(sum_r)
    assert report["mean_recall"] == pytest.approx(sum_r / 6)
    assert (report["n_captions"], report["n_images"]) == (n_captions, n_images)
    assert json.loads(json.dumps(report)) == report
    assert all(type(v) in (float, int) for v in report.values())


def test_recall_and_median_hand_computed():
    assert recall_at_k(np.array([1, 2, 6, 11]), ks=(1, 5, 10)) == {1: 25.0, 5: 50.0, 10: 75.0}
    assert recall_at_k([3], ks=(1, 3)) == {1: 0.0, 3: 100.0}
    assert median_rank(np.array([4, 1, 3])) == 3.0
    assert median_rank(np.array([1, 2, 5, 9])) == 3.5  # an even number of queries: the mean of the middle two
    assert median_rank(np.array([4, 5, 6, 7, 1, 9])) == 5.5  # NRCCR's eval_q2m gives np.median = 5.5
    with pytest.raises(ValueError, match="1-based"):
        recall_at_k(np.array([0, 1]))


# --------------------------------------------------------------------------------------------------
# MRV


def ref_mrv(ranks):
    return statistics.mean(statistics.pstdev(map(float, row)) for row in ranks)


def test_mrv_hand_computed():
    assert mrv(np.array([[1, 3], [2, 2]])) == pytest.approx(0.5)
    assert mrv({"ranks": np.array([[1, 1, 1], [4, 1, 1]])}) == pytest.approx(
        (0 + math.sqrt(2.0)) / 2)
    with pytest.raises(ValueError):
        mrv(np.array([[1], [2]]))  # one language


def _multilingual_problem(seed):
    """Three languages over 23 images: en has 1-3 captions per image, de one per image, ja misses
    images 4 and 11; rounded scores make ties."""
    rng = np.random.default_rng(seed)
    n_images = 23
    c2i = {
        "en": rng.permutation(np.concatenate([np.arange(n_images), rng.integers(0, n_images, 20)])),
        "de": rng.permutation(n_images),
        "ja": np.array([i for i in range(n_images) if i not in (4, 11)]),
    }
    sims = {lang: np.round(rng.standard_normal((len(c), n_images)), 1).astype(np.float32)
            for lang, c in c2i.items()}
    return sims, c2i


def _ref_rank_tables(sims, c2i, instances):
    """Per language: the first caption of each instance image, on the instance-only problem."""
    t2i, i2t = [], []
    for lang in sims:
        rows = [min(r for r in range(len(c2i[lang])) if c2i[lang][r] == image)
                for image in instances]
        square = sims[lang][np.ix_(rows, instances)]
        own = np.arange(len(instances))
        t2i.append(ref_text_to_image_ranks(square, own))
        i2t.append(ref_image_to_text_ranks(square, own))
    return np.stack(t2i, axis=1), np.stack(i2t, axis=1)


@pytest.mark.parametrize("instance_ids", [None, [9, 0, 17, 3, 22, 5, 14]])
def test_rank_tables_and_mrv_report_match_brute_force(instance_ids):
    sims, c2i = _multilingual_problem(11)
    expected_instances = ([i for i in range(23) if i not in (4, 11)]
                          if instance_ids is None else instance_ids)
    ref_t2i, ref_i2t = _ref_rank_tables(sims, c2i, expected_instances)

    t2i = rank_table_text_to_image(sims, c2i, instance_ids)
    i2t = rank_table_image_to_text(sims, c2i, instance_ids)
    for table, ref in ((t2i, ref_t2i), (i2t, ref_i2t)):
        assert table["languages"] == ["en", "de", "ja"]
        assert table["instances"].tolist() == expected_instances
        np.testing.assert_array_equal(table["ranks"], ref)
        assert mrv(table) == pytest.approx(ref_mrv(ref))

    report = mrv_report(sims, c2i, instance_ids)
    assert report["languages"] == ["en", "de", "ja"]
    assert report["n_instances"] == len(expected_instances)
    assert report["mrv_t2i"] == pytest.approx(ref_mrv(ref_t2i))
    assert report["mrv_i2t"] == pytest.approx(ref_mrv(ref_i2t))
    assert report["mrv_mean"] == pytest.approx((ref_mrv(ref_t2i) + ref_mrv(ref_i2t)) / 2)
    assert json.loads(json.dumps(report)) == report


def test_mrv_errors():
    sims, c2i = _multilingual_problem(12)
    with pytest.raises(ValueError, match="no 'ja' caption"):
        rank_table_text_to_image(sims, c2i, [0, 4])
    with pytest.raises(ValueError, match="two languages"):
        mrv_report({"en": sims["en"]}, {"en": c2i["en"]})
    with pytest.raises(ValueError, match="same image gallery"):
        mrv_report({"en": sims["en"], "de": sims["de"][:, :5]}, {"en": c2i["en"], "de": c2i["de"]})


# --------------------------------------------------------------------------------------------------
# NRCCR fusion


def test_minmax_and_fusion_match_brute_force():
    rng = np.random.default_rng(21)
    target = rng.standard_normal((17, 9)).astype(np.float32)
    back = 3 * rng.standard_normal((17, 9)).astype(np.float32) + 1
    ref = {}
    for name, m in (("target", target), ("back", back)):
        low, high = min(m.ravel()), max(m.ravel())
        ref[name] = np.array([[(x - low) / (high - low) for x in row] for row in m])
    normalised = minmax_normalise(target)
    assert normalised.dtype == np.float32
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    np.testing.assert_allclose(normalised, ref["target"], rtol=1e-6, atol=1e-6)
    for w in (0.5, 0.8, 0.0, 1.0):
        fused = fuse_similarities(target, torch.from_numpy(back), weight_target=w)
        np.testing.assert_allclose(fused, w * ref["target"] + (1 - w) * ref["back"],
                                   rtol=1e-6, atol=1e-6)
    assert np.all(target == target)  # inputs untouched
    np.testing.assert_array_equal(minmax_normalise(np.full((2, 3), 7.0)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        fuse_similarities(target, back, weight_target=1.5)
    with pytest.raises(ValueError):
        fuse_similarities(target, back[:, :4])


# --------------------------------------------------------------------------------------------------
# noise-detection quality


def _score_problems():
    rng = np.random.default_rng(31)
    for n, decimals in ((41, None), (97, 1), (33, 0)):
        labels = (rng.random(n) < 0.3).astype(int)
        labels[:2] = (0, 1)  # both classes present
        scores = rng.standard_normal(n) + labels
        if decimals is not None:
            scores = np.round(scores, decimals)
        yield scores, labels


@pytest.mark.parametrize("scores,labels", list(_score_problems()))
def test_auroc_and_auprc_match_references(scores, labels):
    assert auroc(scores, labels) == pytest.approx(ref_auroc(scores, labels))
    assert auprc(scores, labels) == pytest.approx(ref_average_precision(list(scores), list(labels)))
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(scores, labels))
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)
    if skm is not None:
        assert auroc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores))
        assert auprc(scores, labels) == pytest.approx(skm.average_precision_score(labels, scores))
        for ours, theirs in zip(roc_curve(scores, labels),
                                skm.roc_curve(labels, scores, drop_intermediate=False)):
            np.testing.assert_allclose(ours, theirs)
        for ours, theirs in zip(pr_curve(scores, labels),
                                skm.precision_recall_curve(labels, scores)):
            np.testing.assert_allclose(ours, theirs)


def test_auroc_auprc_hand_computed():
    labels = np.array([0, 0, 1, 0, 1])
    assert auroc(labels * 2.0, labels) == 1.0  # perfect
    assert auroc(-labels, labels) == 0.0  # inverted
    assert auroc(np.zeros(5), labels) == 0.5  # all tied
    assert auprc(labels * 2.0, labels) == 1.0
    assert auprc(np.zeros(5), labels) == pytest.approx(0.4)  # the noisy fraction
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    with pytest.raises(ValueError, match="both"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="0 \\(clean\\) or 1"):
        auroc([0.1, 0.2], [0, 2])


def test_precision_at_k():
    scores = [0.9, 0.2, 0.7, 0.7, 0.1]
    labels = [1, 1, 0, 1, 0]
    # descending with ties by index: 0 (noisy), 2 (clean), 3 (noisy), 1 (noisy), 4 (clean)
    assert [precision_at_k(scores, labels, k) for k in range(1, 6)] == pytest.approx(
        [1.0, 0.5, 2 / 3, 0.75, 0.6])
    rng = np.random.default_rng(41)
    scores = np.round(rng.standard_normal(59), 1)
    labels = (rng.random(59) < 0.4).astype(int)
    order = _stable_descending(scores)
    for k in (1, 7, 30, 59):
        assert precision_at_k(scores, labels, k) == pytest.approx(labels[order[:k]].sum() / k)
    with pytest.raises(ValueError):
        precision_at_k(scores, labels, 0)


def test_docstring_examples():
    results = [doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
               for module in (metrics.retrieval, metrics.rank_variance, metrics.detection)]
    assert sum(r.attempted for r in results) > 15
    assert sum(r.failed for r in results) == 0
