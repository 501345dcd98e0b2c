"""Which file in an image folder a caption's image name means: an image-map file, the name as written
(with a common suffix, or its last path part), or the Flickr30k-id rule (``1007129816.jpg`` is the
Flickr8k photo ``1007129816_e794419615.jpg``, and the other way round)."""
from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Mapping

from ccr_core.data import formats
from ccr_core.data.formats import FormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def read_image_map(path: str | os.PathLike) -> dict[str, str]:
    """A two-column file: the image name used by the captions, then the file in the image folder.

    Columns are separated by a tab, a comma or spaces; blank lines and ``#`` comments are skipped;
    a header line ``image,file`` (or any first line whose second column is ``file``/``path``) too.
    """
    path = Path(path)
    out: dict[str, str] = {}
    first = True
    for lineno, line in enumerate(formats.read_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in (line.split("\t") if "\t" in line else line.split(",") if "," in line else line.split())]
        parts = [p for p in parts if p]
        if len(parts) != 2:
            raise FormatError(f"{path}:{lineno}: expected two columns '<name in the captions> <file in the image folder>', got {line[:80]!r}")
        header, first = first and parts[1].lower() in ("file", "path", "filename", "target"), False
        if header:
            continue
        name, target = parts
        if out.get(name, target) != target:
            raise FormatError(f"{path}:{lineno}: {name!r} is mapped to {target!r} here but to {out[name]!r} earlier")
        out[name] = target
    if not out:
        raise FormatError(f"{path}: the image map is empty")
    return out


_FLICKR8K_NAME = re.compile(r"^(?P<id>\d+)_[0-9a-f]+$")
_FLICKR30K_NAME = re.compile(r"^\d+$")


class ImageResolver:
    """A caption's image reference -> the file's path relative to the image folder, and by which rule.

    Rules, in order: ``image-map`` (a :func:`read_image_map` entry), ``name`` (the name as written,
    with a common suffix, or its last path component), ``flickr30k-id`` (the numeric-prefix rule of
    the module docstring; a prefix shared by two files is not resolved).
    """

    def __init__(self, images_dir: str | os.PathLike, image_map: Mapping[str, str] | None = None, id_rule: bool = True):
        self.images_dir = Path(images_dir)
        self.image_map = dict(image_map or {})
        self.id_rule = id_rule
        self._by_id: dict[str, list[str]] | None = None  # numeric id -> file names (both conventions)

    def _id_index(self) -> dict[str, list[str]]:
        if self._by_id is None:
            self._by_id = defaultdict(list)
            with os.scandir(self.images_dir) as entries:
                for entry in entries:
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix.lower() not in IMAGE_SUFFIXES:
                        continue
                    match = _FLICKR8K_NAME.match(stem)
                    if match or _FLICKR30K_NAME.match(stem):
                        self._by_id[match["id"] if match else stem].append(entry.name)
        return self._by_id

    def _exists(self, relative: str) -> bool:
        return (self.images_dir / relative).is_file() or (self.images_dir / relative).is_dir()

    def resolve(self, ref: str) -> tuple[str | None, str]:
        """``(relative path, rule)``, or ``(None, why not)``."""
        base = ref.rsplit("/", 1)[-1]
        for key in (ref, base, os.path.splitext(base)[0]):
            if key in self.image_map:
                target = self.image_map[key]
                if os.path.isabs(target):
                    try:
                        target = str(Path(target).relative_to(self.images_dir))
                    except ValueError:
                        return None, f"is mapped to {target!r}, which is outside"
                return (target, "image-map") if self._exists(target) else (None, f"is mapped to {target!r}, which is missing")
        candidates = [ref] + [ref + suffix for suffix in IMAGE_SUFFIXES]
        if "/" in ref:  # a Karpathy "train2014/x.jpg" also matches a flat folder of x.jpg
            candidates.append(base)
        for candidate in candidates:
            if self._exists(candidate):
                return candidate, "name"
        if self.id_rule:
            stem = os.path.splitext(base)[0]
            match = _FLICKR8K_NAME.match(stem)
            number = match["id"] if match else stem if _FLICKR30K_NAME.match(stem) else None
            if number is not None:
                hits = [n for n in self._id_index().get(number, []) if os.path.splitext(n)[0] != stem]
                if len(hits) == 1:
                    return hits[0], "flickr30k-id"
                if len(hits) > 1:
                    return None, f"has a Flickr id ({number}) shared by {len(hits)} files ({', '.join(sorted(hits)[:3])})"
        return None, "not found"
