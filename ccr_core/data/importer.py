"""Turn a user's folder of images plus a captions file (any format of :mod:`ccr_core.data.formats`)
into a bundle that points at the folder, so that one's own data goes through the same code as ours."""
from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ccr_core.data import formats
from ccr_core.data.bundle import LANGUAGE_CODES, SOURCE_PATTERN, SPLITS, Caption, Item, Manifest, load_bundle, save_bundle
from ccr_core.data.formats import FormatError

FORMATS = ("csv", "jsonl", "xflickrco", "karpathy", "flickr8kcn", "nrccr")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
SPLIT_ALIASES = {"train": "train", "restval": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass(frozen=True)
class _Row:
    """One caption of any input format, with where it came from for error messages."""
    image: str
    lang: str
    text: str
    source: str
    split: str | None
    where: str  # "file:line" (or "file: images[i]" for a whole-file JSON)


def detect_format(captions_file: str | os.PathLike) -> str:
    """Guess the format from the name and the first non-empty line."""
    path = Path(captions_file)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(".json"):
        return "karpathy"
    first = next((line for line in formats.read_lines(path) if line.strip()), "")
    if name.endswith(".jsonl") or first.lstrip().startswith("{"):
        try:
            record = json.loads(first)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}:1: not valid JSON ({exc.msg})") from None
        return "xflickrco" if isinstance(record, dict) and "sentences" in record else "jsonl"
    head = first.split(" ", 1)[0].split("\t", 1)[0]
    if formats._TAGGED_ID.match(head):
        tag = formats._TAGGED_ID.match(head)["tag"]
        return "flickr8kcn" if tag in formats.FLICKR8KCN_TAGS else "nrccr"
    raise FormatError(f"{path}: cannot tell the caption format from the name or the first line; pass fmt= one of {', '.join(FORMATS)}")


def _read_rows(path: Path, fmt: str, lang: str | None, mt_system: str) -> list[_Row]:
    if fmt in ("csv", "jsonl"):
        reader = formats.read_captions_csv if fmt == "csv" else formats.read_captions_jsonl
        return [_Row(r.image, r.lang, r.text, r.source, r.split, f"{path}:{r.line}") for r in reader(path, default_lang=lang)]
    if fmt == "xflickrco":
        if not lang:
            raise ValueError("xFlickr&CO files do not name their language: pass lang=")
        return [
            _Row(r.img_path, lang, text, "human", None, f"{path}:{r.line}")
            for r in formats.read_xflickrco(path, lang) for text in r.sentences
        ]
    if fmt == "karpathy":
        return [
            _Row(r.relpath, lang or "en", text, "human", r.split, f"{path}: images[{r.index}]")
            for r in formats.read_karpathy(path) for text in r.sentences
        ]
    if fmt == "flickr8kcn":
        rows = []
        for r in formats.read_tagged_captions(path):
            if r.tag not in formats.FLICKR8KCN_TAGS:
                raise FormatError(f"{path}:{r.line}: unknown Flickr8k-CN tag {r.tag!r} (expected {', '.join(formats.FLICKR8KCN_TAGS)})")
            tag_lang, source = formats.FLICKR8KCN_TAGS[r.tag]
            rows.append(_Row(r.image, tag_lang, r.text, source, None, f"{path}:{r.line}"))
        return rows
    if fmt == "nrccr":
        return [
            _Row(r.image, tag_lang, r.text, source, None, f"{path}:{r.line}")
            for r, tag_lang, source in formats.read_nrccr_captions(path, mt_system)
        ]
    raise ValueError(f"unknown caption format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")


def _resolve_image(images_dir: Path, name: str) -> str | None:
    """The image's path relative to ``images_dir``: the name itself, or the name plus a common suffix."""
    candidates = [name] + [name + suffix for suffix in IMAGE_SUFFIXES]
    if "/" in name:  # a Karpathy "train2014/x.jpg" also matches a flat folder of x.jpg
        candidates.append(name.rsplit("/", 1)[1])
    for candidate in candidates:
        if (images_dir / candidate).exists():
            return candidate
    return None


def _read_split_file(split_file: str | os.PathLike | Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """Image name/id -> split, from ``{split: list file}`` or one file of ``<image> <split>`` lines."""
    out: dict[str, str] = {}
    if isinstance(split_file, Mapping):
        for split, list_path in split_file.items():
            if split not in SPLITS:
                raise ValueError(f"split_file: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
            for name in formats.read_image_list(list_path):
                out[name] = split
        return out
    path = Path(split_file)
    for lineno, line in enumerate(formats.read_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in SPLIT_ALIASES:
            raise FormatError(f"{path}:{lineno}: expected '<image> <split>' with split train, val or test, got {line!r}")
        out[parts[0]] = SPLIT_ALIASES[parts[1]]
    return out


def seeded_split(ids: Sequence[str], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, str]:
    """Assign whole images to train/val/test in the given proportions, reproducibly.

    >>> sorted(Counter(seeded_split([str(i) for i in range(10)]).values()).items())
    [('test', 1), ('train', 8), ('val', 1)]
    """
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers (train, val, test), got {ratios!r}")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    total = sum(ratios)
    n_train = round(len(order) * ratios[0] / total)
    n_val = round(len(order) * ratios[1] / total)
    return {
        image: "train" if i < n_train else "val" if i < n_train + n_val else "test" for i, image in enumerate(order)
    }


def import_captions(
    images_dir: str | os.PathLike,
    captions_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    fmt: str = "auto",
    name: str | None = None,
    licence: str = "unspecified",
    description: str = "",
    lang: str | None = None,
    split_file: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    unsplit: str = "error",
    copy_images: bool = False,
    mt_system: str = "unknown",
) -> Path:
    """Build a bundle from a folder of images and a captions file, and return its folder.

    Args:
        images_dir: the folder the captions' image names are relative to. The bundle's ``image_root``
            is its absolute path; nothing is copied unless ``copy_images``.
        captions_file: captions in ``fmt`` (``auto`` guesses from the name and first line).
        lang: the language for formats that do not carry one (xFlickr&CO; Karpathy defaults to en;
            CSV/JSONL rows without a lang).
        split_file: ``{split: file of ids}`` or a file of ``<image> <split>`` lines. Without it the
            captions file's own splits are used, and without those a seeded ``ratios`` split of images.
        unsplit: what to do with images the split file does not name: ``error`` or ``skip`` (skipped
            images are listed in the manifest's ``extra``).
        mt_system: the MT system behind NRCCR's ``enc2<l>`` captions (their files do not say).

    Raises:
        FormatError: a malformed captions or split file, or a caption whose image is missing (the
            message names the caption file line).
    """
    images_dir = Path(images_dir).absolute()
    captions_file = Path(captions_file)
    out_dir = Path(out_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: image folder not found")
    if unsplit not in ("error", "skip"):
        raise ValueError(f"unsplit must be 'error' or 'skip', not {unsplit!r}")
    fmt = detect_format(captions_file) if fmt == "auto" else fmt
    rows = _read_rows(captions_file, fmt, lang, mt_system)
    if not rows:
        raise FormatError(f"{captions_file}: no captions")

    # Items: one per distinct image file, keyed by its relative path without the suffix.
    image_of: dict[str, str] = {}  # caption's image reference -> path relative to images_dir
    for row in rows:
        if row.lang not in LANGUAGE_CODES:
            raise FormatError(f"{row.where}: unknown language code {row.lang!r}")
        if not SOURCE_PATTERN.match(row.source):
            raise FormatError(f"{row.where}: unknown source {row.source!r} (expected human, human-translation, mt:<system>, back-translation:<system> or generated)")
        if row.image not in image_of:
            found = _resolve_image(images_dir, row.image)
            if found is None:
                raise FormatError(f"{row.where}: image {row.image!r} not found in {images_dir}")
            image_of[row.image] = found
    item_of = {ref: os.path.splitext(rel)[0] for ref, rel in image_of.items()}

    # Splits: split file > the captions' own splits > a seeded split of images.
    split_of: dict[str, str] = {}
    skipped: list[str] = []
    if split_file is not None:
        named = _read_split_file(split_file)
        for row in rows:
            item = item_of[row.image]
            split = next((named[k] for k in (row.image, image_of[row.image], item, Path(item).name) if k in named), None)
            if split is None:
                if unsplit == "error":
                    raise FormatError(f"{row.where}: image {row.image!r} is not in the split file {split_file} (pass unsplit='skip' to leave it out)")
                if item not in skipped:
                    skipped.append(item)
                continue
            split_of[item] = split
    elif any(row.split is not None for row in rows):
        for row in rows:
            if row.split is None:
                raise FormatError(f"{row.where}: no split, while other captions in the file have one")
            split = SPLIT_ALIASES.get(row.split)
            if split is None:
                raise FormatError(f"{row.where}: unknown split {row.split!r} (expected train, val or test)")
            item = item_of[row.image]
            if split_of.setdefault(item, split) != split:
                raise FormatError(f"{row.where}: image {row.image!r} is in split {split!r} here but {split_of[item]!r} earlier")
    else:
        split_of = seeded_split(sorted(set(item_of.values())), ratios, seed)
    if skipped:
        warnings.warn(f"{len(skipped)} image(s) of {captions_file} are in no split and were left out", stacklevel=2)

    by_id: dict[str, Item] = {}
    for ref, rel in image_of.items():
        item = item_of[ref]
        if item not in split_of:
            continue
        if item in by_id and by_id[item].image != rel:  # e.g. both x.jpg and x.png are referenced
            raise FormatError(f"{captions_file}: images {by_id[item].image!r} and {rel!r} would share the item id {item!r}")
        by_id[item] = Item(item, rel, split_of[item])
    items = list(by_id.values())
    captions: list[Caption] = []
    numbers: Counter = Counter()
    for row in rows:
        item = item_of[row.image]
        if item not in split_of:
            continue
        key = (item, row.lang, row.source)
        captions.append(Caption(formats.make_caption_id(item, row.lang, row.source, numbers[key]), item, row.lang, row.text, row.source, split_of[item]))
        numbers[key] += 1

    image_root = str(images_dir)
    if copy_images:
        for it in items:
            target = out_dir / "images" / it.image
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(images_dir / it.image, target)
        image_root = "images"
    manifest = Manifest(
        name=name or captions_file.stem,
        licence=licence,
        description=description or f"Imported from {captions_file.name} ({fmt}) with images in {images_dir}.",
        image_root=image_root,
        extra={
            "imported_from": str(captions_file.absolute()),
            "format": fmt,
            "split_from": "split_file" if split_file is not None else ("captions" if any(r.split for r in rows) else f"seeded {list(ratios)} seed {seed}"),
            "skipped_unsplit_images": skipped,
        },
    )
    save_bundle(out_dir, manifest, items, captions)
    load_bundle(out_dir, check_images=False)  # the images were checked above; this checks ids, codes and splits
    return out_dir
