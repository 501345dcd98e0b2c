"""Noise injection: the right share of target-language training captions is swapped for another
item's, labels record it, nothing else changes, and a written noisy bundle reuses the original media."""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from ccr_core.data.bundle import load_bundle
from ccr_core.data.demo_world import build_demo_world
from ccr_core.data.noise import inject_noise, scramble_words, write_noisy_bundle
from conftest import make_tiny_bundle


@pytest.fixture
def bundle(tmp_path):
    return load_bundle(make_tiny_bundle(tmp_path / "tiny", n_images=60, langs=("en", "de", "fr")))


def _train_target(bundle, lang):
    return [c for c in bundle.captions if c.split == "train" and c.lang == lang]


def test_a_fraction_of_items_get_another_items_caption(bundle):
    captions, noise = inject_noise(bundle, rate=0.3, seed=1)
    texts_by_item = defaultdict(set)
    for c in bundle.captions:
        texts_by_item[(c.lang, c.item)].add(c.text)
    for lang in ("de", "fr"):
        train = _train_target(bundle, lang)
        swapped = [c for c in train if noise[c.id] == "noisy-correspondence"]
        assert len(swapped) == round(0.3 * len(train))  # one caption per item and language here
        new = {c.id: c for c in captions}
        for cap in swapped:
            text = new[cap.id].text
            assert text != cap.text and text not in texts_by_item[(lang, cap.item)]
            donors = [item for (l, item), texts in texts_by_item.items() if l == lang and text in texts]
            assert donors and all(d != cap.item for d in donors)
        assert all(noise[c.id] == "clean" for c in train if c not in swapped)
    # English, validation and test captions are untouched and unlabelled
    for old, new in zip(bundle.captions, captions):
        if old.lang == "en" or old.split != "train":
            assert new == old and old.id not in noise
        assert (new.id, new.item, new.lang, new.source, new.split) == (old.id, old.item, old.lang, old.source, old.split)


def test_injection_is_deterministic_per_seed(bundle):
    assert inject_noise(bundle, 0.4, seed=5) == inject_noise(bundle, 0.4, seed=5)
    assert inject_noise(bundle, 0.4, seed=5)[1] != inject_noise(bundle, 0.4, seed=6)[1]


def test_rate_zero_only_labels_and_languages_can_be_chosen(bundle):
    captions, noise = inject_noise(bundle, 0.0)
    assert captions == bundle.captions and set(noise.values()) == {"clean"}
    _, noise = inject_noise(bundle, 0.5, langs=["fr"])
    assert {bundle.captions[[c.id for c in bundle.captions].index(cid)].lang for cid in noise} == {"fr"}
    with pytest.raises(ValueError):
        inject_noise(bundle, 1.5)


def test_word_corruption_scrambles_other_items(bundle):
    captions, noise = inject_noise(bundle, 0.25, seed=2, corrupt_words=True)
    counts = Counter(noise.values())
    n = len(_train_target(bundle, "de")) + len(_train_target(bundle, "fr"))
    assert counts["noisy-correspondence"] == counts["mt:word-noise"] == round(0.25 * n / 2) * 2
    new = {c.id: c for c in captions}
    for cap in bundle.captions:
        if noise.get(cap.id) == "mt:word-noise":
            assert new[cap.id].text != cap.text
            assert set(new[cap.id].text.split()) <= set(cap.text.split())  # words moved, dropped or doubled


@pytest.mark.parametrize("text", ["ein großer roter Kreis links neben einem Stern.", "一个红色的圆在一颗蓝色星星的左边。", "ab"])
def test_scramble_words_changes_text_keeps_final_punctuation(text):
    import random

    rng = random.Random(0)
    for _ in range(20):
        out = scramble_words(text, rng)
        assert out != text
        if text.endswith(("。", ".")):
            assert out.endswith(text[-1])


def test_written_noisy_bundle_reuses_the_original_media(bundle, tmp_path):
    out = write_noisy_bundle(bundle, tmp_path / "noisy", rate=0.5, seed=3)
    noisy = load_bundle(out)  # checks every image path exists
    assert sorted(p.name for p in out.iterdir()) == ["captions.jsonl", "items.jsonl", "manifest.json", "noise.jsonl"]
    assert noisy.name == "tiny-noisy" and noisy.manifest.extra["noise_injection"]["rate"] == 0.5
    for item in noisy.items:
        assert noisy.image_path(item).resolve() == bundle.image_path(item.id).resolve()
    assert Counter(noisy.noise.values())["noisy-correspondence"] > 0


def test_demo_world_back_translations_follow_their_swapped_caption(tmp_path):
    world = load_bundle(build_demo_world(tmp_path / "w", seed=0, n_train=30, n_val=3, n_test=3, n_video=(4, 1, 1), progress=False))
    captions, noise = inject_noise(world, 0.5, seed=0, langs=["de", "ja"])
    old = {c.id: c for c in world.captions}
    new = {c.id: c for c in captions}
    swapped = [cid for cid, label in noise.items() if label == "noisy-correspondence"]
    assert swapped and all(old[cid].lang in ("de", "ja") for cid in swapped)
    for cid in swapped:
        donors = [c for c in world.captions if c.text == new[cid].text and c.source == "mt:sim" and c.lang == old[cid].lang]
        assert donors and all(d.item != old[cid].item for d in donors)
        assert any(new[cid + "#bt"].text == old[d.id + "#bt"].text for d in donors)
        assert world.item(donors[0].item).kind == world.item(old[cid].item).kind
    # labels of untouched MT captions keep the world's own MT-error labels
    kept = [cid for cid in noise if cid not in swapped and cid in world.noise]
    assert kept and all(noise[cid] == world.noise[cid] for cid in kept)
