"""Standard CCR test sets from their upstream files as published (xFlickr&CO, Multi30K): the bundle
``ccr benchmark`` evaluates on, and which of its gallery images a checkpoint was trained on.

A benchmark is only as honest as its gallery: each checkpoint's training images are looked up
(by SHA-256 of the image bytes, and by Flickr id for copies re-encoded elsewhere) in the bundle it
was trained on, and gallery images found there are counted and warned about; ``exclude_trained``
drops them from that checkpoint's evaluation.

Layouts read (see :func:`xflickrco_files`, :func:`multi30k_files`):
- xFlickr&CO (IGLUE ``datasets/xFlickrCO/annotations``): ``<lang>/test.jsonl`` per language, images
  named by Flickr30k id (``1007129816.jpg``) and COCO name; with a Flickr8k photo folder, the
  Flickr30k-id rule of :mod:`ccr_core.data.importer` finds the photos that are Flickr8k ones.
- Multi30K (``multi30k/dataset`` ``data/``): ``task1/raw/<split>.<lang>.gz`` parallel to
  ``task1/image_splits/<split>.txt``; the test set is ``test_2016_flickr`` (1,000 images, en de fr cs).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ccr_core.data import flickr8k_ml, formats
from ccr_core.data.bundle import Bundle, Manifest, load_bundle, resolve_bundle
from ccr_core.data.importer import import_captions
from ccr_core.io import sha256_file
from ccr_core.paths import shared_data_dir

XFLICKRCO_LANGUAGES = ("de", "en", "es", "id", "ja", "ru", "tr", "zh")  # IGLUE's xFlickr&CO test languages
MULTI30K_TEST_SPLIT = "test_2016_flickr"
MULTI30K_LANGUAGES = ("en", "de", "fr", "cs")  # the order the field's tables use
BENCHMARKS = {
    "xflickrco": "IGLUE xFlickr&CO test (8 languages, 2,000 images: 1,000 Flickr30k + 1,000 COCO)",
    "multi30k": f"Multi30K task 1 {MULTI30K_TEST_SPLIT} (en de fr cs, 1,000 Flickr30k images)",
}
_FLICKR_ID = re.compile(r"^(\d+)(?:_[0-9a-f]+)?$")


@dataclass
class BenchmarkConfig:
    """What ``ccr benchmark`` was asked to do."""
    benchmark: str  # a key of BENCHMARKS
    images: Path  # the photo folder (e.g. Flickr8k's), possibly holding only part of the gallery
    annotations: Path  # xFlickr&CO: the folder of <lang>/test.jsonl; Multi30K: its data/ folder
    checkpoints: list[Path] = field(default_factory=list)  # run folders or checkpoint folders
    exclude_trained: bool = False  # drop gallery images that are in a checkpoint's training split
    image_map: Path | None = None  # passed to the importer (two columns: benchmark name, file)
    strict: bool = False  # refuse bad lines (empty captions) instead of skipping them
    split: str = MULTI30K_TEST_SPLIT  # Multi30K split to read


def xflickrco_files(annotations: str | os.PathLike) -> list[Path]:
    """``<lang>/test.jsonl`` of every language folder under ``annotations`` (IGLUE's
    ``datasets/xFlickrCO/annotations``; the ``xFlickrCO`` folder above it works too)."""
    root = Path(annotations)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: xFlickr&CO annotation folder not found")
    if (root / "annotations").is_dir() and not (root / "en" / "test.jsonl").exists():
        root = root / "annotations"
    files = sorted(p for p in root.glob("*/test.jsonl"))
    if not files:
        raise FileNotFoundError(f"{root}: no <lang>/test.jsonl files (expected IGLUE's xFlickrCO/annotations layout, e.g. de/test.jsonl)")
    return files


def multi30k_files(data_dir: str | os.PathLike, split: str = MULTI30K_TEST_SPLIT) -> tuple[Path, list[Path]]:
    """(image list, raw caption files) of a Multi30K task-1 split under ``data_dir`` (the repository's ``data/``)."""
    root = Path(data_dir)
    if not (root / "task1").is_dir() and (root / "data" / "task1").is_dir():
        root = root / "data"
    image_list = formats.multi30k_image_list_path(root, 1, split)
    if not image_list.is_file():
        raise FileNotFoundError(f"{image_list}: Multi30K image list not found (expected the multi30k/dataset data/ layout)")
    files = [path for _, _, path in formats.multi30k_files(root, 1, split)]
    if not files:
        raise FileNotFoundError(f"{root / 'task1' / 'raw'}: no {split}.<lang>.gz caption files")
    return image_list, files


def _inputs_digest(paths: Sequence[Path], images: Path, image_map: Path | None) -> str:
    """A short hash of what the benchmark bundle is built from: caption files' bytes, the image
    folder's listing, the map. The same inputs give the same bundle name, so feature and text
    caches are reused on a rerun and never mixed up when the folder changes."""
    digest = hashlib.sha256()
    for path in list(paths) + ([image_map] if image_map else []):
        digest.update(path.name.encode() + b"\0" + sha256_file(path).encode())
    digest.update(os.path.abspath(images).encode())
    digest.update("\n".join(sorted(os.listdir(images))).encode())
    return digest.hexdigest()[:10]


def build_benchmark_bundle(cfg: BenchmarkConfig, workspace: str | os.PathLike) -> Bundle:
    """Import the benchmark's test files over ``cfg.images`` into ``<workspace>/benchmarks/``
    (reused when built from the same inputs): test split only, captions of absent images and empty
    captions skipped and recorded (the import summary is in the manifest)."""
    images = Path(cfg.images)
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: image folder not found")
    image_list = None
    if cfg.benchmark == "xflickrco":
        files = xflickrco_files(cfg.annotations)
    elif cfg.benchmark == "multi30k":
        image_list, files = multi30k_files(cfg.annotations, cfg.split)
    else:
        raise ValueError(f"unknown benchmark {cfg.benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    name = f"{cfg.benchmark}-{_inputs_digest(files + ([image_list] if image_list else []), images, cfg.image_map)}"
    out = Path(workspace) / "benchmarks" / name
    if (out / "manifest.json").is_file() and not cfg.strict:
        try:
            return load_bundle(out)
        except ValueError:
            pass  # an unreadable earlier build is rebuilt below
    import_captions(images, files, out, name=name, split="test", only_existing=True, strict=cfg.strict, image_map=cfg.image_map,
                    image_list=image_list, force=True, description=f"{BENCHMARKS[cfg.benchmark]}, images from {images}")
    return load_bundle(out)


# --------------------------------------------------------------------------------------------------
# Training overlap


@dataclass
class TrainingOverlap:
    """Gallery images that a checkpoint saw in training (see the module docstring)."""
    trained_on: str  # the bundle the checkpoint names
    checked: bool  # False when that bundle is not at hand
    by_content: list[str] = field(default_factory=list)  # gallery item ids whose image bytes are a training image's
    by_flickr_id: list[str] = field(default_factory=list)  # ... whose Flickr id is a training image's (a superset for re-encoded copies)
    note: str = ""

    @property
    def items(self) -> list[str]:
        """Every gallery item counted as seen in training (content or Flickr id)."""
        return sorted(set(self.by_content) | set(self.by_flickr_id))


def _flickr_id(image: str) -> str | None:
    match = _FLICKR_ID.match(Path(image).stem)
    return match[1] if match else None


@functools.lru_cache(maxsize=None)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def image_sha256(path: Path) -> str:
    """SHA-256 of an image file, computed once per process while the file is unchanged."""
    stat = path.stat()
    return _file_sha256(str(path), stat.st_mtime_ns, stat.st_size)


def image_hashes(bundle: Bundle, split: str | None = None) -> dict[str, str]:
    """``{sha256 of the image file: item id}`` for a bundle's image items (of one split) whose file exists."""
    return {image_sha256(bundle.image_path(it)): it.id for it in bundle.items
            if it.kind == "image" and (split is None or it.split == split) and bundle.image_path(it).is_file()}


def training_overlap(gallery: Bundle, meta: dict) -> TrainingOverlap:
    """Which gallery items are in the training split of the bundle a checkpoint was trained on."""
    trained_on = str(meta.get("train_config", {}).get("data") or meta.get("bundle") or "")
    note = ""
    try:
        train_bundle = load_bundle(resolve_bundle(trained_on), check_images=False, check_hashes=False)
    except (FileNotFoundError, ValueError) as exc:
        train_bundle = _rebuildable_bundle(trained_on)
        if train_bundle is None:
            return TrainingOverlap(trained_on, False, note=f"its training bundle is not at hand ({str(exc)[:200]}); overlap not checked")
        note = f"{trained_on} is not built; its splits were read from the upstream files in {train_bundle.root}"
    trained = image_hashes(train_bundle, "train")
    test_items = [it for it in gallery.items if it.split == "test" and it.kind == "image"]
    by_content = [it.id for it in test_items if image_sha256(gallery.image_path(it)) in trained]
    train_ids = {fid for it in train_bundle.items_in("train") if (fid := _flickr_id(it.image))}
    by_id = [it.id for it in test_items if (fid := _flickr_id(it.image)) and fid in train_ids]
    return TrainingOverlap(train_bundle.name, True, by_content, by_id, note)


def _rebuildable_bundle(name: str) -> Bundle | None:
    """A bundle CCR Lab builds from upstream files (Flickr8k-ML), assembled in memory from the
    real-data mirror when it was never built into the workspace; None when that is not possible."""
    if name != flickr8k_ml.NAME:
        return None
    source = shared_data_dir()
    try:
        items, _, _ = flickr8k_ml.flickr8k_ml_records(source)
    except (FileNotFoundError, ValueError):
        return None
    return Bundle(source, Manifest(name, image_root=str((source / flickr8k_ml.IMAGES_DIR).absolute())), items, [])


def without_items(bundle: Bundle, drop: set[str]) -> Bundle:
    """The bundle less some items and their captions (in memory)."""
    return Bundle(bundle.root, bundle.manifest, [it for it in bundle.items if it.id not in drop],
                  [c for c in bundle.captions if c.item not in drop], {k: v for k, v in bundle.noise.items()})


# --------------------------------------------------------------------------------------------------
# Running
