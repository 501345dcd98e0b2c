"""JSON and table caption formats: IGLUE xFlickr&CO JSONL, COCO Karpathy-split JSON, and a generic
CSV / JSONL with columns image, lang, text[, source][, split]. Conventions in :mod:`ccr_core.data.formats`."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from ccr_core.data.formats.lines import BadLine, FormatError, PathLike, _text, read_lines, write_lines
from ccr_core.io import atomic_path

# --------------------------------------------------------------------------------------------------
# JSON-lines plumbing


def _iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise FormatError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        yield lineno, record


def _write_json_lines(path: PathLike, records: Iterable[dict]) -> Path:
    return write_lines(path, (json.dumps(r, ensure_ascii=False) for r in records), compress=False)


def _string(value, path: Path, lineno: int, key: str, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FormatError(f"{path}:{lineno}: field {key!r} is missing or empty")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FormatError(f"{path}:{lineno}: field {key!r} must be a string, got {type(value).__name__}")
    return str(value).strip()


# --------------------------------------------------------------------------------------------------
# IGLUE xFlickr&CO: {"sentences": [...], "id": ..., "img_path": ...} per line; one language a file


@dataclass(frozen=True)
class XFlickrCOImage:
    id: str  # the file's "id" as a string (IGLUE writes ints for COCO images, strings for Flickr)
    img_path: str
    sentences: tuple[str, ...]
    lang: str
    line: int = field(default=0, compare=False)


def read_xflickrco(path: PathLike, lang: str, bad_lines: list[BadLine] | None = None) -> list[XFlickrCOImage]:
    """One IGLUE xFlickr&CO JSONL file; ``lang`` is the file's language (the file does not say).

    Lines are ``{"sentences": [...], "id": ..., "img_path": ...}``; ``id`` is a string for the
    Flickr30k images and an int for the COCO ones. The public test files hold lines whose only
    sentence is ``""``: they raise, or with ``bad_lines`` are recorded and skipped (an image whose
    every sentence is empty is dropped; ``"sentences": []`` counts as one empty caption).
    """
    path = Path(path)
    out = []
    for lineno, rec in _iter_json_lines(path):
        sentences = rec.get("sentences")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, list) or (not sentences and bad_lines is None):
            raise FormatError(f"{path}:{lineno}: field 'sentences' must be a non-empty list of strings")
        texts = []
        for s in sentences or [""]:
            if not isinstance(s, str):
                raise FormatError(f"{path}:{lineno}: field 'sentences' holds a {type(s).__name__}, not a string")
            text = _text(path, lineno, s, bad_lines)
            if text is not None:
                texts.append(text)
        if not texts:
            continue
        out.append(XFlickrCOImage(
            _string(rec.get("id"), path, lineno, "id"), _string(rec.get("img_path"), path, lineno, "img_path"),
            tuple(texts), lang, lineno,
        ))
    return out


def write_xflickrco(path: PathLike, records: Iterable[XFlickrCOImage]) -> Path:
    return _write_json_lines(path, ({"sentences": list(r.sentences), "id": r.id, "img_path": r.img_path} for r in records))


# --------------------------------------------------------------------------------------------------
# COCO Karpathy split: dataset_coco.json (also dataset_flickr8k.json / dataset_flickr30k.json)


@dataclass(frozen=True)
class KarpathyImage:
    filename: str
    filepath: str  # "" for the Flickr versions, "train2014"/"val2014" for COCO
    split: str  # train / val / test (Karpathy's "restval" folded into train)
    image_id: str  # cocoid when present, else imgid
    sentences: tuple[str, ...]
    index: int  # position in the "images" list, for error messages

    @property
    def relpath(self) -> str:
        return f"{self.filepath}/{self.filename}" if self.filepath else self.filename


KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def read_karpathy(path: PathLike, bad_lines: list[BadLine] | None = None) -> list[KarpathyImage]:
    """Karpathy-split JSON; ``restval`` becomes ``train``. Errors name the file and ``images[i]``;
    a sentence without text raises, or with ``bad_lines`` is recorded and skipped."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise FormatError(f"{path}: expected an object with an 'images' list")
    out = []
    for i, img in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(img, dict):
            raise FormatError(f"{where}: expected an object")
        if not isinstance(img.get("filename"), str) or not img["filename"]:
            raise FormatError(f"{where}: field 'filename' is missing or empty")
        split = KARPATHY_SPLITS.get(img.get("split"))
        if split is None:
            raise FormatError(f"{where}: unknown split {img.get('split')!r} (expected train, restval, val or test)")
        sentences = img.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise FormatError(f"{where}: field 'sentences' must be a non-empty list")
        texts = []
        for j, sent in enumerate(sentences):
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if raw is None and isinstance(sent, dict) and isinstance(sent.get("tokens"), list):
                raw = " ".join(sent["tokens"])
            if not isinstance(raw, str) or not raw.strip():
                if bad_lines is None:
                    raise FormatError(f"{where}.sentences[{j}]: no 'raw' text")
                bad_lines.append(BadLine(f"{where}.sentences[{j}]", "empty caption", f"{where}.sentences[{j}]: no 'raw' text"))
                continue
            texts.append(raw.strip())
        if not texts:
            continue
        image_id = img.get("cocoid", img.get("imgid", i))
        out.append(KarpathyImage(img["filename"], img.get("filepath") or "", split, str(image_id), tuple(texts), i))
    return out


# --------------------------------------------------------------------------------------------------
# Generic CSV / JSONL: columns image, lang, text[, source][, split]


@dataclass(frozen=True)
class CaptionRow:
    image: str  # an image path relative to the image folder, or a name without extension
    lang: str
    text: str
    source: str = "human"
    split: str | None = None
    line: int = field(default=0, compare=False)


GENERIC_COLUMNS = ("image", "lang", "text", "source", "split")


def _row(rec: dict, path: Path, lineno: int, default_lang: str | None, bad_lines: list[BadLine] | None = None) -> CaptionRow | None:
    lang = _string(rec.get("lang"), path, lineno, "lang", required=default_lang is None) or default_lang
    text = rec.get("text")
    if not isinstance(text, str):
        raise FormatError(f"{path}:{lineno}: field 'text' is missing or not a string")
    image = _string(rec.get("image"), path, lineno, "image")
    text = _text(path, lineno, text, bad_lines)
    if text is None:
        return None
    return CaptionRow(
        image, lang, text,
        _string(rec.get("source"), path, lineno, "source", required=False) or "human",
        _string(rec.get("split"), path, lineno, "split", required=False), lineno,
    )


def read_captions_jsonl(path: PathLike, default_lang: str | None = None, bad_lines: list[BadLine] | None = None) -> list[CaptionRow]:
    """JSON lines ``{"image", "text"[, "lang"][, "source"][, "split"]}``; empty text as in :func:`read_captions_csv`."""
    path = Path(path)
    rows = (_row(rec, path, lineno, default_lang, bad_lines) for lineno, rec in _iter_json_lines(path))
    return [r for r in rows if r is not None]


def write_captions_jsonl(path: PathLike, rows: Iterable[CaptionRow]) -> Path:
    return _write_json_lines(path, (
        {k: v for k, v in (("image", r.image), ("lang", r.lang), ("text", r.text), ("source", r.source), ("split", r.split)) if v is not None}
        for r in rows
    ))


def read_captions_csv(path: PathLike, default_lang: str | None = None, bad_lines: list[BadLine] | None = None) -> list[CaptionRow]:
    """A CSV (or, for ``.tsv``, tab-separated) file with a header naming at least image and text.

    A row with empty text raises, or with ``bad_lines`` is recorded and skipped."""
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FormatError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise FormatError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from None
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter="\t" if path.suffix == ".tsv" else ",")
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in ("image", "text") + (() if default_lang else ("lang",)) if c not in header]
    if missing:
        raise FormatError(f"{path}:1: header lacks column(s) {', '.join(missing)} (has {', '.join(header) or 'none'})")
    rows = []
    try:
        for rec in reader:
            lineno = reader.line_num
            if None in rec:
                raise FormatError(f"{path}:{lineno}: more fields than the header has columns")
            if all(not (v or "").strip() for v in rec.values()):
                continue
            row = _row(rec, path, lineno, default_lang, bad_lines)
            if row is not None:
                rows.append(row)
    except csv.Error as exc:
        raise FormatError(f"{path}:{reader.line_num}: {exc}") from None
    return rows


def write_captions_csv(path: PathLike, rows: Iterable[CaptionRow]) -> Path:
    path = Path(path)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter="\t" if path.suffix == ".tsv" else ",", lineterminator="\n")
    writer.writerow(GENERIC_COLUMNS)
    for r in rows:
        writer.writerow([r.image, r.lang, r.text, r.source, r.split or ""])
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue().encode("utf-8"))
    return path
