"""Readers and writers for the caption formats that public CCR data comes in: line-based ones in
:mod:`~ccr_core.data.formats.lines`, JSON and table ones in :mod:`~ccr_core.data.formats.structured`;
every name is importable from here.

Each reader returns plain records (frozen dataclasses) and raises :class:`FormatError` naming the
file and line of anything malformed; the bundle builders and :mod:`ccr_core.data.importer` turn the
records into a bundle. Formats: Multi30K raw files, Flickr8k-CN and NRCCR ``<id>#<tag>#<n> <text>``
caption files, IGLUE xFlickr&CO JSONL, COCO Karpathy-split JSON, and a generic CSV / JSONL.

The formats the importer reads are entries of a registry (:mod:`~ccr_core.data.formats.registry`): a
name, a ``read`` and a ``detect`` function. The built-in ones are in :mod:`~ccr_core.data.formats.builtin`;
every module of this package is imported with it, so a new format is one file here that calls
:func:`register_format`, and the importer, ``ccr data import --format`` and its help pick it up.

Bad lines: a caption line that is well-formed but carries no caption (empty text, as some public
test files have) raises by default; a reader given a ``bad_lines`` list records it there as a
:class:`BadLine` and skips it instead, so an importer can be forgiving while still saying what it
dropped. Malformed files (broken JSON, a wrong header, mismatched line counts) always raise.

Caption text is returned stripped of surrounding whitespace (a few upstream lines end in spaces);
lines are split on ``\\n`` only, so a stray U+2028 or form feed inside a caption does not shift the
line-to-image alignment that Multi30K relies on.
"""
from __future__ import annotations

from ccr_core.data.formats.lines import (  # noqa: F401
    BadLine,
    caption_tag,
    FLICKR8KCN_TAGS,
    FormatError,
    make_caption_id,
    multi30k_caption_path,
    multi30k_files,
    multi30k_image_list_path,
    Multi30kCaption,
    nrccr_tag,
    nrccr_tag_meaning,
    PathLike,
    read_flickr8k_split,
    read_image_list,
    read_lines,
    read_multi30k,
    read_nrccr_captions,
    read_parallel,
    read_flickr8kcn_captions,
    read_tagged_captions,
    TaggedCaption,
    write_flickr8k_split,
    write_image_list,
    write_lines,
    write_multi30k,
    write_flickr8kcn_captions,
    write_nrccr_captions,
    write_tagged_captions,
    _TAGGED_ID,
)
from ccr_core.data.formats.structured import (  # noqa: F401
    CaptionRow,
    GENERIC_COLUMNS,
    KARPATHY_SPLITS,
    KarpathyImage,
    read_captions_csv,
    read_captions_jsonl,
    read_karpathy,
    read_xflickrco,
    write_captions_csv,
    write_captions_jsonl,
    write_xflickrco,
    XFlickrCOImage,
)
from ccr_core.data.formats.registry import (  # noqa: F401
    CaptionFormat,
    caption_format,
    caption_formats,
    detect_format,
    ImportRow,
    ReadOptions,
    register_format,
    Sniff,
)


def _import_every_format_module() -> None:
    """Import each module of this package, so that every file that registers a format is read."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_every_format_module()
