"""Small stand-ins for the field's public benchmark files, with the flaws the real ones have.

The IGLUE xFlickr&CO test folder (``annotations/<lang>/test.jsonl``, one line per image:
``{"sentences": [...], "id": ..., "img_path": ...}``, ids strings for Flickr30k images and ints
for COCO ones, a few lines whose only sentence is ``""``), named by Flickr30k id while the photos
at hand are Flickr8k-named and only part of the gallery; and a Multi30K ``data/`` folder
(task1/raw/<split>.<lang>.gz + task1/image_splits/<split>.txt).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from PIL import Image

FLICKR_IDS = [1007129816 + 7919 * k for k in range(12)]  # Flickr30k ids of the fixture's Flickr images
COCO_IDS = [122239, 57843, 358982, 274455]


def flickr8k_name(flickr_id: int) -> str:
    """The Flickr8k file name of a Flickr30k id (numeric prefix + an underscore and a hex tail)."""
    return f"{flickr_id}_{(flickr_id * 2654435761) % 16**10:010x}.jpg"


def write_photo(path: Path, k: int) -> Path:
    """A distinct small JPEG per ``k`` (distinct bytes, so content hashes differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (48, 40), ((37 * k) % 256, (91 * k + 40) % 256, (53 * k + 90) % 256))
    for x in range(0, 48, 6):  # a pattern, so the JPEG is not a flat colour
        image.putpixel((x, (k * 3 + x) % 40), (255, 255, 255))
    image.save(path, quality=90)
    return path


def make_flickr8k_folder(root: Path, present: list[int]) -> Path:
    """A folder of Flickr8k-named photos for the fixture ids at positions ``present``."""
    for k in present:
        write_photo(root / flickr8k_name(FLICKR_IDS[k]), k)
    return root


SENTENCE = {
    "en": "a photo number {k} of a scene", "de": "ein Foto Nummer {k} einer Szene", "ja": "場面の写真 {k} 番",
    "zh": "第 {k} 张照片", "es": "una foto número {k}", "id": "foto nomor {k}", "ru": "фото номер {k}", "tr": "fotoğraf {k}",
}


def make_xflickrco(root: Path, langs=("de", "en", "ja"), empty: dict[str, list[int]] | None = None) -> Path:
    """``root/<lang>/test.jsonl`` for each language: the Flickr images (string ids), then the COCO
    ones (int ids); ``empty[lang]`` lists the 1-based lines whose sentence is ``""``."""
    empty = empty or {}
    for lang in langs:
        lines = []
        for k, fid in enumerate(FLICKR_IDS):
            lines.append({"sentences": [SENTENCE[lang].format(k=k)], "id": str(fid), "img_path": f"{fid}.jpg"})
        for k, cid in enumerate(COCO_IDS):
            lines.append({"sentences": [SENTENCE[lang].format(k=100 + k)], "id": cid, "img_path": f"COCO_val2014_{cid:012d}.jpg"})
        for line in empty.get(lang, []):
            lines[line - 1]["sentences"] = [""]
        (root / lang).mkdir(parents=True, exist_ok=True)
        (root / lang / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return root


def make_multi30k(root: Path, split: str = "test_2016_flickr", langs=("en", "de", "fr", "cs"), empty: dict[str, list[int]] | None = None) -> Path:
    """A Multi30K ``data/`` folder with one task-1 split over the fixture's Flickr ids."""
    empty = empty or {}
    (root / "task1" / "image_splits").mkdir(parents=True, exist_ok=True)
    (root / "task1" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "task1" / "image_splits" / f"{split}.txt").write_text("".join(f"{fid}.jpg\n" for fid in FLICKR_IDS))
    words = {"en": "a photo {k}", "de": "ein Foto {k}", "fr": "une photo {k}", "cs": "fotka {k}"}
    for lang in langs:
        lines = ["" if k + 1 in empty.get(lang, []) else words[lang].format(k=k) for k in range(len(FLICKR_IDS))]
        (root / "task1" / "raw" / f"{split}.{lang}.gz").write_bytes(gzip.compress("".join(l + "\n" for l in lines).encode()))
    return root
