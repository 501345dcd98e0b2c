"""Turn a user's folder of images plus caption files (any format of :mod:`ccr_core.data.formats`)
into a bundle that points at the folder, and merge bundles, so that one's own data -- and the
field's public benchmark files as they are published -- go through the same code as ours.

Forgiving by default, strict on request. A caption line that is well-formed but unusable (empty
text, an image that is not in the folder) is skipped and counted; the import's summary and the
bundle manifest (``extra["import"]``) say how many were skipped, why, and where (``file:line``,
the first few of each kind). ``strict=True`` refuses the import at the first such line instead.
Malformed files (broken JSON, a wrong header, a parallel file whose line count differs from its
image list) are always refused. When more than half of the images the captions name are absent,
the folder is probably the wrong one: that is refused unless ``only_existing`` says a partial
import is wanted. Nothing is half-written: the bundle is built in a hidden folder and moved into
place in one rename, and an existing bundle is replaced only with ``force``.

Image names are resolved in this order: an ``image_map`` file (two columns: the name in the
captions, the file in the folder); the name as written (or with a common image suffix, or its
last path component); the Flickr30k-id rule -- a Flickr30k name ``1007129816.jpg`` is the
Flickr8k photo ``1007129816_e794419615.jpg`` (the numeric prefix), and the other way round.

Splits: ``split="train" | "val" | "test"`` puts everything in that split; ``"seeded"`` draws a
reproducible ``ratios`` split of images; a ``split_file`` names each image's split. Without any of
these, splits the caption files carry (Karpathy JSON, a CSV/JSONL ``split`` column) are used, and
files without splits go to **test** (:data:`DEFAULT_SPLIT`): a file without splits is most often a
benchmark's test set, and a test-only bundle cannot be trained on by mistake.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from ccr_core.data import formats
from ccr_core.data.bundle import (
    LANGUAGE_CODES, SOURCE_PATTERN, SPLITS, Bundle, Caption, Item, Manifest, check_output_folder,
    publish_bundle, save_bundle,
)
from ccr_core.data.formats import BadLine, FormatError
from ccr_core.data.image_names import ImageResolver, read_image_map
from ccr_core.data.splits import SPLIT_ALIASES, read_split_file, seeded_split

# Every caption format the importer reads, with the one line `ccr data import --help` shows for it.
FORMATS: dict[str, str] = {
    "csv": "CSV/TSV with a header: image, text[, lang][, source][, split] (one or many languages a file)",
    "jsonl": 'JSON lines {"image", "text"[, "lang"][, "source"][, "split"]} (one or many languages a file)',
    "xflickrco": 'IGLUE xFlickr&CO {"sentences", "id", "img_path"}, one language a file (--lang, or a <lang>/ folder)',
    "karpathy": "Karpathy-split JSON (dataset_coco/flickr8k/flickr30k.json): images[].filename, split, sentences[].raw",
    "flickr8kcn": "Flickr8k-CN lines '<image>#<tag>#<n> <text>', tags enc zhc zhm zhb zhg",
    "nrccr": "NRCCR lines '<id>#<tag>#<n> <text>', tags enc, enc2<l>, enc2<l>2enc, <l>, <l>2enc",
    "lines": "parallel line files: line i describes image i of --image-list (Multi30K raw, Flickr30k translations); "
             "--lang, or a .<lang>[.gz] suffix",
}
SPLIT_CHOICES = ("train", "val", "test", "seeded")
DEFAULT_SPLIT = "test"  # where captions go when nothing names a split (see the module docstring)
MAX_ABSENT_FRACTION = 0.5  # more images absent than this, and the import wants only_existing=True
SHOWN_BAD_LINES = 5  # bad lines shown per kind in the printed summary
RECORDED_BAD_LINES = 20  # ... and recorded per kind in the manifest (all are counted)


@dataclass(frozen=True)
class CaptionFile:
    """One caption file of an import: its format (``auto`` guesses) and language, where it has one."""
    path: Path
    fmt: str = "auto"
    lang: str | None = None


@dataclass(frozen=True)
class _Row:
    """One caption of any input format, with where it came from for error messages."""
    image: str
    lang: str
    text: str
    source: str
    split: str | None
    where: str  # "file:line" (or "file: images[i]" for a whole-file JSON)
    file: int = -1  # index of the caption file among the import's files


def detect_format(captions_file: str | os.PathLike) -> str:
    """Guess the format from the name and the first non-empty line (``lines`` is never guessed)."""
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
    raise FormatError(f"{path}: cannot tell the caption format from the name or the first line; pass --format, one of {', '.join(FORMATS)} "
                      "(plain text with one caption a line is --format lines with --image-list)")


def infer_lang(path: str | os.PathLike) -> str | None:
    """A language code the path names: a ``.de`` / ``.de.gz`` suffix (Multi30K), a ``-ja`` / ``_ja``
    end of the stem, or a ``de/`` parent folder (xFlickr&CO); None when it names none.

    >>> [infer_lang(p) for p in ("raw/test_2016_flickr.cs.gz", "xFlickrCO/annotations/ja/test.jsonl", "val.1.nl", "captions.txt")]
    ['cs', 'ja', 'nl', None]
    """
    path = Path(path)
    name = path.name.removesuffix(".gz")
    stem, _, suffix = name.rpartition(".")
    candidates = [suffix] if stem else []
    candidates.append(re.split(r"[-_.]", stem or name)[-1])
    candidates.append(path.parent.name)
    return next((c.lower() for c in candidates if c.lower() in LANGUAGE_CODES), None)


def _read_rows(cf: CaptionFile, image_list: str | os.PathLike | None, mt_system: str, bad: list[BadLine] | None) -> list[_Row]:
    path, fmt, lang = cf.path, cf.fmt, cf.lang
    if fmt in ("csv", "jsonl"):
        reader = formats.read_captions_csv if fmt == "csv" else formats.read_captions_jsonl
        return [_Row(r.image, r.lang, r.text, r.source, r.split, f"{path}:{r.line}") for r in reader(path, default_lang=lang, bad_lines=bad)]
    if fmt == "xflickrco":
        if not lang:
            raise ValueError(f"{path}: xFlickr&CO files do not name their language: pass --lang (or keep the file in a <lang>/ folder)")
        return [
            _Row(r.img_path, lang, text, "human", None, f"{path}:{r.line}")
            for r in formats.read_xflickrco(path, lang, bad_lines=bad) for text in r.sentences
        ]
    if fmt == "lines":
        if image_list is None:
            raise ValueError(f"{path}: --format lines needs --image-list (the file whose line i names the image of caption line i)")
        if not lang:
            raise ValueError(f"{path}: parallel line files do not name their language: pass --lang (or name the file <name>.<lang>[.gz])")
        records = formats.read_parallel(image_list, path, lang, bad_lines=bad)
        return [_Row(r.image, lang, r.text, "human", None, f"{path}:{r.index + 1}") for r in records]
    if fmt == "karpathy":
        return [
            _Row(r.relpath, lang or "en", text, "human", r.split, f"{path}: images[{r.index}]")
            for r in formats.read_karpathy(path, bad_lines=bad) for text in r.sentences
        ]
    if fmt == "flickr8kcn":
        rows = []
        for r in formats.read_tagged_captions(path, bad_lines=bad):
            if r.tag not in formats.FLICKR8KCN_TAGS:
                raise FormatError(f"{path}:{r.line}: unknown Flickr8k-CN tag {r.tag!r} (expected {', '.join(formats.FLICKR8KCN_TAGS)})")
            tag_lang, source = formats.FLICKR8KCN_TAGS[r.tag]
            rows.append(_Row(r.image, tag_lang, r.text, source, None, f"{path}:{r.line}"))
        return rows
    if fmt == "nrccr":
        return [
            _Row(r.image, tag_lang, r.text, source, None, f"{path}:{r.line}")
            for r, tag_lang, source in formats.read_nrccr_captions(path, mt_system, bad_lines=bad)
        ]
    raise ValueError(f"unknown caption format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")


def _caption_files(captions_file, fmt: str, lang, image_list) -> list[CaptionFile]:
    """The import's caption files with their format and language settled (``lang``: one code for
    every file, or one per file)."""
    if isinstance(captions_file, (str, os.PathLike, CaptionFile)):
        captions_file = [captions_file]
    files = list(captions_file)
    if not files:
        raise ValueError("no caption file given")
    langs = list(lang) if isinstance(lang, (list, tuple)) else [lang] * len(files)
    if len(langs) != len(files):
        raise ValueError(f"--lang names {len(langs)} languages for {len(files)} caption files; give one for all or one per file")
    out = []
    for f, file_lang in zip(files, langs):
        cf = f if isinstance(f, CaptionFile) else CaptionFile(Path(f), fmt, file_lang)
        path = Path(cf.path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: caption file not found")
        file_fmt = cf.fmt
        if file_fmt == "auto":
            try:
                file_fmt = detect_format(path)
            except FormatError:
                if image_list is None:
                    raise
                file_fmt = "lines"  # plain text with an image list: parallel line files
        if file_fmt not in FORMATS:
            raise ValueError(f"unknown caption format {file_fmt!r}; expected auto or one of {', '.join(FORMATS)}")
        file_lang = cf.lang or (infer_lang(path) if file_fmt in ("xflickrco", "lines") else None)
        if file_lang is not None and file_lang not in LANGUAGE_CODES:
            raise ValueError(f"{path}: unknown language code {file_lang!r}")
        out.append(CaptionFile(path, file_fmt, file_lang))
    return out


class _Skips:
    """Bad lines of an import: counted per kind, the first few of each kind kept (or raised, if strict)."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.counts: Counter = Counter()
        self.first: dict[str, list[str]] = defaultdict(list)

    def add(self, bad: BadLine) -> None:
        if self.strict:
            raise FormatError(str(bad) + " (strict import; without --strict such lines are skipped and counted)")
        self.counts[bad.reason] += 1
        if len(self.first[bad.reason]) < RECORDED_BAD_LINES:
            self.first[bad.reason].append(str(bad))

    def record(self) -> dict:
        return {"captions": sum(self.counts.values()), "by_reason": dict(self.counts.most_common()),
                "first": {k: v for k, v in self.first.items()}}


def import_captions(
    images_dir: str | os.PathLike,
    captions_file: str | os.PathLike | CaptionFile | Sequence[str | os.PathLike | CaptionFile],
    out_dir: str | os.PathLike,
    fmt: str = "auto",
    name: str | None = None,
    licence: str = "unspecified",
    description: str = "",
    lang: str | Sequence[str | None] | None = None,
    split: str | None = None,
    split_file: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    unsplit: str = "error",
    copy_images: bool = False,
    mt_system: str = "unknown",
    strict: bool = False,
    image_map: str | os.PathLike | Mapping[str, str] | None = None,
    only_existing: bool = False,
    id_rule: bool = True,
    image_list: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Build a bundle from a folder of images and one or more caption files; return its folder.

    Args:
        images_dir: the folder the captions' image names are relative to. The bundle's ``image_root``
            is its absolute path; nothing is copied unless ``copy_images``.
        captions_file: one caption file or several (one per language, or multilingual CSV/JSONL), in
            ``fmt`` (``auto`` guesses each file's format from its name and first line).
        lang: for formats that do not carry a language (xFlickr&CO, ``lines``; Karpathy defaults to
            en; CSV/JSONL rows without one): one code for every file, or one per file. Without it,
            xFlickr&CO and ``lines`` files take the language their path names (:func:`infer_lang`).
        split: ``train``/``val``/``test`` (everything there) or ``seeded`` (a ``ratios`` split of
            images with ``seed``); default: see the module docstring.
        split_file: ``{split: file of ids}`` or a file of ``<image> <split>`` lines (not with ``split``).
        unsplit: images the split file does not name: ``error`` or ``skip`` (listed in the manifest).
        mt_system: the MT system behind NRCCR's ``enc2<l>`` captions (their files do not say).
        strict: refuse at the first bad line (empty caption, absent image) instead of skipping it.
        image_map: a :func:`read_image_map` file (or the mapping itself) from caption names to files.
        only_existing: import the captions of the images that are present however many are absent.
        id_rule: resolve Flickr30k ids to Flickr8k names and back (module docstring).
        image_list: for ``lines`` files: the image list whose line i names the image of caption line i.
        force: replace an existing bundle in ``out_dir`` (never anything that is not a bundle).

    Raises:
        FormatError: a malformed caption, split or map file, or (strict) a bad line; the message
            names the file and line. BundleExistsError: ``out_dir`` is taken.
    """
    images_dir = Path(os.path.abspath(images_dir))  # absolute and normalised (no "..": it is shown and recorded)
    out_dir = Path(out_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: image folder not found")
    if unsplit not in ("error", "skip"):
        raise ValueError(f"unsplit must be 'error' or 'skip', not {unsplit!r}")
    if split is not None:
        split = SPLIT_ALIASES.get(split, split)
        if split not in SPLIT_CHOICES:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_CHOICES)}")
        if split_file is not None:
            raise ValueError("give either a split or a split file, not both")
    check_output_folder(out_dir, force, keep=[images_dir])  # refuse a taken folder before reading anything
    files = _caption_files(captions_file, fmt, lang, image_list)
    mapping = image_map if isinstance(image_map, Mapping) or image_map is None else read_image_map(image_map)
    resolver = ImageResolver(images_dir, mapping, id_rule)
    skips = _Skips(strict)

    rows: list[_Row] = []
    read_per_file: list[int] = []
    for k, cf in enumerate(files):
        bad: list[BadLine] | None = None if strict else []
        file_rows = [replace(r, file=k) for r in _read_rows(cf, image_list, mt_system, bad)]
        for b in bad or []:
            skips.add(b)
        read_per_file.append(len(file_rows))
        rows.extend(file_rows)
    if not rows:
        raise FormatError(f"{', '.join(str(f.path) for f in files)}: no captions" + (f" ({skips.record()['captions']} skipped)" if skips.counts else ""))
    for row in rows:  # a code the bundle format rejects is a mistake in the file, not a bad line
        if row.lang not in LANGUAGE_CODES:
            raise FormatError(f"{row.where}: unknown language code {row.lang!r}")
        if not SOURCE_PATTERN.match(row.source):
            raise FormatError(f"{row.where}: unknown source {row.source!r} (expected human, human-translation, mt:<system>, back-translation:<system> or generated)")

    # Images: one item per distinct file, keyed by its relative path without the suffix.
    image_of: dict[str, str] = {}  # caption's image reference -> path relative to images_dir
    absent: dict[str, str] = {}  # reference -> why it was not resolved
    rule_counts: Counter = Counter()
    for row in rows:
        if row.image in image_of or row.image in absent:
            continue
        found, how = resolver.resolve(row.image)
        if found is None:
            absent[row.image] = how
            if strict:
                raise FormatError(f"{row.where}: image {row.image!r} {how} in {images_dir} (strict import; without --strict "
                                  "captions of absent images are skipped and counted)")
        else:
            image_of[row.image] = found
            rule_counts[how] += 1
    named = len(image_of) + len(absent)
    if not image_of:
        first = next(iter(absent))
        raise FormatError(f"none of the {named} images the captions name is in {images_dir} (the first, {first!r}, {absent[first]}); "
                          "check the image folder, or pass --image-map")
    if absent and not only_existing and len(absent) > MAX_ABSENT_FRACTION * named:
        first_row = next(r for r in rows if r.image in absent)
        raise FormatError(
            f"{len(absent)} of the {named} images the captions name are not in {images_dir} (first: {first_row.where}: "
            f"{first_row.image!r}); pass --only-existing to import the captions of the {len(image_of)} that are, or --image-map"
        )
    kept: list[_Row] = []
    for row in rows:
        if row.image in absent:
            skips.add(BadLine(row.where, "image not found", f"{row.where}: image {row.image!r} {absent[row.image]} in {images_dir}"))
        else:
            kept.append(row)
    rows = kept
    item_of = {ref: os.path.splitext(rel)[0] for ref, rel in image_of.items()}

    # Splits: an explicit split or split file > the captions' own splits > DEFAULT_SPLIT.
    split_of: dict[str, str] = {}
    skipped_unsplit: list[str] = []
    items_in_order = list(dict.fromkeys(item_of[r.image] for r in rows))
    if split in SPLITS:
        split_from = f"as asked: {split}"
        split_of = {item: split for item in items_in_order}
    elif split == "seeded":
        split_from = f"seeded {list(ratios)} seed {seed}"
        split_of = seeded_split(items_in_order, ratios, seed)
    elif split_file is not None:
        split_from = f"split file {split_file}"
        named_splits = read_split_file(split_file)
        for row in rows:
            item = item_of[row.image]
            found = next((named_splits[k] for k in (row.image, image_of[row.image], item, Path(item).name) if k in named_splits), None)
            if found is None:
                if unsplit == "error":
                    raise FormatError(f"{row.where}: image {row.image!r} is not in the split file {split_file} (pass unsplit='skip' to leave it out)")
                if item not in skipped_unsplit:
                    skipped_unsplit.append(item)
                continue
            split_of[item] = found
    else:
        with_split = {r.file for r in rows if r.split is not None}  # files that carry splits
        split_from = "from the caption files" if with_split else f"none named, so {DEFAULT_SPLIT}"
        for row in rows:
            if row.split is None:
                continue
            file_split = SPLIT_ALIASES.get(row.split)
            if file_split is None:
                raise FormatError(f"{row.where}: unknown split {row.split!r} (expected train, val or test)")
            item = item_of[row.image]
            if split_of.setdefault(item, file_split) != file_split:
                raise FormatError(f"{row.where}: image {row.image!r} is in split {file_split!r} here but {split_of[item]!r} earlier")
        for row in rows:
            if row.split is None and row.file in with_split:
                raise FormatError(f"{row.where}: no split, while other captions in the file have one")
        if with_split and any(item not in split_of for item in items_in_order):
            split_from += f"; images no file splits go to {DEFAULT_SPLIT}"
        for item in items_in_order:
            split_of.setdefault(item, DEFAULT_SPLIT)
    if skipped_unsplit:
        warnings.warn(f"{len(skipped_unsplit)} image(s) are in no split and were left out", stacklevel=2)

    by_id: dict[str, Item] = {}
    for ref, rel in image_of.items():
        item = item_of[ref]
        if item not in split_of:
            continue
        if item in by_id and by_id[item].image != rel:  # e.g. both x.jpg and x.png are referenced
            raise FormatError(f"{files[0].path}: images {by_id[item].image!r} and {rel!r} would share the item id {item!r}")
        by_id[item] = Item(item, rel, split_of[item])
    order = {item: k for k, item in enumerate(items_in_order)}
    items = sorted(by_id.values(), key=lambda it: order.get(it.id, len(order)))
    captions: list[Caption] = []
    numbers: Counter = Counter()
    for row in rows:
        item = item_of[row.image]
        if item not in split_of:
            continue
        key = (item, row.lang, row.source)
        captions.append(Caption(formats.make_caption_id(item, row.lang, row.source, numbers[key]), item, row.lang, row.text, row.source, split_of[item]))
        numbers[key] += 1

    split_images = Counter(it.split for it in items)
    split_captions: dict[str, Counter] = defaultdict(Counter)
    for c in captions:
        split_captions[c.split][c.lang] += 1
    report = {
        "files": [{"path": os.path.abspath(cf.path), "format": cf.fmt, "lang": cf.lang, "captions": n} for cf, n in zip(files, read_per_file)],
        "mode": "strict" if strict else "forgiving" + (", only existing images" if only_existing else ""),
        "images": {"named": named, "found": len(image_of), "absent": len(absent), "by_rule": dict(rule_counts),
                   "items": len(items), "folder": str(images_dir)},
        "skipped": skips.record(),
        "split": {"from": split_from, "images": {s: split_images[s] for s in SPLITS if split_images[s]},
                  "captions": {s: dict(sorted(split_captions[s].items())) for s in SPLITS if s in split_captions}},
    }
    formats_used = sorted({cf.fmt for cf in files})
    first = files[0].path
    manifest = Manifest(
        name=name or Path(out_dir).absolute().name,
        licence=licence,
        description=description or (f"Imported from {', '.join(cf.path.name for cf in files[:3])}{' ...' if len(files) > 3 else ''} "
                                     f"({', '.join(formats_used)}) with images in {images_dir}."),
        image_root=str(images_dir),
        extra={
            "imported_from": os.path.abspath(first) if len(files) == 1 else [os.path.abspath(cf.path) for cf in files],
            "format": formats_used[0] if len(formats_used) == 1 else formats_used,
            "split_from": split_from,
            "skipped_unsplit_images": skipped_unsplit,
            "import": report,
        },
    )

    def write(folder: Path) -> None:
        if copy_images:
            for it in items:
                target = folder / "images" / it.image
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(images_dir / it.image, target)
            manifest.image_root = "images"
        save_bundle(folder, manifest, items, captions)

    return publish_bundle(out_dir, write, force, keep=[images_dir])


def format_import_summary(bundle: Bundle) -> str:
    """What an import did, from the record in the bundle's manifest: files, images found and how,
    captions skipped (the first few, with file:line), and what went to which split."""
    report = bundle.manifest.extra.get("import")
    if not report:
        return ""
    lines = []
    for f in report["files"]:
        lines.append(f"read {f['path']} ({f['format']}{', ' + f['lang'] if f['lang'] else ''}): {f['captions']} captions")
    img = report["images"]
    rules = ", ".join(f"{n} by {rule}" for rule, n in sorted(img["by_rule"].items()) if rule != "name")
    lines.append(f"images: {img['found']} of the {img['named']} named found in {img['folder']}" + (f" ({rules})" if rules else "")
                 + (f"; {img['absent']} absent" if img["absent"] else ""))
    skipped = report["skipped"]
    if skipped["captions"]:
        lines.append(f"skipped {skipped['captions']} captions ({report['mode']}): "
                     + ", ".join(f"{reason} {n}" for reason, n in skipped["by_reason"].items()))
        for reason, examples in skipped["first"].items():
            for example in examples[:SHOWN_BAD_LINES]:
                lines.append(f"  {example}")
            more = skipped["by_reason"][reason] - min(len(examples), SHOWN_BAD_LINES)
            if more > 0:
                lines.append(f"  ... and {more} more ({reason}; the first {len(examples)} are listed in manifest.json extra.import)")
    else:
        lines.append(f"skipped no captions ({report['mode']})")
    sp = report["split"]
    per_split = "; ".join(
        f"{s} {n} images, " + ", ".join(f"{lang} {k}" for lang, k in sp["captions"].get(s, {}).items()) for s, n in sp["images"].items()
    )
    lines.append(f"splits ({sp['from']}): {per_split}")
    return "\n".join(lines)
