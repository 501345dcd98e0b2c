"""The bundle loader rejects each kind of bad input with a message naming the file and the line."""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from ccr_core.data.bundle import (
    CAPTIONS_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    BundleError,
    Caption,
    Item,
    Manifest,
    load_bundle,
    save_bundle,
)
from ccr_core.io import sha256_file

SPLITS = ["train", "val", "test"]


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    """A valid four-image bundle: items.jsonl lines 1-4, captions.jsonl lines 1-8 (en, de per image)."""
    root = tmp_path / "bundle"
    (root / "images").mkdir(parents=True)
    items, captions = [], []
    for i in range(4):
        (root / "images" / f"img{i}.jpg").write_bytes(b"\xff\xd8 not decoded by the loader")
        items.append(Item(f"img{i}", f"img{i}.jpg", SPLITS[i % 3]))
        for lang, text in (("en", f"a photo {i}"), ("de", f"ein Foto {i} äö")):
            captions.append(Caption(f"img{i}#{lang}#0", f"img{i}", lang, text, "human", SPLITS[i % 3]))
    save_bundle(root, Manifest("tiny", languages=["en", "de"]), items, captions)
    return root


def _lines(root: Path, name: str) -> list[str]:
    return (root / name).read_text(encoding="utf-8").splitlines()


def _rewrite(root: Path, name: str, lines: list[str] | bytes) -> None:
    """Replace a bundle file and re-hash it in the manifest, so only the content error remains."""
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode("utf-8")
    (root / name).write_bytes(data)
    manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["files"][name] = sha256_file(root / name)
    (root / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def _edit(root: Path, name: str, lineno: int, **changes) -> None:
    lines = _lines(root, name)
    record = json.loads(lines[lineno - 1])
    record.update(changes)
    lines[lineno - 1] = json.dumps(record, ensure_ascii=False)
    _rewrite(root, name, lines)


def _error(root: Path) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(root)
    return str(info.value)


def _assert_names(message: str, name: str, lineno: int) -> None:
    assert re.search(rf"{re.escape(name)}:{lineno}: ", message), message


def test_valid_bundle_loads(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert len(bundle.items) == 4 and len(bundle.captions) == 8
    assert bundle.captions[1].text == "ein Foto 0 äö"


def test_missing_image(bundle_dir):
    (bundle_dir / "images" / "img2.jpg").unlink()
    message = _error(bundle_dir)
    _assert_names(message, ITEMS_FILE, 3)
    assert "img2.jpg is missing" in message


def test_duplicate_item_id(bundle_dir):
    _edit(bundle_dir, ITEMS_FILE, 3, id="img0")
    message = _error(bundle_dir)
    _assert_names(message, ITEMS_FILE, 3)
    assert "duplicate item id 'img0' (first on line 1)" in message


def test_duplicate_caption_id(bundle_dir):
    _edit(bundle_dir, CAPTIONS_FILE, 6, id="img1#en#0")
    message = _error(bundle_dir)
    _assert_names(message, CAPTIONS_FILE, 6)
    assert "duplicate caption id 'img1#en#0' (first on line 3)" in message


def test_caption_pointing_at_no_item(bundle_dir):
    _edit(bundle_dir, CAPTIONS_FILE, 5, item="img9")
    message = _error(bundle_dir)
    _assert_names(message, CAPTIONS_FILE, 5)
    assert "points at no item ('img9'" in message


def test_unknown_language_code(bundle_dir):
    _edit(bundle_dir, CAPTIONS_FILE, 4, lang="german")
    message = _error(bundle_dir)
    _assert_names(message, CAPTIONS_FILE, 4)
    assert "unknown language code 'german'" in message


@pytest.mark.parametrize("text", ["", "   \t"])
def test_empty_text(bundle_dir, text):
    _edit(bundle_dir, CAPTIONS_FILE, 7, text=text)
    message = _error(bundle_dir)
    _assert_names(message, CAPTIONS_FILE, 7)
    assert "caption text is empty" in message


def test_undecodable_bytes(bundle_dir):
    raw = (bundle_dir / CAPTIONS_FILE).read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b"a photo 1", b"a photo \xe4 1")  # Latin-1 "ä", not UTF-8
    _rewrite(bundle_dir, CAPTIONS_FILE, b"\n".join(raw))
    message = _error(bundle_dir)
    _assert_names(message, CAPTIONS_FILE, 3)
    assert "not valid UTF-8" in message


@pytest.mark.parametrize("name, lineno", [(ITEMS_FILE, 2), (CAPTIONS_FILE, 8)])
def test_bad_json(bundle_dir, name, lineno):
    lines = _lines(bundle_dir, name)
    lines[lineno - 1] = lines[lineno - 1].rstrip("}")  # a truncated record
    _rewrite(bundle_dir, name, lines)
    message = _error(bundle_dir)
    _assert_names(message, name, lineno)
    assert "not valid JSON" in message


@pytest.mark.parametrize("name, lineno", [(ITEMS_FILE, 4), (CAPTIONS_FILE, 2)])
def test_unknown_split(bundle_dir, name, lineno):
    _edit(bundle_dir, name, lineno, split="dev")
    message = _error(bundle_dir)
    _assert_names(message, name, lineno)
    assert "unknown split 'dev'" in message


def test_unknown_source(bundle_dir):
    _edit(bundle_dir, CAPTIONS_FILE, 2, source="google-translate")
    message = _error(bundle_dir)
    _assert_names(message, CAPTIONS_FILE, 2)
    assert "unknown source 'google-translate'" in message


def test_missing_field_names_the_line(bundle_dir):
    lines = _lines(bundle_dir, ITEMS_FILE)
    record = json.loads(lines[1])
    del record["image"]
    lines[1] = json.dumps(record)
    _rewrite(bundle_dir, ITEMS_FILE, lines)
    message = _error(bundle_dir)
    _assert_names(message, ITEMS_FILE, 2)
    assert "field 'image' is missing" in message


def test_file_altered_after_the_manifest_was_written(bundle_dir):
    """A hash mismatch concerns the whole file, so the message names the file and the manifest (there is
    no line to name)."""
    path = bundle_dir / CAPTIONS_FILE
    path.write_text(path.read_text(encoding="utf-8").replace("a photo 3", "a photo 33"), encoding="utf-8")
    message = _error(bundle_dir)
    assert str(path) in message and MANIFEST_FILE in message and "does not match the SHA-256" in message
    assert load_bundle(bundle_dir, check_hashes=False).captions[6].text == "a photo 33"


def test_truncated_manifest_names_its_line(bundle_dir):
    text = (bundle_dir / MANIFEST_FILE).read_text(encoding="utf-8")
    (bundle_dir / MANIFEST_FILE).write_text(text[: len(text) // 2], encoding="utf-8")
    message = _error(bundle_dir)
    assert re.search(rf"{MANIFEST_FILE}:\d+: not valid JSON", message), message


def test_round_trip_keeps_records(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    copy = tmp_path / "copy"
    manifest = Manifest(**{k: v for k, v in asdict(bundle.manifest).items()})
    manifest.image_root = str(bundle.image_root.absolute())
    save_bundle(copy, manifest, bundle.items, bundle.captions)
    again = load_bundle(copy)
    assert again.items == bundle.items and again.captions == bundle.captions
