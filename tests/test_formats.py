"""Caption-format readers and writers (round trips, errors naming file:line) and the folder importer."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from PIL import Image

from ccr_core.data import formats
from ccr_core.data.bundle import load_bundle
from ccr_core.data.formats import (
    CaptionRow,
    FormatError,
    Multi30kCaption,
    TaggedCaption,
    XFlickrCOImage,
)
from ccr_core.data.importer import detect_format, import_captions
from ccr_core.data.splits import seeded_split

# Non-ASCII on purpose: umlauts, Czech diacritics, CJK, an emoji, and CSV-hostile quotes and commas.
TEXTS = ["Ein Mädchen läuft.", "Malá dívka leze.", "一个小女孩在爬楼梯。", "Un « chat », \"noir\" 🐈", "plain, with comma"]


def test_multi30k_task1_round_trip_gz_and_plain(tmp_path):
    images = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg"]
    records = [Multi30kCaption(img, lang, f"{lang}: {TEXTS[i]}", i) for lang in ("cs", "de") for i, img in enumerate(images)]
    for compress in (True, False):
        root = tmp_path / ("gz" if compress else "plain")
        formats.write_multi30k(root, records, task=1, split="train", compress=compress)
        assert (root / "task1/raw" / ("train.de.gz" if compress else "train.de")).is_file()
        assert formats.read_multi30k(root, task=1, split="train") == records
        assert formats.read_multi30k(root, 1, "train", langs=["de"]) == [r for r in records if r.lang == "de"]
    with gzip.open(tmp_path / "gz/task1/raw/train.de.gz", "rt", encoding="utf-8") as handle:
        assert handle.read().splitlines()[0] == "de: Ein Mädchen läuft."


def test_multi30k_task2_round_trip_keeps_caption_numbers(tmp_path):
    images = ["1.jpg", "2.jpg"]
    records = [Multi30kCaption(img, "de", f"{n}/{TEXTS[i]}", i, n) for n in (1, 2) for i, img in enumerate(images)]
    formats.write_multi30k(tmp_path, records, task=2, split="test_2016")
    assert (tmp_path / "task2/image_splits/test_2016_images.txt").read_text() == "1.jpg\n2.jpg\n"
    assert formats.read_multi30k(tmp_path, task=2, split="test_2016") == records


def test_multi30k_split_names_do_not_collide(tmp_path):
    # "test_2016.en.gz" must not be read as part of split "test_2016_flickr" or the reverse
    formats.write_multi30k(tmp_path, [Multi30kCaption("a.jpg", "en", "x", 0)], task=1, split="test_2016_flickr")
    formats.write_multi30k(tmp_path, [Multi30kCaption("b.jpg", "en", "y", 0)], task=1, split="test_2016")
    assert [r.image for r in formats.read_multi30k(tmp_path, 1, "test_2016")] == ["b.jpg"]
    assert [r.image for r in formats.read_multi30k(tmp_path, 1, "test_2016_flickr")] == ["a.jpg"]


def test_multi30k_line_count_mismatch_is_an_error(tmp_path):
    formats.write_multi30k(tmp_path, [Multi30kCaption(f"{i}.jpg", "de", f"t{i}", i) for i in range(3)])
    formats.write_lines(tmp_path / "task1/raw/train.de.gz", ["only", "two"])
    with pytest.raises(FormatError, match=r"train\.de\.gz:3: has 2 lines but the image list .*train\.txt has 3"):
        formats.read_multi30k(tmp_path, 1, "train")


def test_multi30k_empty_caption_line_is_an_error(tmp_path):
    formats.write_multi30k(tmp_path, [Multi30kCaption(f"{i}.jpg", "fr", f"t{i}", i) for i in range(3)], compress=False)
    (tmp_path / "task1/raw/train.fr").write_text("a\n  \nc\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"train\.fr:2: caption text is empty"):
        formats.read_multi30k(tmp_path, 1, "train")


def test_read_lines_splits_on_newline_only_and_names_bad_bytes(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("a\u2028still a\r\nb\n".encode("utf-8"))
    assert formats.read_lines(path) == ["a\u2028still a", "b"]
    path.write_bytes(b"ok\nbad \xff byte\n")
    with pytest.raises(FormatError, match=r"x\.txt:2: not valid UTF-8"):
        formats.read_lines(path)


def test_flickr8kcn_captions_round_trip(tmp_path):
    records = [
        TaggedCaption("1000268201_693b08cb0e.jpg", "zhc", n, text) for n, text in enumerate(TEXTS)
    ] + [TaggedCaption("2258277193_586949ec62.jpg.1", "enc", 0, "people waiting for the subway")]
    path = formats.write_flickr8kcn_captions(tmp_path / "flickr8kzhc.caption.txt", records)
    assert path.read_text(encoding="utf-8").splitlines()[2] == "1000268201_693b08cb0e.jpg#zhc#2 一个小女孩在爬楼梯。"
    back = formats.read_flickr8kcn_captions(path)
    assert back == records
    assert [r.line for r in back] == [1, 2, 3, 4, 5, 6]
    assert back[0].image_id == "1000268201_693b08cb0e"
    assert back[-1].image_id == "2258277193_586949ec62.jpg.1"  # Flickr8k's famous non-photo stays distinct


def test_tagged_caption_splits_on_the_first_space_only(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("img.jpg#enc#0 A dog  runs #1 fast\n", encoding="utf-8")
    (rec,) = formats.read_tagged_captions(path)
    assert (rec.image, rec.tag, rec.n, rec.text) == ("img.jpg", "enc", 0, "A dog  runs #1 fast")


@pytest.mark.parametrize("bad, message", [
    ("img.jpg#enc#0 fine\nimg.jpg#enc#x broken\n", r"c\.txt:2: expected '<image>#<tag>#<n> <text>'"),
    ("img.jpg#enc#0 fine\n\nimg.jpg#enc#1\n", r"c\.txt:3: caption text is empty"),
])
def test_tagged_caption_errors_name_file_and_line(tmp_path, bad, message):
    path = tmp_path / "c.txt"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(FormatError, match=message):
        formats.read_tagged_captions(path)


def test_flickr8k_split_file_round_trip(tmp_path):
    ids = ["1000268201_693b08cb0e", "1001773457_577c3a7d70"]
    path = formats.write_flickr8k_split(tmp_path / "flickr8ktrain.txt", ids)
    assert formats.read_flickr8k_split(path) == ids
    path.write_text("a\nb c\n")
    with pytest.raises(FormatError, match=r"flickr8ktrain\.txt:2: image name contains whitespace"):
        formats.read_flickr8k_split(path)


@pytest.mark.parametrize("tag, meaning", [
    ("enc", ("en", "human")),
    ("enc2de", ("de", "mt:google")),
    ("enc2de2enc", ("en", "back-translation:google")),
    ("de", ("de", "human")),
    ("de2enc", ("en", "mt:google")),
    ("enc2zh-cn", ("zh-cn", "mt:google")),
])
def test_nrccr_tags(tag, meaning):
    assert formats.nrccr_tag_meaning(tag, "google") == meaning
    assert formats.nrccr_tag(*meaning, target_lang=tag[4:6] if tag.startswith("enc2") else "de") == tag


def test_nrccr_round_trip_and_unknown_tag(tmp_path):
    records = [
        TaggedCaption("video7010", tag, n, text)
        for n, (tag, text) in enumerate([("enc", "a man sings"), ("enc2de", TEXTS[0]), ("enc2de2enc", "a girl runs"), ("de", "Ein Mann singt."), ("de2enc", "a man sings.")])
    ]
    path = formats.write_nrccr_captions(tmp_path / "nrccr.caption.txt", records)
    back = formats.read_nrccr_captions(path, mt_system="google")
    assert [rec for rec, _, _ in back] == records
    assert [(lang, source) for _, lang, source in back] == [
        ("en", "human"), ("de", "mt:google"), ("en", "back-translation:google"), ("de", "human"), ("en", "mt:google"),
    ]
    path.write_text("v1#enc#0 ok\nv1#xyz2q#0 what\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"nrccr\.caption\.txt:2: unknown NRCCR caption tag 'xyz2q'"):
        formats.read_nrccr_captions(path)


def test_xflickrco_round_trip_and_errors(tmp_path):
    records = [
        XFlickrCOImage("1007129816", "1007129816.jpg", (TEXTS[2],), "zh"),
        XFlickrCOImage("391895", "COCO_val2014_000000391895.jpg", (TEXTS[2], TEXTS[0]), "zh"),
    ]
    path = formats.write_xflickrco(tmp_path / "test-zh.jsonl", records)
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0]) == {"sentences": [TEXTS[2]], "id": "1007129816", "img_path": "1007129816.jpg"}
    assert "一个" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert formats.read_xflickrco(path, "zh") == records
    path.write_text('{"sentences": ["a"], "id": 5, "img_path": "5.jpg"}\n{"sentences": ["b"], "id": 6,\n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"test-zh\.jsonl:2: not valid JSON"):
        formats.read_xflickrco(path, "zh")
    path.write_text('{"sentences": [], "id": 5, "img_path": "5.jpg"}\n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"test-zh\.jsonl:1: field 'sentences'"):
        formats.read_xflickrco(path, "zh")


def test_karpathy_reader_folds_restval_into_train(tmp_path):
    data = {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "split": "restval", "imgid": 0, "cocoid": 391895,
         "sentences": [{"raw": "A man with a red helmet on a small moped.", "tokens": ["a"]}, {"raw": " Two dogs. "}]},
        {"filepath": "val2014", "filename": "b.jpg", "split": "test", "imgid": 1, "cocoid": 7, "sentences": [{"tokens": ["a", "cat"]}]},
    ]}
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    images = formats.read_karpathy(path)
    assert [(i.split, i.image_id, i.relpath, i.sentences) for i in images] == [
        ("train", "391895", "val2014/COCO_val2014_000000391895.jpg", ("A man with a red helmet on a small moped.", "Two dogs.")),
        ("test", "7", "val2014/b.jpg", ("a cat",)),
    ]
    data["images"][1]["split"] = "dev"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(FormatError, match=r"dataset_coco\.json: images\[1\]: unknown split 'dev'"):
        formats.read_karpathy(path)
    path.write_text('{"images": [\n  {"filename": "a.jpg",}\n]}', encoding="utf-8")
    with pytest.raises(FormatError, match=r"dataset_coco\.json:2: not valid JSON"):
        formats.read_karpathy(path)


GENERIC_ROWS = [
    CaptionRow("a.jpg", "de", TEXTS[0], "human", "train"),
    CaptionRow("sub/b.png", "zh", TEXTS[2], "mt:google", None),
    CaptionRow("c", "fr", TEXTS[3], "human-translation", "test"),
    CaptionRow("d.jpg", "en", "two\nlines, \"quoted\"", "human", "val"),
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_generic_round_trip(tmp_path, suffix):
    path = tmp_path / f"captions{suffix}"
    if suffix == ".jsonl":
        formats.write_captions_jsonl(path, GENERIC_ROWS)
        assert formats.read_captions_jsonl(path) == GENERIC_ROWS
    else:
        formats.write_captions_csv(path, GENERIC_ROWS)
        back = formats.read_captions_csv(path)
        assert back == GENERIC_ROWS
        assert [r.line for r in back] == [2, 3, 4, 6]  # the quoted two-line text spans lines 5-6


def test_generic_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("image,text\na.jpg,hello\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"c\.csv:1: header lacks column\(s\) lang"):
        formats.read_captions_csv(path)
    assert formats.read_captions_csv(path, default_lang="en")[0].lang == "en"
    path.write_text("image,lang,text\na.jpg,en,hello\nb.jpg,en,\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"c\.csv:3: caption text is empty"):
        formats.read_captions_csv(path)
    path.write_text("image,lang,text\na.jpg,en,hello,extra\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"c\.csv:2: more fields than the header"):
        formats.read_captions_csv(path)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"image": "a.jpg", "lang": "en", "text": "x"}\n{"lang": "en", "text": "y"}\n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"c\.jsonl:2: field 'image' is missing"):
        formats.read_captions_jsonl(jsonl)


def test_caption_ids():
    assert formats.make_caption_id("1000268201_693b08cb0e", "zh", "mt:baidu", 3) == "1000268201_693b08cb0e#zh-mt-baidu#3"
    assert formats.make_caption_id("x", "en", "human", 0) == "x#en#0"


# --------------------------------------------------------------------------------------------------
# Importer


def _images(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 20 % 256, 0, 0)).save(folder / name)
    return folder


def test_import_csv_with_seeded_split_points_at_the_folder(tmp_path):
    names = [f"img{i:02d}.jpg" for i in range(20)]
    images = _images(tmp_path / "photos", names)
    rows = [CaptionRow(n, lang, f"{lang} {n} ä", "human") for n in names for lang in ("en", "de")]
    formats.write_captions_csv(tmp_path / "caps.csv", rows)
    out = import_captions(images, tmp_path / "caps.csv", tmp_path / "bundle", name="mine", licence="CC-BY", split="seeded")
    bundle = load_bundle(out)
    assert Path(bundle.manifest.image_root) == images.absolute() and Path(bundle.manifest.image_root).is_absolute()
    assert not (out / "images").exists()  # nothing copied
    assert sorted(it.id for it in bundle.items) == [n[:-4] for n in names]
    assert {s: len(bundle.items_in(s)) for s in ("train", "val", "test")} == {"train": 16, "val": 2, "test": 2}
    assert len(bundle.captions) == 40 and bundle.languages == ["de", "en"]
    assert bundle.captions[1].id == "img00#de#0" and bundle.captions[1].text == "de img00.jpg ä"
    again = import_captions(images, tmp_path / "caps.csv", tmp_path / "bundle2", split="seeded")
    assert [it.split for it in load_bundle(again).items] == [it.split for it in bundle.items]  # seeded


def test_import_missing_image_names_the_caption_line(tmp_path):
    images = _images(tmp_path / "photos", ["a.jpg", "b.jpg"])
    rows = [CaptionRow("a.jpg", "en", "x"), CaptionRow("b", "en", "y"), CaptionRow("gone.jpg", "en", "z")]
    formats.write_captions_jsonl(tmp_path / "caps.jsonl", rows)
    with pytest.raises(FormatError, match=r"caps\.jsonl:3: image 'gone\.jpg' not found in .*photos"):
        import_captions(images, tmp_path / "caps.jsonl", tmp_path / "bundle", strict=True)
    assert not (tmp_path / "bundle").exists()
    bundle = load_bundle(import_captions(images, tmp_path / "caps.jsonl", tmp_path / "bundle"))  # forgiving: skipped, recorded
    assert [it.id for it in bundle.items] == ["a", "b"]
    assert bundle.manifest.extra["import"]["skipped"]["first"]["image not found"][0].startswith(f"{tmp_path / 'caps.jsonl'}:3: image 'gone.jpg'")


def test_import_flickr8kcn_with_split_lists_and_copy(tmp_path):
    images = _images(tmp_path / "photos", ["p1.jpg", "p2.jpg", "p3.jpg"])
    caps = [TaggedCaption(f"p{i}.jpg", tag, 0, f"{tag} {i}") for i in (1, 2, 3) for tag in ("enc", "zhb")]
    formats.write_flickr8kcn_captions(tmp_path / "c.caption.txt", caps)
    assert detect_format(tmp_path / "c.caption.txt") == "flickr8kcn"
    formats.write_flickr8k_split(tmp_path / "train.txt", ["p1", "p2"])
    formats.write_flickr8k_split(tmp_path / "test.txt", ["p3"])
    out = import_captions(
        images, tmp_path / "c.caption.txt", tmp_path / "bundle",
        split_file={"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"}, copy_images=True,
    )
    bundle = load_bundle(out)
    assert bundle.manifest.image_root == "images" and (out / "images/p3.jpg").is_file()
    assert {(c.id, c.source, c.split) for c in bundle.captions if c.item == "p3"} == {
        ("p3#en#0", "human", "test"), ("p3#zh-mt-baidu#0", "mt:baidu", "test"),
    }
    formats.write_flickr8k_split(tmp_path / "train.txt", ["p1"])
    with pytest.raises(FormatError, match=r"c\.caption\.txt:3: image 'p2\.jpg' is not in the split file"):
        import_captions(images, tmp_path / "c.caption.txt", tmp_path / "b2", split_file={"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"})
    with pytest.warns(UserWarning, match="1 image"):
        out = import_captions(images, tmp_path / "c.caption.txt", tmp_path / "b3", unsplit="skip",
                              split_file={"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"})
    assert load_bundle(out).manifest.extra["skipped_unsplit_images"] == ["p2"]


def test_import_uses_the_files_own_splits_and_rejects_bad_ones(tmp_path):
    images = _images(tmp_path / "photos", ["a.jpg", "b.jpg"])
    formats.write_captions_jsonl(tmp_path / "c.jsonl", [CaptionRow("a.jpg", "en", "x", split="test"), CaptionRow("b.jpg", "en", "y", split="dev")])
    out = import_captions(images, tmp_path / "c.jsonl", tmp_path / "bundle")
    assert [(it.id, it.split) for it in load_bundle(out).items] == [("a", "test"), ("b", "val")]
    formats.write_captions_jsonl(tmp_path / "c.jsonl", [CaptionRow("a.jpg", "en", "x", split="test"), CaptionRow("a.jpg", "en", "y", split="train")])
    with pytest.raises(FormatError, match=r"c\.jsonl:2: image 'a\.jpg' is in split 'train' here but 'test' earlier"):
        import_captions(images, tmp_path / "c.jsonl", tmp_path / "b2")
    formats.write_captions_jsonl(tmp_path / "c.jsonl", [CaptionRow("a.jpg", "en", "x"), CaptionRow("b.jpg", "xx", "y")])
    with pytest.raises(FormatError, match=r"c\.jsonl:2: unknown language code 'xx'"):
        import_captions(images, tmp_path / "c.jsonl", tmp_path / "b3")


def test_import_xflickrco_and_karpathy(tmp_path):
    images = _images(tmp_path / "photos", ["1.jpg", "val2014/2.jpg"])
    formats.write_xflickrco(tmp_path / "test-ja.jsonl", [XFlickrCOImage("1", "1.jpg", ("猫がいる。", "白い猫。"), "ja")])
    assert detect_format(tmp_path / "test-ja.jsonl") == "xflickrco"
    bundle = load_bundle(import_captions(images, tmp_path / "test-ja.jsonl", tmp_path / "b1", lang="ja"))  # no split named: test
    assert [(c.id, c.lang, c.split) for c in bundle.captions] == [("1#ja#0", "ja", "test"), ("1#ja#1", "ja", "test")]
    (tmp_path / "d.json").write_text(json.dumps({"images": [
        {"filepath": "val2014", "filename": "2.jpg", "split": "restval", "sentences": [{"raw": "a dog"}]}]}))
    bundle = load_bundle(import_captions(images, tmp_path / "d.json", tmp_path / "b2"))
    assert [(it.id, it.image, it.split) for it in bundle.items] == [("val2014/2", "val2014/2.jpg", "train")]


def test_seeded_split_is_reproducible_and_proportional():
    ids = [f"i{k}" for k in range(1000)]
    a, b = seeded_split(ids, seed=3), seeded_split(list(reversed(ids)), seed=3)
    assert a == b
    assert set(a.values()) == {"train", "val", "test"}
    assert [sum(v == s for v in a.values()) for s in ("train", "val", "test")] == [800, 100, 100]
    assert seeded_split(ids, seed=4) != a


@pytest.mark.parametrize("module", ["ccr_core.data.formats.lines", "ccr_core.data.importer", "ccr_core.data.splits", "ccr_core.data.flickr8k_ml"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------------------------------
# The format registry

# A whole new caption format, as its author would write it: one file in ccr_core/data/formats/.
PIPE_FORMAT_FILE = '''
from ccr_core.data.formats.lines import read_lines
from ccr_core.data.formats.registry import CaptionFormat, ImportRow, register_format


def read(path, opts):
    rows = []
    for lineno, line in enumerate(read_lines(path), start=1):
        image, lang, text = line.split("|", 2)
        rows.append(ImportRow(image, lang, text, "human", None, f"{path}:{lineno}"))
    return rows


register_format(CaptionFormat("pipes", "image|lang|text lines", read, lambda s: s.name.endswith(".pipes")))
'''


def test_a_new_format_is_one_file_in_the_package(tmp_path, monkeypatch):
    """A module in the formats package is imported with it: its format is detected and imported, and
    listed for --format, without a change anywhere else."""
    import sys

    from ccr_core.data import importer
    from ccr_core.data.formats import registry

    plugin_dir = tmp_path / "more_formats"
    plugin_dir.mkdir()
    (plugin_dir / "pipes_format.py").write_text(PIPE_FORMAT_FILE)
    monkeypatch.setattr(formats, "__path__", [*formats.__path__, str(plugin_dir)])  # as if the file were in the package folder
    monkeypatch.setattr(registry, "_FORMATS", dict(registry._FORMATS))  # the test's format leaves with the test
    monkeypatch.delitem(sys.modules, "ccr_core.data.formats.pipes_format", raising=False)
    assert "pipes" not in importer.caption_formats()
    formats._import_every_format_module()  # what importing the package does
    sys.modules.pop("ccr_core.data.formats.pipes_format", None)
    assert importer.caption_formats()["pipes"] == "image|lang|text lines"
    images = _images(tmp_path / "photos", ["a.jpg", "b.jpg"])
    (tmp_path / "caps.pipes").write_text("a.jpg|de|ein Bild\nb.jpg|ja|猫です\n", encoding="utf-8")
    assert detect_format(tmp_path / "caps.pipes") == "pipes"
    bundle = load_bundle(import_captions(images, tmp_path / "caps.pipes", tmp_path / "bundle"))
    assert [(c.item, c.lang, c.text) for c in bundle.captions] == [("a", "de", "ein Bild"), ("b", "ja", "猫です")]
    assert bundle.manifest.extra["format"] == "pipes"


def test_the_registry_refuses_a_second_format_of_a_name_and_names_the_formats_it_knows(tmp_path, monkeypatch):
    from ccr_core.data.formats import registry

    monkeypatch.setattr(registry, "_FORMATS", dict(registry._FORMATS))
    with pytest.raises(ValueError, match="'csv' is registered twice"):
        formats.register_format(formats.CaptionFormat("csv", "another csv", lambda path, opts: []))
    with pytest.raises(ValueError, match="other than 'auto'"):
        formats.register_format(formats.CaptionFormat("auto", "no", lambda path, opts: []))
    assert list(formats.caption_formats()) == ["csv", "karpathy", "xflickrco", "jsonl", "flickr8kcn", "nrccr", "lines"]
    (tmp_path / "notes.txt").write_text("just some words\n", encoding="utf-8")
    with pytest.raises(FormatError, match="one of csv, karpathy, xflickrco, jsonl, flickr8kcn, nrccr, lines"):
        detect_format(tmp_path / "notes.txt")
    images = _images(tmp_path / "photos", ["a.jpg"])
    with pytest.raises(ValueError, match="unknown caption format 'vtt'; expected auto or one of csv"):
        import_captions(images, tmp_path / "notes.txt", tmp_path / "b", fmt="vtt")


@pytest.mark.parametrize("name, first_line, expected", [
    ("c.tsv", "image\ttext", "csv"),
    ("dataset_coco.json", "{", "karpathy"),  # a whole-file JSON whose first line alone is not JSON
    ("test.jsonl", '{"sentences": ["a"], "id": 1, "img_path": "1.jpg"}', "xflickrco"),
    ("caps.txt", '{"image": "a.jpg", "text": "x"}', "jsonl"),
    ("c.caption.txt", "p1.jpg#zhc#0 一只狗", "flickr8kcn"),
    ("v.caption.txt", "video7#enc2de#0 ein Hund", "nrccr"),
])
def test_detection_follows_the_registry_order(tmp_path, name, first_line, expected):
    (tmp_path / name).write_text(first_line + "\n", encoding="utf-8")
    assert detect_format(tmp_path / name) == expected


def test_a_jsonl_name_with_a_broken_first_line_says_so(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"image": \n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"x.jsonl:1: not valid JSON"):
        detect_format(tmp_path / "x.jsonl")
