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

import os
import re
import shutil
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ccr_core.data import formats
from ccr_core.data.bundle import (
    LANGUAGE_CODES, SOURCE_PATTERN, SPLITS, Bundle, Caption, Item, Manifest, check_output_folder,
    publish_bundle, save_bundle,
)
from ccr_core.data.formats import BadLine, FormatError, ImportRow, ReadOptions
from ccr_core.data.image_names import ImageResolver, read_image_map
from ccr_core.data.splits import SPLIT_ALIASES, read_split_file, seeded_split

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


@dataclass
class ImportOptions:
    """How :func:`import_captions` reads, checks and splits; every field can be passed to it by name."""
    fmt: str = "auto"  # a format of the registry (ccr_core.data.formats), or auto: guessed per file from its name and first line
    name: str | None = None  # the bundle's name (default: the output folder's)
    licence: str = "unspecified"
    description: str = ""  # default: which files, formats and image folder it was imported from
    # for formats that do not carry a language (xFlickr&CO, lines; Karpathy defaults to en; CSV/JSONL rows
    # without one): one code for every file, or one per file; without it, the language the path names (infer_lang)
    lang: str | Sequence[str | None] | None = None
    split: str | None = None  # train / val / test (everything there) or seeded (a ``ratios`` split of images); default: module docstring
    split_file: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None  # {split: file of ids} or '<image> <split>' lines (not with split)
    ratios: Sequence[float] = (0.8, 0.1, 0.1)  # split="seeded": train, val, test proportions
    seed: int = 0  # split="seeded"
    unsplit: str = "error"  # images the split file does not name: error, or skip (listed in the manifest)
    copy_images: bool = False  # copy the images into the bundle (default: the bundle points at images_dir)
    mt_system: str = "unknown"  # the MT system behind NRCCR's enc2<l> captions (their files do not say)
    strict: bool = False  # refuse at the first bad line (empty caption, absent image) instead of skipping it
    image_map: str | os.PathLike | Mapping[str, str] | None = None  # a read_image_map file (or the mapping) from caption names to files
    only_existing: bool = False  # import the captions of the images that are present however many are absent
    id_rule: bool = True  # resolve Flickr30k ids to Flickr8k names and back (module docstring)
    image_list: str | os.PathLike | None = None  # lines files: the image list whose line i names the image of caption line i
    force: bool = False  # replace an existing bundle in out_dir (never anything that is not a bundle)

    def check(self) -> "ImportOptions":
        """The options with the split settled; a ValueError for a contradiction or an unknown value."""
        if self.unsplit not in ("error", "skip"):
            raise ValueError(f"unsplit must be 'error' or 'skip', not {self.unsplit!r}")
        if self.split is None:
            return self
        split = SPLIT_ALIASES.get(self.split, self.split)
        if split not in SPLIT_CHOICES:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_CHOICES)}")
        if self.split_file is not None:
            raise ValueError("give either a split or a split file, not both")
        return replace(self, split=split)


def caption_formats() -> dict[str, str]:
    """``{format name: the one line ccr data import --help shows}`` of every registered format."""
    return {name: entry.help for name, entry in formats.caption_formats().items()}


def detect_format(captions_file: str | os.PathLike) -> str:
    """Guess the format from the name and the first non-empty line (``lines`` is never guessed)."""
    return formats.detect_format(captions_file)


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


def _read_rows(cf: CaptionFile, image_list: str | os.PathLike | None, mt_system: str, bad: list[BadLine] | None) -> list[ImportRow]:
    """The rows of one caption file, read by its format's registry entry."""
    opts = ReadOptions(cf.lang, Path(image_list) if image_list is not None else None, mt_system, bad)
    return formats.caption_format(cf.fmt).read(cf.path, opts)


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
        entry = formats.caption_format(file_fmt)  # a ValueError naming the formats, for an unknown one
        file_lang = cf.lang or (infer_lang(path) if entry.lang_from_path else None)
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
    options: ImportOptions | None = None,
    **fields_: Any,
) -> Path:
    """Build a bundle from a folder of images and one or more caption files; return its folder.

    Args:
        images_dir: the folder the captions' image names are relative to. The bundle's ``image_root``
            is its absolute path; nothing is copied unless ``copy_images``.
        captions_file: one caption file or several (one per language, or multilingual CSV/JSONL).
        out_dir: the bundle folder to write.
        options, fields_: an :class:`ImportOptions`, and/or any of its fields by name (``split="train"``,
            ``strict=True``, ...), which override it.

    Raises:
        FormatError: a malformed caption, split or map file, or (strict) a bad line; the message
            names the file and line. BundleExistsError: ``out_dir`` is taken.
    """
    known = {f.name for f in fields(ImportOptions)}
    unknown = sorted(set(fields_) - known)
    if unknown:
        raise TypeError(f"import_captions() got unknown option(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    opts = replace(options or ImportOptions(), **fields_).check()
    images_dir = Path(os.path.abspath(images_dir))  # absolute and normalised (no "..": it is shown and recorded)
    out_dir = Path(out_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: image folder not found")
    check_output_folder(out_dir, opts.force, keep=[images_dir])  # refuse a taken folder before reading anything
    files = _caption_files(captions_file, opts.fmt, opts.lang, opts.image_list)
    skips = _Skips(opts.strict)
    rows, read_per_file = _read_captions(files, opts, skips)
    mapping = opts.image_map if isinstance(opts.image_map, Mapping) or opts.image_map is None else read_image_map(opts.image_map)
    images = _resolve_images(rows, ImageResolver(images_dir, mapping, opts.id_rule), images_dir, opts)
    rows = _drop_absent(rows, images, images_dir, skips)
    splits = _assign_splits(rows, images, opts)
    items, captions = _bundle_records(rows, images, splits, files)
    manifest = _manifest(files, images, splits, items, captions, skips, read_per_file, images_dir, out_dir, opts)

    def write(folder: Path) -> None:
        if opts.copy_images:
            for it in items:
                target = folder / "images" / it.image
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(images_dir / it.image, target)
            manifest.image_root = "images"
        save_bundle(folder, manifest, items, captions)

    return publish_bundle(out_dir, write, opts.force, keep=[images_dir])


def _read_captions(files: list[CaptionFile], opts: ImportOptions, skips: _Skips) -> tuple[list[ImportRow], list[int]]:
    """Every file's rows (each marked with its file's index) and how many each file gave; bad lines go to ``skips``."""
    rows: list[ImportRow] = []
    read_per_file: list[int] = []
    for k, cf in enumerate(files):
        bad: list[BadLine] | None = None if opts.strict else []
        file_rows = [replace(r, file=k) for r in _read_rows(cf, opts.image_list, opts.mt_system, bad)]
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
    return rows, read_per_file


@dataclass
class _Images:
    """The images the captions name: found ones by reference, absent ones with why, and how they were found."""
    image_of: dict[str, str]  # caption's image reference -> path relative to images_dir
    absent: dict[str, str]  # reference -> why it was not resolved
    by_rule: Counter  # resolution rule -> images found by it

    @property
    def named(self) -> int:
        return len(self.image_of) + len(self.absent)

    @property
    def item_of(self) -> dict[str, str]:
        """Reference -> item id: one item per distinct file, keyed by its relative path without the suffix."""
        return {ref: os.path.splitext(rel)[0] for ref, rel in self.image_of.items()}


def _resolve_images(rows: list[ImportRow], resolver: ImageResolver, images_dir: Path, opts: ImportOptions) -> _Images:
    """Resolve each image reference once; refuse a folder holding none, or too few without ``only_existing``."""
    images = _Images({}, {}, Counter())
    for row in rows:
        if row.image in images.image_of or row.image in images.absent:
            continue
        found, how = resolver.resolve(row.image)
        if found is None:
            images.absent[row.image] = how
            if opts.strict:
                raise FormatError(f"{row.where}: image {row.image!r} {how} in {images_dir} (strict import; without --strict "
                                  "captions of absent images are skipped and counted)")
        else:
            images.image_of[row.image] = found
            images.by_rule[how] += 1
    if not images.image_of:
        first = next(iter(images.absent))
        raise FormatError(f"none of the {images.named} images the captions name is in {images_dir} (the first, {first!r}, "
                          f"{images.absent[first]}); check the image folder, or pass --image-map")
    if images.absent and not opts.only_existing and len(images.absent) > MAX_ABSENT_FRACTION * images.named:
        first_row = next(r for r in rows if r.image in images.absent)
        raise FormatError(
            f"{len(images.absent)} of the {images.named} images the captions name are not in {images_dir} (first: {first_row.where}: "
            f"{first_row.image!r}); pass --only-existing to import the captions of the {len(images.image_of)} that are, or --image-map"
        )
    return images


def _drop_absent(rows: list[ImportRow], images: _Images, images_dir: Path, skips: _Skips) -> list[ImportRow]:
    """The rows whose image was found; the others are counted as skipped."""
    kept = []
    for row in rows:
        if row.image in images.absent:
            skips.add(BadLine(row.where, "image not found", f"{row.where}: image {row.image!r} {images.absent[row.image]} in {images_dir}"))
        else:
            kept.append(row)
    return kept


@dataclass
class _Splits:
    split_of: dict[str, str]  # item id -> split
    source: str  # where the splits came from, for the manifest
    items_in_order: list[str]  # item ids in the order the captions first name them
    skipped_unsplit: list[str] = field(default_factory=list)  # items the split file does not name (unsplit="skip")


def _assign_splits(rows: list[ImportRow], images: _Images, opts: ImportOptions) -> _Splits:
    """An explicit split or split file > the captions' own splits > DEFAULT_SPLIT."""
    item_of = images.item_of
    items_in_order = list(dict.fromkeys(item_of[r.image] for r in rows))
    if opts.split in SPLITS:
        return _Splits({item: opts.split for item in items_in_order}, f"as asked: {opts.split}", items_in_order)
    if opts.split == "seeded":
        return _Splits(seeded_split(items_in_order, opts.ratios, opts.seed), f"seeded {list(opts.ratios)} seed {opts.seed}", items_in_order)
    if opts.split_file is not None:
        return _splits_from_file(rows, images, opts, items_in_order)
    return _splits_from_captions(rows, item_of, items_in_order)


def _splits_from_file(rows: list[ImportRow], images: _Images, opts: ImportOptions, items_in_order: list[str]) -> _Splits:
    named_splits = read_split_file(opts.split_file)
    item_of = images.item_of
    out = _Splits({}, f"split file {opts.split_file}", items_in_order)
    for row in rows:
        item = item_of[row.image]
        keys = (row.image, images.image_of[row.image], item, Path(item).name)
        found = next((named_splits[k] for k in keys if k in named_splits), None)
        if found is None:
            if opts.unsplit == "error":
                raise FormatError(f"{row.where}: image {row.image!r} is not in the split file {opts.split_file} (pass unsplit='skip' to leave it out)")
            if item not in out.skipped_unsplit:
                out.skipped_unsplit.append(item)
            continue
        out.split_of[item] = found
    if out.skipped_unsplit:
        warnings.warn(f"{len(out.skipped_unsplit)} image(s) are in no split and were left out", stacklevel=4)
    return out


def _splits_from_caption_rows(rows: list[ImportRow], item_of: dict[str, str]) -> dict[str, str]:
    """The splits the caption files give their images; one image in two splits, or an unknown split, is refused."""
    split_of: dict[str, str] = {}
    for row in rows:
        if row.split is None:
            continue
        file_split = SPLIT_ALIASES.get(row.split)
        if file_split is None:
            raise FormatError(f"{row.where}: unknown split {row.split!r} (expected train, val or test)")
        item = item_of[row.image]
        if split_of.setdefault(item, file_split) != file_split:
            raise FormatError(f"{row.where}: image {row.image!r} is in split {file_split!r} here but {split_of[item]!r} earlier")
    return split_of


def _splits_from_captions(rows: list[ImportRow], item_of: dict[str, str], items_in_order: list[str]) -> _Splits:
    with_split = {r.file for r in rows if r.split is not None}  # files that carry splits
    split_from = "from the caption files" if with_split else f"none named, so {DEFAULT_SPLIT}"
    split_of = _splits_from_caption_rows(rows, item_of)
    for row in rows:
        if row.split is None and row.file in with_split:
            raise FormatError(f"{row.where}: no split, while other captions in the file have one")
    if with_split and any(item not in split_of for item in items_in_order):
        split_from += f"; images no file splits go to {DEFAULT_SPLIT}"
    for item in items_in_order:
        split_of.setdefault(item, DEFAULT_SPLIT)
    return _Splits(split_of, split_from, items_in_order)


def _bundle_records(rows: list[ImportRow], images: _Images, splits: _Splits, files: list[CaptionFile]) -> tuple[list[Item], list[Caption]]:
    """The bundle's items (in the order the captions name them) and captions, numbered per (item, lang, source)."""
    item_of, split_of = images.item_of, splits.split_of
    by_id: dict[str, Item] = {}
    for ref, rel in images.image_of.items():
        item = item_of[ref]
        if item not in split_of:
            continue
        if item in by_id and by_id[item].image != rel:  # e.g. both x.jpg and x.png are referenced
            raise FormatError(f"{files[0].path}: images {by_id[item].image!r} and {rel!r} would share the item id {item!r}")
        by_id[item] = Item(item, rel, split_of[item])
    order = {item: k for k, item in enumerate(splits.items_in_order)}
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
    return items, captions


def _manifest(files: list[CaptionFile], images: _Images, splits: _Splits, items: list[Item], captions: list[Caption], skips: _Skips,
              read_per_file: list[int], images_dir: Path, out_dir: Path, opts: ImportOptions) -> Manifest:
    """The bundle manifest, with the import's record (``extra["import"]``, read by :func:`format_import_summary`)."""
    split_images = Counter(it.split for it in items)
    split_captions: dict[str, Counter] = defaultdict(Counter)
    for c in captions:
        split_captions[c.split][c.lang] += 1
    report = {
        "files": [{"path": os.path.abspath(cf.path), "format": cf.fmt, "lang": cf.lang, "captions": n} for cf, n in zip(files, read_per_file)],
        "mode": "strict" if opts.strict else "forgiving" + (", only existing images" if opts.only_existing else ""),
        "images": {"named": images.named, "found": len(images.image_of), "absent": len(images.absent), "by_rule": dict(images.by_rule),
                   "items": len(items), "folder": str(images_dir)},
        "skipped": skips.record(),
        "split": {"from": splits.source, "images": {s: split_images[s] for s in SPLITS if split_images[s]},
                  "captions": {s: dict(sorted(split_captions[s].items())) for s in SPLITS if s in split_captions}},
    }
    formats_used = sorted({cf.fmt for cf in files})
    return Manifest(
        name=opts.name or Path(out_dir).absolute().name,
        licence=opts.licence,
        description=opts.description or (f"Imported from {', '.join(cf.path.name for cf in files[:3])}{' ...' if len(files) > 3 else ''} "
                                         f"({', '.join(formats_used)}) with images in {images_dir}."),
        image_root=str(images_dir),
        extra={
            "imported_from": os.path.abspath(files[0].path) if len(files) == 1 else [os.path.abspath(cf.path) for cf in files],
            "format": formats_used[0] if len(formats_used) == 1 else formats_used,
            "split_from": splits.source,
            "skipped_unsplit_images": splits.skipped_unsplit,
            "import": report,
        },
    )


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
