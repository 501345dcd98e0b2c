"""The caption-format registry: each format the importer reads is one :class:`CaptionFormat` entry, a name
with a ``read`` function (file -> :class:`ImportRow` list) and, when it can be recognised, a ``detect``
function (:class:`Sniff` -> bool). Every module of :mod:`ccr_core.data.formats` is imported when the
package is, so a new format is one file there that calls :func:`register_format` (plus its test)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from ccr_core.data.formats.lines import BadLine, FormatError, read_lines


@dataclass(frozen=True)
class ImportRow:
    """One caption of any input format, with where it came from for error messages."""
    image: str  # the image as the file names it (resolved against the image folder by the importer)
    lang: str
    text: str
    source: str  # human, human-translation, mt:<system>, back-translation:<system>, generated
    split: str | None  # the split the file gives it, if any
    where: str  # "file:line" (or "file: images[i]" for a whole-file JSON)
    file: int = -1  # index of the caption file among the import's files (set by the importer)


@dataclass(frozen=True)
class ReadOptions:
    """What a format's ``read`` may need beyond the file itself."""
    lang: str | None = None  # the file's language, where the caller knows it (--lang, or the path's)
    image_list: Path | None = None  # parallel line files: the list whose line i names the image of caption line i
    mt_system: str = "unknown"  # the MT system behind machine-translated captions the file does not name
    bad_lines: list[BadLine] | None = None  # forgiving: unusable lines are recorded here and skipped; None: they raise


class Sniff:
    """What detection looks at: the file name (lower case, without ``.gz``) and, read on first use
    only, its first non-empty line and that line as a JSON object."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name.lower().removesuffix(".gz")

    @cached_property
    def first_line(self) -> str:
        return next((line for line in read_lines(self.path) if line.strip()), "")

    @cached_property
    def looks_json(self) -> bool:
        """A ``.jsonl`` name or a first line starting with ``{``: then the line must parse (else FormatError)."""
        if not (self.name.endswith(".jsonl") or self.first_line.lstrip().startswith("{")):
            return False
        try:
            self.__dict__["json_line"] = json.loads(self.first_line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{self.path}:1: not valid JSON ({exc.msg})") from None
        return True

    @property
    def json_line(self) -> Any:
        """The first line parsed (when :attr:`looks_json`; None otherwise)."""
        return self.__dict__.get("json_line") if self.looks_json else None


@dataclass(frozen=True)
class CaptionFormat:
    name: str  # what --format takes
    help: str  # the one line `ccr data import --help` shows for it
    read: Callable[[Path, ReadOptions], list[ImportRow]]
    detect: Callable[[Sniff], bool] | None = None  # None: never guessed, only named
    order: int = 100  # detection and listing order: lower first (the first format whose detect says yes wins)
    lang_from_path: bool = False  # a file of it with no language given takes the one its path names


_FORMATS: dict[str, CaptionFormat] = {}


def register_format(entry: CaptionFormat) -> CaptionFormat:
    """Add a format; a second format of the same name is an error (so two files cannot silently disagree)."""
    if entry.name == "auto" or not entry.name.isidentifier():
        raise ValueError(f"a caption format name must be a plain word other than 'auto', not {entry.name!r}")
    if entry.name in _FORMATS:
        raise ValueError(f"caption format {entry.name!r} is registered twice")
    _FORMATS[entry.name] = entry
    return entry


def caption_formats() -> dict[str, CaptionFormat]:
    """Every registered format by name, in detection order."""
    return dict(sorted(_FORMATS.items(), key=lambda kv: (kv[1].order, kv[0])))


def caption_format(name: str) -> CaptionFormat:
    if name not in _FORMATS:
        raise ValueError(f"unknown caption format {name!r}; expected auto or one of {', '.join(caption_formats())}")
    return _FORMATS[name]


def detect_format(path: str | Path) -> str:
    """The name of the first format (in detection order) whose ``detect`` recognises the file."""
    sniff = Sniff(path)
    for entry in caption_formats().values():
        if entry.detect is not None and entry.detect(sniff):
            return entry.name
    raise FormatError(f"{sniff.path}: cannot tell the caption format from the name or the first line; pass --format, one of "
                      f"{', '.join(caption_formats())} (plain text with one caption a line is --format lines with --image-list)")
