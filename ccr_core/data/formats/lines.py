"""Line-based caption formats: Multi30K raw files, Flickr8k-CN and NRCCR ``<id>#<tag>#<n> <text>``
files, and the plumbing every format shares (reading lines, bad-line records, caption ids).
Conventions in :mod:`ccr_core.data.formats`."""
from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ccr_core.io import atomic_path

PathLike = str | os.PathLike


class FormatError(ValueError):
    """A caption or split file is malformed; the message names the file and, where it applies, the line."""


# --------------------------------------------------------------------------------------------------
# Shared plumbing


def read_lines(path: PathLike) -> list[str]:
    """The lines of a UTF-8 text file, gzip-compressed or plain (by magic bytes), without newlines.

    A final newline does not make an extra empty line; ``\\r\\n`` endings are accepted.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: file is missing") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FormatError(f"{path}: not a valid gzip file ({exc})") from None
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    lines = []
    for lineno, chunk in enumerate(chunks, start=1):
        try:
            lines.append(chunk.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as exc:
            raise FormatError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if lines and lines[0].startswith("\ufeff"):  # a byte-order mark is not part of the first caption
        lines[0] = lines[0][1:]
    return lines


def write_lines(path: PathLike, lines: Iterable[str], compress: bool | None = None) -> Path:
    """Write lines atomically as UTF-8; gzip when ``compress`` (default: when the name ends in .gz)."""
    path = Path(path)
    lines = list(lines)
    for i, line in enumerate(lines, start=1):
        if "\n" in line or "\r" in line:
            raise FormatError(f"{path}:{i}: cannot write a line that contains a newline: {line!r}")
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime=0: the same captions give the same bytes
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def caption_tag(lang: str, source: str) -> str:
    """The middle part of a bundle caption id: ``en`` for human English, ``zh-mt-baidu`` for Baidu MT."""
    return lang if source == "human" else f"{lang}-{source.replace(':', '-')}"


def make_caption_id(item: str, lang: str, source: str, n: int) -> str:
    """A stable caption id, ``<item>#<lang>[-<source>]#<n>``, e.g. ``1000268201_693b08cb0e#zh-mt-baidu#3``."""
    return f"{item}#{caption_tag(lang, source)}#{n}"


@dataclass(frozen=True)
class BadLine:
    """A caption a forgiving reader or importer skipped: where it was and why."""
    where: str  # "file:line" (or "file: images[i]" for a whole-file JSON)
    reason: str  # a short kind, e.g. "empty caption", "image not found"
    detail: str = ""  # the full message, as strict mode would raise it

    def __str__(self) -> str:
        return self.detail or f"{self.where}: {self.reason}"


def _text(path: Path, lineno: int | str, text: str, bad_lines: list[BadLine] | None = None) -> str | None:
    """The stripped caption text; an empty one raises, or is recorded in ``bad_lines`` (then None)."""
    text = text.strip()
    if not text:
        where = f"{path}:{lineno}" if isinstance(lineno, int) else f"{path}{lineno}"
        if bad_lines is None:
            raise FormatError(f"{where}: caption text is empty")
        bad_lines.append(BadLine(where, "empty caption", f"{where}: caption text is empty"))
        return None
    return text


# --------------------------------------------------------------------------------------------------
# Multi30K: task1/raw/{split}.{lang}.gz + task1/image_splits/{split}.txt;
#           task2/raw/{split}.{n}.{lang}.gz + task2/image_splits/{split}_images.txt


@dataclass(frozen=True)
class Multi30kCaption:
    image: str  # Flickr30k file name, e.g. "1000092795.jpg"
    lang: str
    text: str
    index: int  # 0-based position in the split: line index+1 of the raw file and of the image list
    n: int | None = None  # task 2 caption number 1..5; None for task 1


def multi30k_image_list_path(root: PathLike, task: int, split: str) -> Path:
    """``root`` is Multi30K's ``data/`` folder."""
    name = f"{split}.txt" if task == 1 else f"{split}_images.txt"
    return Path(root) / f"task{task}" / "image_splits" / name


def multi30k_caption_path(root: PathLike, task: int, split: str, lang: str, n: int | None = None) -> Path:
    """The raw caption file, ``.gz`` if present, else the plain file of the same name."""
    stem = f"{split}.{lang}" if task == 1 else f"{split}.{n}.{lang}"
    raw = Path(root) / f"task{task}" / "raw"
    gz = raw / f"{stem}.gz"
    return gz if gz.exists() or not (raw / stem).exists() else raw / stem


def read_image_list(path: PathLike) -> list[str]:
    """A file of image names or ids, one a line (Multi30K image splits, Flickr8k split files)."""
    path = Path(path)
    names = []
    for lineno, line in enumerate(read_lines(path), start=1):
        name = line.strip()
        if not name:
            raise FormatError(f"{path}:{lineno}: empty line in an image list")
        if len(name.split()) > 1:
            raise FormatError(f"{path}:{lineno}: image name contains whitespace: {name!r}")
        names.append(name)
    return names


def write_image_list(path: PathLike, names: Iterable[str]) -> Path:
    return write_lines(path, names, compress=False)


def read_parallel(
    image_list: PathLike, caption_file: PathLike, lang: str, n: int | None = None, images: Sequence[str] | None = None,
    bad_lines: list[BadLine] | None = None,
) -> list[Multi30kCaption]:
    """Pair line i of a caption file with image i of an image list; a count mismatch is an error.

    ``images`` is the already-read content of ``image_list``, to spare re-reading it for each language.
    An empty line raises, or with ``bad_lines`` is recorded and skipped (the others keep their image).
    """
    images = read_image_list(image_list) if images is None else images
    caption_file = Path(caption_file)
    lines = read_lines(caption_file)
    if len(lines) != len(images):
        raise FormatError(
            f"{caption_file}:{min(len(lines), len(images)) + 1}: has {len(lines)} lines but the image list "
            f"{image_list} has {len(images)}; line i must describe image i"
        )
    out = []
    for i, (image, text) in enumerate(zip(images, lines)):
        text = _text(caption_file, i + 1, text, bad_lines)
        if text is not None:
            out.append(Multi30kCaption(image, lang, text, i, n))
    return out


_TASK1_NAME = r"^{split}\.(?P<lang>[a-z]{{2,3}}(?:-[a-z]+)?)(?:\.gz)?$"
_TASK2_NAME = r"^{split}\.(?P<n>\d+)\.(?P<lang>[a-z]{{2,3}}(?:-[a-z]+)?)(?:\.gz)?$"


def multi30k_files(root: PathLike, task: int, split: str) -> list[tuple[str, int | None, Path]]:
    """The (lang, n, path) raw caption files of one split, sorted by (n, lang)."""
    raw = Path(root) / f"task{task}" / "raw"
    pattern = re.compile((_TASK1_NAME if task == 1 else _TASK2_NAME).format(split=re.escape(split)))
    found: dict[tuple[int | None, str], Path] = {}
    for path in sorted(raw.iterdir()) if raw.is_dir() else []:
        match = pattern.match(path.name)
        if match:
            key = (int(match["n"]) if task == 2 else None, match["lang"])
            if key not in found or path.suffix == ".gz":  # prefer the .gz when both are present
                found[key] = path
    return [(lang, n, path) for (n, lang), path in sorted(found.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1]))]


def read_multi30k(
    root: PathLike, task: int = 1, split: str = "train", langs: Sequence[str] | None = None
) -> list[Multi30kCaption]:
    """All captions of one Multi30K split (every language found, or ``langs``), ordered by (n, lang, line).

    ``root`` is the ``data/`` folder; ``split`` is Multi30K's name (``train``, ``val``,
    ``test_2016_flickr`` for task 1, ``test_2016`` for task 2).
    """
    if task not in (1, 2):
        raise ValueError(f"Multi30K task must be 1 or 2, not {task!r}")
    image_list = multi30k_image_list_path(root, task, split)
    files = [(lang, n, path) for lang, n, path in multi30k_files(root, task, split) if langs is None or lang in langs]
    if not files:
        raise FormatError(f"{Path(root) / f'task{task}' / 'raw'}: no caption files for split {split!r}")
    records: list[Multi30kCaption] = []
    for lang, n, path in files:
        records.extend(read_parallel(image_list, path, lang, n))
    return records


def write_multi30k(
    root: PathLike, records: Sequence[Multi30kCaption], task: int = 1, split: str = "train", compress: bool = True
) -> list[Path]:
    """Write one split: its image list and one raw file per (n, lang), each in image-list order."""
    if task not in (1, 2):
        raise ValueError(f"Multi30K task must be 1 or 2, not {task!r}")
    groups: dict[tuple[int | None, str], list[Multi30kCaption]] = {}
    for rec in records:
        if (rec.n is None) != (task == 1):
            raise ValueError(f"task {task} records {'must not' if task == 1 else 'must'} carry a caption number n: {rec}")
        groups.setdefault((rec.n, rec.lang), []).append(rec)
    images: list[str] | None = None
    for key, group in groups.items():
        group.sort(key=lambda r: r.index)
        order = [r.image for r in group]
        if [r.index for r in group] != list(range(len(group))):
            raise ValueError(f"Multi30K {split} {key}: indices are not 0..{len(group) - 1}")
        if images is None:
            images = order
        elif order != images:
            raise ValueError(f"Multi30K {split} {key}: a different image order than the other files of the split")
    written = [write_image_list(multi30k_image_list_path(root, task, split), images or [])]
    raw = Path(root) / f"task{task}" / "raw"
    for (n, lang), group in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        stem = f"{split}.{lang}" if task == 1 else f"{split}.{n}.{lang}"
        written.append(write_lines(raw / (stem + (".gz" if compress else "")), [r.text for r in group], compress))
    return written


# --------------------------------------------------------------------------------------------------
# Tagged caption files: "<image>#<tag>#<n> <text>" (Flickr8k-CN, NRCCR)


@dataclass(frozen=True)
class TaggedCaption:
    image: str  # as written before "#<tag>#<n>": "1000268201_693b08cb0e.jpg" (Flickr8k-CN), "video123" (NRCCR)
    tag: str
    n: int
    text: str
    line: int = field(default=0, compare=False)  # 1-based line in the file read; 0 when built in code

    @property
    def caption_id(self) -> str:
        return f"{self.image}#{self.tag}#{self.n}"

    @property
    def image_id(self) -> str:
        """The image name without a trailing ``.jpg`` (Flickr8k items are keyed that way)."""
        return self.image[:-4] if self.image.lower().endswith(".jpg") else self.image


_TAGGED_ID = re.compile(r"^(?P<image>.+)#(?P<tag>[A-Za-z0-9_\-]+)#(?P<n>\d+)$")


def read_tagged_captions(path: PathLike, bad_lines: list[BadLine] | None = None) -> list[TaggedCaption]:
    """Lines ``<image>#<tag>#<n> <text>``, split on the first space (or tab); an id without text raises
    or, with ``bad_lines``, is recorded and skipped."""
    path = Path(path)
    records = []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue  # a blank line carries no caption and shifts nothing in this keyed format
        parts = re.split(r"[ \t]", line, maxsplit=1)
        match = _TAGGED_ID.match(parts[0])
        if not match:
            raise FormatError(f"{path}:{lineno}: expected '<image>#<tag>#<n> <text>', got {line[:80]!r}")
        text = _text(path, lineno, parts[1] if len(parts) > 1 else "", bad_lines)
        if text is not None:
            records.append(TaggedCaption(match["image"], match["tag"], int(match["n"]), text, lineno))
    return records


def write_tagged_captions(path: PathLike, records: Iterable[TaggedCaption]) -> Path:
    lines = []
    for rec in records:
        if not _TAGGED_ID.match(rec.caption_id) or " " in rec.image or "\t" in rec.image:
            raise ValueError(f"cannot write caption id {rec.caption_id!r}: expected '<image>#<tag>#<n>' without spaces")
        lines.append(f"{rec.caption_id} {rec.text}")
    return write_lines(path, lines, compress=False)


# Flickr8k-CN (Li et al., ICMR 2016): the tag names the caption set.
FLICKR8KCN_TAGS: dict[str, tuple[str, str]] = {
    "enc": ("en", "human"),  # the original Flickr8k English
    "zhc": ("zh", "human"),  # written by native speakers, independent of the English
    "zhm": ("zh", "human-translation"),  # human translation of the test split's English
    "zhb": ("zh", "mt:baidu"),
    "zhg": ("zh", "mt:google"),
}

read_flickr8kcn_captions = read_tagged_captions
write_flickr8kcn_captions = write_tagged_captions


def read_flickr8k_split(path: PathLike) -> list[str]:
    """A Flickr8k-CN split file: image ids without ``.jpg``, one a line."""
    return read_image_list(path)


def write_flickr8k_split(path: PathLike, ids: Iterable[str]) -> Path:
    return write_image_list(path, ids)


# NRCCR (Wang et al., ACM MM 2022) caption files, "<id>#<tag>#<n> <text>", where the tag says what the
# caption is relative to the English source: enc, enc2<l>, enc2<l>2enc, <l>, <l>2enc.
_LANG = r"[a-z]{2}(?:-[a-z]{2})?"
_NRCCR_MT = re.compile(rf"^enc2(?P<lang>{_LANG})$")
_NRCCR_BT = re.compile(rf"^enc2(?P<lang>{_LANG})2enc$")
_NRCCR_HUMAN_TO_EN = re.compile(rf"^(?P<lang>{_LANG})2enc$")
_NRCCR_HUMAN = re.compile(rf"^(?P<lang>{_LANG})$")


def nrccr_tag_meaning(tag: str, mt_system: str = "unknown") -> tuple[str, str]:
    """(lang, source) of an NRCCR tag; ``mt_system`` names the MT used (NRCCR's files do not say).

    >>> nrccr_tag_meaning("enc2de2enc", "google")
    ('en', 'back-translation:google')
    """
    if tag == "enc":
        return "en", "human"
    if match := _NRCCR_BT.match(tag):
        return "en", f"back-translation:{mt_system}"
    if match := _NRCCR_MT.match(tag):
        return match["lang"], f"mt:{mt_system}"
    if match := _NRCCR_HUMAN_TO_EN.match(tag):
        return "en", f"mt:{mt_system}"
    if match := _NRCCR_HUMAN.match(tag):
        return match["lang"], "human"
    raise ValueError(f"unknown NRCCR caption tag {tag!r} (expected enc, enc2<l>, enc2<l>2enc, <l> or <l>2enc)")


def nrccr_tag(lang: str, source: str, target_lang: str) -> str:
    """The NRCCR tag of a caption in ``lang`` from ``source`` in a setting whose target language is
    ``target_lang`` (needed because MT and back-translation into English do not name the language)."""
    kind = source.split(":", 1)[0]
    if lang == "en":
        return {"human": "enc", "back-translation": f"enc2{target_lang}2enc", "mt": f"{target_lang}2enc"}[kind]
    return {"human": lang, "mt": f"enc2{lang}"}[kind]


def read_nrccr_captions(
    path: PathLike, mt_system: str = "unknown", bad_lines: list[BadLine] | None = None
) -> list[tuple[TaggedCaption, str, str]]:
    """(record, lang, source) for each line of an NRCCR caption file."""
    out = []
    for rec in read_tagged_captions(path, bad_lines):
        try:
            lang, source = nrccr_tag_meaning(rec.tag, mt_system)
        except ValueError as exc:
            raise FormatError(f"{path}:{rec.line}: {exc}") from None
        out.append((rec, lang, source))
    return out


write_nrccr_captions = write_tagged_captions
