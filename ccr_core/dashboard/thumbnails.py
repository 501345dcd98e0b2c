"""Thumbnails of a world's items: small JPEG files in the world's cache folder, made once and served
by the web app (the only image files it serves besides exports)."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from ccr_core.backbones.vision import load_rgb
from ccr_core.data.bundle import Bundle, Item

THUMB_SIZE = 192  # longest side of a thumbnail, pixels
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def safe_name(text: str) -> str:
    """A file-name-safe slug plus a short hash (ids may hold '#', '/', spaces ...)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:40]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def make_thumbnail(bundle: Bundle, item: Item, out_dir: Path) -> Path:
    """The item's thumbnail in ``out_dir`` (written atomically the first time); a video given as a
    folder of frames shows its first frame, an unreadable picture a labelled grey placeholder."""
    out = out_dir / f"{safe_name(item.id)}.jpg"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    src = bundle.image_path(item)
    try:
        if src.is_dir():
            frames = sorted(p for p in src.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            image = load_rgb(frames[0])
        elif src.suffix == ".npy":
            raise ValueError("frame features only")
        else:
            image = load_rgb(src)
    except Exception:  # noqa: BLE001 -- a missing or unreadable picture gets a labelled placeholder
        image = Image.new("RGB", (THUMB_SIZE, THUMB_SIZE), (200, 200, 200))
        ImageDraw.Draw(image).text((8, THUMB_SIZE // 2), item.id[:24], fill=(60, 60, 60))
    image.thumbnail((THUMB_SIZE, THUMB_SIZE))
    save_jpeg(image, out, 85)
    return out


TRUTH_BORDER = ("#F0E442", "#000000")  # Okabe-Ito yellow framed in black: visible on light and dark pictures alike
TRUTH_BORDER_PX = 10


def marked_thumbnail(thumb: Path) -> Path:
    """A copy of ``thumb`` with a thick border drawn in: the ground-truth tile of a search (a gallery
    component gives no per-tile style, so the mark is part of the picture)."""
    out = thumb.with_name(thumb.stem + "-truth.jpg")
    if out.exists():
        return out
    with Image.open(thumb) as image:
        inner = image.convert("RGB")
    colour, frame = TRUTH_BORDER
    w, h = inner.size
    pad = TRUTH_BORDER_PX
    marked = Image.new("RGB", (w + 2 * pad, h + 2 * pad), colour)
    marked.paste(inner, (pad, pad))
    draw = ImageDraw.Draw(marked)
    draw.rectangle([0, 0, w + 2 * pad - 1, h + 2 * pad - 1], outline=frame, width=2)
    draw.rectangle([pad - 2, pad - 2, w + pad + 1, h + pad + 1], outline=frame, width=2)
    save_jpeg(marked, out, 90)
    return out


def save_jpeg(image: Image.Image, out: Path, quality: int) -> None:
    """Write ``out`` whole or not at all, through a temporary file of this call's own: two requests making the same
    thumbnail at once each write theirs and the last rename wins (the same picture). With one shared temporary name,
    the second rename found the file gone (a search failed when two searches framed the same picture)."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.stem + ".", suffix=".tmp.jpg")
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, "JPEG", quality=quality)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
