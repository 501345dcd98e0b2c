"""The caption formats CCR Lab reads out of the box, as registry entries over the readers of
:mod:`~ccr_core.data.formats.lines` and :mod:`~ccr_core.data.formats.structured`. Each entry says how
to recognise a file (``detect``) and how its records become import rows (``read``)."""
from __future__ import annotations

from pathlib import Path

from ccr_core.data.formats import lines, structured
from ccr_core.data.formats.lines import FormatError
from ccr_core.data.formats.registry import CaptionFormat, ImportRow, ReadOptions, Sniff, register_format


def _tagged(sniff: Sniff) -> str | None:
    """The tag of a ``<image>#<tag>#<n> <text>`` first line, or None."""
    head = sniff.first_line.split(" ", 1)[0].split("\t", 1)[0]
    match = lines._TAGGED_ID.match(head)
    return match["tag"] if match else None


def _rows_of_table(path: Path, records: list[structured.CaptionRow]) -> list[ImportRow]:
    return [ImportRow(r.image, r.lang, r.text, r.source, r.split, f"{path}:{r.line}") for r in records]


def _read_csv(path: Path, opts: ReadOptions) -> list[ImportRow]:
    return _rows_of_table(path, structured.read_captions_csv(path, default_lang=opts.lang, bad_lines=opts.bad_lines))


def _read_jsonl(path: Path, opts: ReadOptions) -> list[ImportRow]:
    return _rows_of_table(path, structured.read_captions_jsonl(path, default_lang=opts.lang, bad_lines=opts.bad_lines))


def _read_xflickrco(path: Path, opts: ReadOptions) -> list[ImportRow]:
    if not opts.lang:
        raise ValueError(f"{path}: xFlickr&CO files do not name their language: pass --lang (or keep the file in a <lang>/ folder)")
    return [ImportRow(r.img_path, opts.lang, text, "human", None, f"{path}:{r.line}")
            for r in structured.read_xflickrco(path, opts.lang, bad_lines=opts.bad_lines) for text in r.sentences]


def _read_karpathy(path: Path, opts: ReadOptions) -> list[ImportRow]:
    return [ImportRow(r.relpath, opts.lang or "en", text, "human", r.split, f"{path}: images[{r.index}]")
            for r in structured.read_karpathy(path, bad_lines=opts.bad_lines) for text in r.sentences]


def _read_flickr8kcn(path: Path, opts: ReadOptions) -> list[ImportRow]:
    rows = []
    for r in lines.read_tagged_captions(path, bad_lines=opts.bad_lines):
        if r.tag not in lines.FLICKR8KCN_TAGS:
            raise FormatError(f"{path}:{r.line}: unknown Flickr8k-CN tag {r.tag!r} (expected {', '.join(lines.FLICKR8KCN_TAGS)})")
        tag_lang, source = lines.FLICKR8KCN_TAGS[r.tag]
        rows.append(ImportRow(r.image, tag_lang, r.text, source, None, f"{path}:{r.line}"))
    return rows


def _read_nrccr(path: Path, opts: ReadOptions) -> list[ImportRow]:
    return [ImportRow(r.image, tag_lang, r.text, source, None, f"{path}:{r.line}")
            for r, tag_lang, source in lines.read_nrccr_captions(path, opts.mt_system, bad_lines=opts.bad_lines)]


def _read_parallel(path: Path, opts: ReadOptions) -> list[ImportRow]:
    if opts.image_list is None:
        raise ValueError(f"{path}: --format lines needs --image-list (the file whose line i names the image of caption line i)")
    if not opts.lang:
        raise ValueError(f"{path}: parallel line files do not name their language: pass --lang (or name the file <name>.<lang>[.gz])")
    return [ImportRow(r.image, opts.lang, r.text, "human", None, f"{path}:{r.index + 1}")
            for r in lines.read_parallel(opts.image_list, path, opts.lang, bad_lines=opts.bad_lines)]


register_format(CaptionFormat(
    "csv", "CSV/TSV with a header: image, text[, lang][, source][, split] (one or many languages a file)",
    _read_csv, lambda s: s.name.endswith((".csv", ".tsv")), order=10))
register_format(CaptionFormat(
    "jsonl", 'JSON lines {"image", "text"[, "lang"][, "source"][, "split"]} (one or many languages a file)',
    _read_jsonl, lambda s: s.looks_json, order=50))  # after karpathy (.json) and xflickrco (a "sentences" key)
register_format(CaptionFormat(
    "xflickrco", 'IGLUE xFlickr&CO {"sentences", "id", "img_path"}, one language a file (--lang, or a <lang>/ folder)',
    _read_xflickrco, lambda s: s.looks_json and isinstance(s.json_line, dict) and "sentences" in s.json_line, order=40,
    lang_from_path=True))
register_format(CaptionFormat(
    "karpathy", "Karpathy-split JSON (dataset_coco/flickr8k/flickr30k.json): images[].filename, split, sentences[].raw",
    _read_karpathy, lambda s: s.name.endswith(".json"), order=20))
register_format(CaptionFormat(
    "flickr8kcn", "Flickr8k-CN lines '<image>#<tag>#<n> <text>', tags enc zhc zhm zhb zhg",
    _read_flickr8kcn, lambda s: _tagged(s) in lines.FLICKR8KCN_TAGS, order=60))
register_format(CaptionFormat(
    "nrccr", "NRCCR lines '<id>#<tag>#<n> <text>', tags enc, enc2<l>, enc2<l>2enc, <l>, <l>2enc",
    _read_nrccr, lambda s: _tagged(s) not in (None, *lines.FLICKR8KCN_TAGS), order=70))
register_format(CaptionFormat(
    "lines", "parallel line files: line i describes image i of --image-list (Multi30K raw, Flickr30k translations); "
             "--lang, or a .<lang>[.gz] suffix",
    _read_parallel, None, order=80, lang_from_path=True))
