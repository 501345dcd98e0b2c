"""`ccr data import` / `ccr data merge` on files as the field publishes them: forgiving by default,
strict on request, image-name resolution, explicit splits, several files, no silent replacement."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from benchmark_fixtures import COCO_IDS, FLICKR_IDS, flickr8k_name, make_flickr8k_folder, make_xflickrco, write_photo
from ccr_core.data import importer
from ccr_core.data.bundle import BundleError, BundleExistsError, load_bundle
from ccr_core.data.formats import FormatError
from ccr_core.data.image_names import ImageResolver, read_image_map
from ccr_core.data.importer import format_import_summary, import_captions
from ccr_core.data.merge import merge_bundles

PRESENT = [0, 1, 2, 4, 5, 7, 8, 9, 10, 11]  # 10 of the 12 Flickr images; none of the 4 COCO ones


@pytest.fixture
def photos(tmp_path) -> Path:
    return make_flickr8k_folder(tmp_path / "Flicker8k_Dataset", PRESENT)


@pytest.fixture
def xflickrco(tmp_path) -> Path:
    # line 2 (a present image) and line 14 (a COCO image) of German have an empty sentence, as the real file does
    return make_xflickrco(tmp_path / "annotations", empty={"de": [2, 14]})


def test_forgiving_import_skips_empty_captions_and_absent_images_and_says_where(tmp_path, photos, xflickrco):
    de = xflickrco / "de" / "test.jsonl"
    bundle = load_bundle(import_captions(photos, de, tmp_path / "out", only_existing=False))
    # 16 lines, 2 of them empty; of the 14 images the others name, 3 COCO and 2 Flickr ones are absent (under half: no --only-existing needed)
    assert sorted(it.id for it in bundle.items) == sorted(flickr8k_name(FLICKR_IDS[k])[:-4] for k in PRESENT if k != 1)
    assert {c.lang for c in bundle.captions} == {"de"} and len(bundle.captions) == 9
    assert all(it.split == "test" for it in bundle.items)  # no split named anywhere: test (importer.DEFAULT_SPLIT)
    report = bundle.manifest.extra["import"]
    assert report["skipped"]["by_reason"] == {"image not found": 5, "empty caption": 2}  # COCO line 14 is empty: counted once, as empty
    assert report["skipped"]["first"]["empty caption"] == [f"{de}:2: caption text is empty", f"{de}:14: caption text is empty"]
    assert report["skipped"]["first"]["image not found"][0] == f"{de}:4: image '{FLICKR_IDS[3]}.jpg' not found in {photos}"
    assert report["images"] == {"named": 14, "found": 9, "absent": 5, "by_rule": {"flickr30k-id": 9}, "items": 9, "folder": str(photos)}
    summary = format_import_summary(bundle)
    assert "skipped 7 captions (forgiving): image not found 5, empty caption 2" in summary
    assert f"{de}:2: caption text is empty" in summary and "9 by flickr30k-id" in summary
    assert "splits (none named, so test): test 9 images, de 9" in summary


def test_strict_import_refuses_the_first_bad_line_and_writes_nothing(tmp_path, photos, xflickrco):
    de = xflickrco / "de" / "test.jsonl"
    with pytest.raises(FormatError, match=rf"{de}:2: caption text is empty"):
        import_captions(photos, de, tmp_path / "out", strict=True)
    with pytest.raises(FormatError, match=rf"{xflickrco / 'en' / 'test.jsonl'}:4: image '{FLICKR_IDS[3]}\.jpg' not found .*strict"):
        import_captions(photos, xflickrco / "en" / "test.jsonl", tmp_path / "out", strict=True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_a_mostly_absent_gallery_needs_only_existing(tmp_path, xflickrco):
    few = make_flickr8k_folder(tmp_path / "few", [0, 5])  # 2 of 16 images
    en = xflickrco / "en" / "test.jsonl"
    with pytest.raises(FormatError, match=rf"14 of the 16 images the captions name are not in {few} \(first: {en}:2: .*--only-existing"):
        import_captions(few, en, tmp_path / "out")
    bundle = load_bundle(import_captions(few, en, tmp_path / "out", only_existing=True))
    assert len(bundle.items) == 2 and bundle.manifest.extra["import"]["mode"] == "forgiving, only existing images"
    with pytest.raises(FormatError, match="none of the 16 images"):
        import_captions(tmp_path / "out", en, tmp_path / "out2", only_existing=True)  # a folder without any of them


def test_flickr_id_rule_both_ways_ambiguity_and_exact_names(tmp_path):
    folder = tmp_path / "imgs"
    write_photo(folder / "1000268201_693b08cb0e.jpg", 1)
    write_photo(folder / "2000000000.jpg", 2)
    write_photo(folder / "3000000000_aaaa.jpg", 3)
    write_photo(folder / "3000000000_bbbb.jpg", 4)
    resolver = ImageResolver(folder)
    assert resolver.resolve("1000268201.jpg") == ("1000268201_693b08cb0e.jpg", "flickr30k-id")
    assert resolver.resolve("1000268201") == ("1000268201_693b08cb0e.jpg", "flickr30k-id")
    assert resolver.resolve("2000000000_ffff.jpg") == ("2000000000.jpg", "flickr30k-id")  # a Flickr8k name over a Flickr30k folder
    assert resolver.resolve("1000268201_693b08cb0e") == ("1000268201_693b08cb0e.jpg", "name")
    found, why = resolver.resolve("3000000000.jpg")
    assert found is None and why == "has a Flickr id (3000000000) shared by 2 files (3000000000_aaaa.jpg, 3000000000_bbbb.jpg)"
    assert ImageResolver(folder, id_rule=False).resolve("1000268201.jpg") == (None, "not found")


def test_image_map_two_columns(tmp_path, photos, xflickrco):
    mapping = tmp_path / "map.tsv"
    mapping.write_text("# xFlickr&CO name -> photo\nimage\tfile\n"
                       f"{FLICKR_IDS[3]}.jpg\t{flickr8k_name(FLICKR_IDS[0])}\nCOCO_val2014_{COCO_IDS[0]:012d}.jpg\tnot-there.jpg\n")
    assert read_image_map(mapping) == {f"{FLICKR_IDS[3]}.jpg": flickr8k_name(FLICKR_IDS[0]), f"COCO_val2014_{COCO_IDS[0]:012d}.jpg": "not-there.jpg"}
    bundle = load_bundle(import_captions(photos, xflickrco / "en" / "test.jsonl", tmp_path / "out", image_map=mapping))
    report = bundle.manifest.extra["import"]
    assert report["images"]["by_rule"] == {"image-map": 1, "flickr30k-id": 10}
    assert any(line.endswith(f"image 'COCO_val2014_{COCO_IDS[0]:012d}.jpg' is mapped to 'not-there.jpg', which is missing in {photos}")
               for line in report["skipped"]["first"]["image not found"])
    item0 = flickr8k_name(FLICKR_IDS[0])[:-4]
    assert sorted(c.text for c in bundle.captions if c.item == item0) == ["a photo number 0 of a scene", "a photo number 3 of a scene"]
    (tmp_path / "bad.map").write_text("a.jpg b.jpg\nc.jpg\n")
    with pytest.raises(FormatError, match=r"bad\.map:2: expected two columns"):
        read_image_map(tmp_path / "bad.map")
    (tmp_path / "clash.map").write_text("a.jpg,b.jpg\na.jpg,c.jpg\n")
    with pytest.raises(FormatError, match=r"clash\.map:2: 'a\.jpg' is mapped to 'c\.jpg' here but to 'b\.jpg' earlier"):
        read_image_map(tmp_path / "clash.map")


def test_several_files_languages_from_the_folders_and_explicit_splits(tmp_path, photos, xflickrco):
    files = [xflickrco / lang / "test.jsonl" for lang in ("de", "en", "ja")]
    bundle = load_bundle(import_captions(photos, files, tmp_path / "all", split="train"))
    assert bundle.languages == ["de", "en", "ja"] and {it.split for it in bundle.items} == {"train"}
    assert [f["lang"] for f in bundle.manifest.extra["import"]["files"]] == ["de", "en", "ja"]
    assert bundle.name == "all"  # the output folder's name, not the file stem ("test")
    item = flickr8k_name(FLICKR_IDS[0])[:-4]
    assert sorted(c.id for c in bundle.captions if c.item == item) == [f"{item}#de#0", f"{item}#en#0", f"{item}#ja#0"]
    seeded = load_bundle(import_captions(photos, files, tmp_path / "seeded", split="seeded", ratios=(0.6, 0.2, 0.2), seed=1))
    assert sorted({it.split for it in seeded.items}) == ["test", "train", "val"]
    assert seeded.manifest.extra["import"]["split"]["from"] == "seeded [0.6, 0.2, 0.2] seed 1"
    with pytest.raises(ValueError, match="--lang names 2 languages for 3 caption files"):
        import_captions(photos, files, tmp_path / "x", lang=["de", "en"])
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        import_captions(photos, files, tmp_path / "x", split="holdout")


def test_files_own_splits_are_kept_and_the_rest_goes_to_test(tmp_path, photos, xflickrco):
    rows = [{"image": f"{FLICKR_IDS[k]}.jpg", "lang": "en", "text": f"english {k}", "split": "train" if k < 5 else "val"} for k in PRESENT]
    (tmp_path / "en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bundle = load_bundle(import_captions(photos, [tmp_path / "en.jsonl", xflickrco / "ja" / "test.jsonl"], tmp_path / "out"))
    split_of = {it.id: it.split for it in bundle.items}
    assert split_of[flickr8k_name(FLICKR_IDS[0])[:-4]] == "train" and split_of[flickr8k_name(FLICKR_IDS[9])[:-4]] == "val"
    ja = [c for c in bundle.captions if c.lang == "ja"]
    assert {c.split for c in ja} == {"train", "val"}  # the Japanese captions follow their image's split


def test_parallel_line_files_keep_alignment_past_an_empty_line(tmp_path, photos):
    images = tmp_path / "images.txt"
    images.write_text("".join(f"{fid}.jpg\n" for fid in FLICKR_IDS[:4]))
    (tmp_path / "val.1.nl").write_text("een foto 0\n\neen foto 2\neen foto 3\n")  # line 2 empty
    (tmp_path / "val.2.nl.gz").write_bytes(gzip.compress("foto nul\nfoto een\nfoto twee\nfoto drie\n".encode()))
    bundle = load_bundle(import_captions(photos, [tmp_path / "val.1.nl", tmp_path / "val.2.nl.gz"], tmp_path / "nl", image_list=images))
    item2 = flickr8k_name(FLICKR_IDS[2])[:-4]
    assert sorted(c.text for c in bundle.captions if c.item == item2) == ["een foto 2", "foto twee"]  # line i <-> image i
    report = bundle.manifest.extra["import"]
    assert [f["format"] for f in report["files"]] == ["lines", "lines"] and [f["lang"] for f in report["files"]] == ["nl", "nl"]
    assert report["skipped"]["by_reason"] == {"empty caption": 1, "image not found": 2}  # image 3 is not in the folder
    assert report["skipped"]["first"]["empty caption"] == [f"{tmp_path / 'val.1.nl'}:2: caption text is empty"]
    (tmp_path / "short.nl").write_text("een\ntwee\n")
    with pytest.raises(FormatError, match=r"short\.nl:3: has 2 lines but the image list .* has 4"):
        import_captions(photos, tmp_path / "short.nl", tmp_path / "x", image_list=images)
    with pytest.raises(ValueError, match="needs --image-list"):
        import_captions(photos, tmp_path / "short.nl", tmp_path / "x", fmt="lines", lang="nl")


def test_an_existing_bundle_is_never_replaced_without_force(tmp_path, photos, xflickrco):
    out = tmp_path / "bundle"
    import_captions(photos, xflickrco / "en" / "test.jsonl", out)
    before = (out / "captions.jsonl").read_bytes()
    with pytest.raises(BundleExistsError, match=rf"{out}: already exists and it holds the bundle 'bundle'; pass --force"):
        import_captions(photos, xflickrco / "de" / "test.jsonl", out)
    assert (out / "captions.jsonl").read_bytes() == before
    import_captions(photos, xflickrco / "de" / "test.jsonl", out, force=True)
    assert load_bundle(out).languages == ["de"] and not list(tmp_path.glob(".bundle.*"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(BundleExistsError, match="not a bundle; choose another folder"):
        import_captions(photos, xflickrco / "de" / "test.jsonl", tmp_path / "notes", force=True)
    with pytest.raises(BundleExistsError, match="lies inside it"):
        import_captions(photos, xflickrco / "de" / "test.jsonl", tmp_path, force=True)


def test_a_failing_write_leaves_the_old_bundle_and_no_debris(tmp_path, photos, xflickrco, monkeypatch):
    out = tmp_path / "bundle"
    import_captions(photos, xflickrco / "en" / "test.jsonl", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_save(folder, *args, **kwargs):
        (folder / "items.jsonl").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(importer, "save_bundle", broken_save)
    with pytest.raises(OSError, match="disk full"):
        import_captions(photos, xflickrco / "de" / "test.jsonl", out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_merge_bundles_by_item_and_refuse_conflicts(tmp_path, photos, xflickrco):
    en = import_captions(photos, xflickrco / "en" / "test.jsonl", tmp_path / "en")
    de = import_captions(photos, xflickrco / "de" / "test.jsonl", tmp_path / "de")
    merged = load_bundle(merge_bundles([en, de], tmp_path / "en+de"))
    assert merged.languages == ["de", "en"] and len(merged.items) == 10  # en has all 10 present images, de 9 of them
    assert len(merged.captions) == 10 + 9 and merged.image_path(merged.items[0]).is_file()
    again = load_bundle(merge_bundles([en, en], tmp_path / "en+en"))
    assert len(again.captions) == 10  # identical captions kept once
    other_en = tmp_path / "en2.jsonl"
    other_en.write_text(json.dumps({"image": f"{FLICKR_IDS[0]}.jpg", "lang": "en", "text": "another caption"}) + "\n")
    en2 = import_captions(photos, other_en, tmp_path / "en2")
    both = load_bundle(merge_bundles([en, en2], tmp_path / "both"))
    item0 = flickr8k_name(FLICKR_IDS[0])[:-4]
    assert sorted(c.id for c in both.captions if c.item == item0) == [f"{item0}#en#0", f"{item0}#en#1"]  # the clash renumbered
    train = import_captions(photos, other_en, tmp_path / "train", split="train")
    with pytest.raises(BundleError, match=rf"item '{item0}' is test/image in 'en' but train/image in 'train'"):
        merge_bundles([en, train], tmp_path / "bad")
    with pytest.raises(BundleExistsError, match="pass --force"):
        merge_bundles([en, de], tmp_path / "en+de")


# --------------------------------------------------------------------------------------------------
# The command line


def ccr_main(capsys, *args) -> tuple[int, str, str]:
    from ccr_core.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_help_lists_every_format_on_one_line(capsys):
    with pytest.raises(SystemExit):
        ccr_main(capsys, "data", "import", "--help")
    out = capsys.readouterr().out
    for fmt in importer.caption_formats():
        assert sum(line.startswith(f"  {fmt} ") for line in out.splitlines()) == 1, fmt
    for option in ("--strict", "--image-map", "--only-existing", "--split", "--force", "--image-list", "--exact-names"):
        assert option in out


def test_cli_import_prints_what_it_skipped_and_refuses_a_taken_folder(capsys, tmp_path, photos, xflickrco):
    de, ja = xflickrco / "de" / "test.jsonl", xflickrco / "ja" / "test.jsonl"
    code, out, err = ccr_main(capsys, "data", "import", photos, de, ja, tmp_path / "deja")
    assert code == 0, err
    assert "skipped 13 captions (forgiving): image not found 11, empty caption 2" in out
    assert f"{de}:2: caption text is empty" in out and f"{de}:4: image '{FLICKR_IDS[3]}.jpg' not found" in out
    assert "splits (none named, so test): test 10 images, de 9, ja 10" in out
    code, out, err = ccr_main(capsys, "data", "import", photos, de, tmp_path / "deja")
    assert code == 2 and err.startswith("ccr: error: ") and "pass --force" in err and "Traceback" not in err
    code, out, err = ccr_main(capsys, "data", "import", photos, de, tmp_path / "strict", "--strict")
    assert code == 2 and f"{de}:2: caption text is empty" in err
    code, out, err = ccr_main(capsys, "data", "import", photos, ja, tmp_path / "ja", "--split", "val")
    assert code == 0 and "splits (as asked: val): val 10 images, ja 10" in out
    code, out, err = ccr_main(capsys, "data", "merge", tmp_path / "deja", tmp_path / "ja", "--out", tmp_path / "m")
    assert code == 2 and "is test/image in 'deja' but val/image in 'ja'" in err
