"""Flickr8k-ML built from the real mirror: exact counts (recomputed here from the raw files with
plain code, and headline numbers checked by hand), the Multi30K join, validation and fetch."""
from __future__ import annotations

import gzip
import os
import urllib.error
from collections import Counter
from pathlib import Path

import pytest

from ccr_core.data import flickr8k_ml
from ccr_core.data.bundle import load_bundle
from ccr_core.data.flickr8k_ml import fetch_flickr8k_ml, flickr8k_ml_counts, format_counts, verify_layout

pytestmark = pytest.mark.shared_data
BUILD_SECONDS_LIMIT = 30


@pytest.fixture(scope="module")
def built(flickr8k_ml_built):
    return flickr8k_ml_built  # (root, build seconds), built once per session (test_browser_flickr cuts the same bundle)


@pytest.fixture(scope="module")
def bundle(built):
    return load_bundle(built[0])  # validates every line, the hashes and that every photo exists


def _raw_counts(data: Path) -> tuple[dict, Counter]:
    """Items per split and captions per (split, lang, source), straight from the upstream files."""
    split_of = {}
    for split in ("train", "val", "test"):
        for image in open(data / f"flickr8kcn/data/flickr8k{split}.txt", encoding="utf-8").read().split():
            split_of[image] = split
    photos = {name[: -len(".jpg")] for name in os.listdir(data / "flickr8k/images")}
    counts: Counter = Counter()
    for name, lang, source, splits in [
        ("flickr8kenc.caption.txt", "en", "human", ("train", "val", "test")),
        ("flickr8kzhc.caption.txt", "zh", "human", ("train", "val", "test")),
        ("flickr8kzhmtest.captions.txt", "zh", "human-translation", ("train", "val", "test")),
        ("flickr8kzhb.caption.txt", "zh", "mt:baidu", ("train", "val")),
        ("flickr8kzhg.caption.txt", "zh", "mt:google", ("train", "val")),
    ]:
        for line in open(data / "flickr8kcn/data" / name, encoding="utf-8"):
            image = line.split(" ", 1)[0].split("#")[0]
            if image.endswith(".jpg"):
                image = image[:-4]
            if image in photos and split_of.get(image) in splits:
                counts[(split_of[image], lang, source)] += 1
    flickr8k_of = {image.split("_")[0] + ".jpg": image for image in split_of}
    m30k = data / "multi30k/data"
    jobs = [(f"task1/image_splits/{s}.txt", f"task1/raw/{s}.{lang}.gz", lang, "human-translation")
            for s in ("train", "val", "test_2016_flickr") for lang in ("de", "fr", "cs")]
    jobs += [(f"task2/image_splits/{s}_images.txt", f"task2/raw/{s}.{n}.de.gz", "de", "human")
             for s in ("train", "val", "test_2016") for n in range(1, 6)]
    for image_list, caption_file, lang, source in jobs:
        images = open(m30k / image_list, encoding="utf-8").read().split()
        lines = gzip.open(m30k / caption_file, "rt", encoding="utf-8").read().split("\n")[:-1]
        assert len(lines) == len(images)
        for image in images:
            if image in flickr8k_of:
                counts[(split_of[flickr8k_of[image]], lang, source)] += 1
    return dict(Counter(split_of.values())), counts


def test_build_is_quick(built):
    assert built[1] < BUILD_SECONDS_LIMIT, f"building Flickr8k-ML took {built[1]:.1f} s"


def test_counts_match_the_raw_files(bundle, shared_data):
    items, captions = _raw_counts(shared_data)
    counts = flickr8k_ml_counts(bundle)
    assert counts["items"] == items
    assert counts["captions"] == dict(captions)
    assert bundle.manifest.extra["counts"]["captions"] == {"/".join(k): v for k, v in counts["captions"].items()}
    print("\n" + format_counts(counts))


def test_headline_counts(bundle):
    """Numbers checked by hand against the mirror's README and the raw files."""
    counts = flickr8k_ml_counts(bundle)
    assert counts["items"] == {"train": 6000, "val": 1000, "test": 1000}
    c = counts["captions"]
    for split, n_images in counts["items"].items():
        assert c[(split, "en", "human")] == 5 * n_images
        assert c[(split, "zh", "human")] == 5 * n_images
    assert c[("test", "zh", "human-translation")] == 1000 * 5
    assert ("train", "zh", "human-translation") not in c
    assert c[("train", "zh", "mt:baidu")] == c[("train", "zh", "mt:google")] == 30000
    assert c[("val", "zh", "mt:baidu")] == c[("val", "zh", "mt:google")] == 5000
    assert ("test", "zh", "mt:baidu") not in c and ("test", "zh", "mt:google") not in c
    # Multi30K: one translation per joined photo and language; five German captions per joined photo.
    for split, n in {"train": 5528, "val": 934, "test": 929}.items():
        for lang in ("de", "fr", "cs"):
            assert c[(split, lang, "human-translation")] == n
        assert c[(split, "de", "human")] == 5 * n
    assert not any(lang == "en" and source != "human" for _, lang, source in c)  # no Multi30K English
    assert sum(c.values()) == len(bundle.captions) == 214128


def test_every_image_has_its_five_english_and_chinese_captions(bundle):
    per_item = Counter((cap.item, cap.lang) for cap in bundle.captions if cap.source == "human" and cap.lang in ("en", "zh"))
    assert set(per_item.values()) == {5}
    assert len(per_item) == 2 * len(bundle.items)


def test_report_of_what_was_skipped(bundle):
    extra = bundle.manifest.extra
    assert extra["photos_in_folder"] == 8091
    skipped = extra["skipped"]
    assert skipped["images_not_in_photo_folder"]["images"] == ["2258277193_586949ec62.jpg.1"]
    assert skipped["images_not_in_photo_folder"]["captions_per_file"] == {
        "flickr8kenc.caption.txt": 5, "flickr8kzhb.caption.txt": 5, "flickr8kzhg.caption.txt": 5,
    }
    assert len(skipped["photos_in_no_standard_split"]["images"]) == 8091 - 8000
    # README: 7,478 of the mirrored photos are in Multi30K (6,993 train, 242 val, 243 test_2016)
    assert extra["multi30k_images_joined"] == {"train": 6993, "val": 242, "test_2016_flickr": 243}
    assert bundle.manifest.languages == ["en", "zh", "de", "fr", "cs"]
    assert bundle.manifest.name == "flickr8k-ml"
    assert "stand-in for MT" in bundle.manifest.description
    assert "Flickr Terms of Use" in bundle.manifest.licence


def test_photos_are_referenced_not_copied(bundle, shared_data):
    assert Path(bundle.manifest.image_root).is_absolute()
    assert Path(bundle.manifest.image_root).resolve() == (shared_data / "flickr8k/images").resolve()
    assert not any(p.suffix == ".jpg" for p in bundle.root.rglob("*"))
    assert bundle.image_path("1000268201_693b08cb0e").is_file()


def test_multi30k_join_puts_translations_on_the_right_photo(bundle, shared_data):
    by_id = {cap.id: cap for cap in bundle.captions}
    m30k = shared_data / "multi30k/data"
    # 1000268201_693b08cb0e is Flickr30k 1000268201.jpg, line 3 of Multi30K's train split
    images = open(m30k / "task1/image_splits/train.txt").read().split()
    line = images.index("1000268201.jpg")
    german = gzip.open(m30k / "task1/raw/train.de.gz", "rt", encoding="utf-8").read().split("\n")[line]
    cap = by_id["1000268201_693b08cb0e#de-human-translation#0"]
    assert cap.text == german == "Ein kleines Mädchen klettert in ein Spielhaus aus Holz."
    assert (cap.item, cap.split) == ("1000268201_693b08cb0e", "train")
    assert by_id["1000268201_693b08cb0e#cs-human-translation#0"].text == "Malá dívka leze do dřevěného hračkového domu."
    assert by_id["1000268201_693b08cb0e#de#4"].text == "Ein kleines Mädchen klettert in ein Holzhäuschen, das als Stall dient."
    # A Multi30K *train* image in the Flickr8k *test* split takes the Flickr8k split
    cap = by_id["106490881_5a2dd9b7bd#de-human-translation#0"]
    assert (cap.text, cap.split) == ("Ein junge in blauen Badehosen am Strand.", "test")


def test_caption_ids_are_stable(bundle):
    first = bundle.captions[0]
    assert first.id == "1000268201_693b08cb0e#en#0"
    assert first.text == "A child in a pink dress is climbing up a set of stairs in an entry way ."
    ids = {cap.id for cap in bundle.captions}
    assert {"1000268201_693b08cb0e#zh-mt-baidu#3", "1000268201_693b08cb0e#zh-mt-google#0"} <= ids


def test_fetch_from_a_local_mirror(shared_data, tmp_path):
    dest = fetch_flickr8k_ml(tmp_path / "src", source=shared_data, progress=False)
    verify_layout(dest)
    rel = "multi30k/data/task1/raw/val.cs.gz"
    assert (dest / rel).read_bytes() == (shared_data / rel).read_bytes()
    assert (dest / "flickr8k/images/1000268201_693b08cb0e.jpg").is_file()


def test_verify_layout_lists_what_is_missing(shared_data, tmp_path):
    dest = fetch_flickr8k_ml(tmp_path / "src", source=shared_data, progress=False)
    (dest / "flickr8kcn/data/flickr8kzhg.caption.txt").unlink()
    with pytest.raises(FileNotFoundError, match="flickr8kzhg.caption.txt"):
        verify_layout(dest)
    with pytest.raises(FileNotFoundError, match="flickr8k/images/"):
        verify_layout(tmp_path / "empty")


def test_fetch_offline_gives_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(flickr8k_ml.urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match=r"could not download https://raw\.githubusercontent\.com/.*source=MIRROR_DIR"):
        fetch_flickr8k_ml(tmp_path / "dest", progress=False)


def test_translations_point_at_their_english_source(bundle):
    by_id = {cap.id: cap for cap in bundle.captions}
    for cap in bundle.captions:
        if cap.lang == "zh" and cap.source != "human":  # MT and human translation #n of English #n
            assert cap.ref == cap.id.rsplit("#", 2)[0] + "#en#" + cap.id.rsplit("#", 1)[1]
        elif cap.source == "human":  # written from the photo, not translated
            assert cap.ref == ""
        if cap.ref:
            assert by_id[cap.ref].item == cap.item and by_id[cap.ref].lang == "en"
    # Multi30K line 3 "A little girl climbing into a wooden playhouse." is Flickr8k's (tokenised) en #2
    assert by_id["1000268201_693b08cb0e#de-human-translation#0"].ref == "1000268201_693b08cb0e#en#2"
    linked = Counter(cap.lang for cap in bundle.captions if cap.source == "human-translation" and cap.lang != "zh" and cap.ref)
    assert linked == {"de": 7203, "fr": 7203, "cs": 7203}  # of 7,391 each; the rest differ from every Flickr8k caption
    assert bundle.manifest.extra["multi30k_translations_linked_to_flickr8k_english"] == {"linked": 3 * 7203, "unlinked": 3 * 188}
