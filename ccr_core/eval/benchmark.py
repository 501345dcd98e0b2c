"""Standard CCR benchmarks in one command (``ccr benchmark xflickrco|multi30k``): build the test
bundle from the upstream layout as published, evaluate every checkpoint on it, and print the table
the field reports -- per language R@1/5/10 in both directions and SumR, and for xFlickr&CO the MRV
over its languages (CCRK's population std of each instance's ranks, averaged; docs/methods.md §2).

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
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ccr_core.data.bundle import Bundle, load_bundle
from ccr_core.io import sha256_file, write_json_atomic, write_text_atomic

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
    from ccr_core.data import formats

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
    from ccr_core.data.importer import import_captions

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
    from ccr_core.training.train import resolve_bundle

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
    from ccr_core.data import flickr8k_ml
    from ccr_core.data.bundle import Manifest
    from ccr_core.paths import shared_data_dir

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


def run_benchmark(cfg: BenchmarkConfig, workspace: str | os.PathLike, progress: bool = True, log=print) -> dict:
    """Build the bundle, evaluate every checkpoint; return ``{"bundle", "import", "results", "seconds"}``
    (each result as :func:`ccr_core.evaluate.evaluate_model` returns it, plus ``trained_on`` and ``overlap``)."""
    from ccr_core.data.importer import format_import_summary
    from ccr_core.evaluate import evaluate_model, load_trained
    from ccr_core.training.checkpoint import verify_checkpoint
    from ccr_core.training.train import TrainConfig, Workbench, prepare_workbench

    started = time.perf_counter()
    workspace = Path(workspace)
    folders = []
    for folder in cfg.checkpoints:  # every checkpoint is checked before any work
        folder = Path(folder)
        ckpt = folder / "best" if (folder / "best").is_dir() else folder
        folders.append((ckpt, verify_checkpoint(ckpt)))
    bundle = build_benchmark_bundle(cfg, workspace)
    log(f"{BENCHMARKS[cfg.benchmark]}: bundle {bundle.root}")
    log(format_import_summary(bundle))
    report = bundle.manifest.extra.get("import", {})
    order = XFLICKRCO_LANGUAGES if cfg.benchmark == "xflickrco" else MULTI30K_LANGUAGES
    languages = [lang for lang in order if lang in bundle.languages] + [lang for lang in bundle.languages if lang not in order]
    benches: dict[str, Workbench] = {}
    results = []
    for ckpt, meta in folders:
        train_cfg = TrainConfig.from_dict(meta["train_config"])
        key = json.dumps([train_cfg.visual_backbone, train_cfg.text_backbone, train_cfg.trainable_layers, train_cfg.text_prefix])
        if key not in benches:
            benches[key] = prepare_workbench(train_cfg, workspace, bundle=bundle, progress=progress, splits=("test",))
        bench = benches[key]
        name = f"{ckpt.parent.name}/{ckpt.name}" if ckpt.name == "best" else ckpt.name
        model = load_trained(ckpt, bench, name)
        overlap = training_overlap(bundle, meta)
        n_gallery = len(bundle.items_in("test"))
        if overlap.checked and overlap.note:
            log(f"{name}: {overlap.note}")
        if not overlap.checked:
            log(f"{name}: trained on {overlap.trained_on}: {overlap.note}")
        elif overlap.items:
            extra = "" if set(overlap.by_flickr_id) <= set(overlap.by_content) else \
                f" ({len(overlap.by_content)} by image content, {len(overlap.items) - len(overlap.by_content)} more by Flickr id)"
            action = f"dropped from its evaluation (--exclude-trained)" if cfg.exclude_trained else "pass --exclude-trained to drop them"
            log(f"WARNING {name}: {len(overlap.items)} of the {n_gallery} gallery images are in the training split of "
                f"{overlap.trained_on}, which it was trained on{extra}; {action}")
        else:
            log(f"{name}: none of the {n_gallery} gallery images is in the training split of {overlap.trained_on}")
        eval_bench = bench
        if cfg.exclude_trained and overlap.items:
            eval_bench = bench.with_bundle(without_items(bundle, set(overlap.items)))  # same caches (a fine-tuned top's maps too)
        result = evaluate_model(model, eval_bench, mrv_languages=languages)
        result.pop("train_seconds", None)  # a benchmark is never the training bundle: its seconds are no column here
        result["trained_on"] = overlap.trained_on
        result["overlap"] = {"checked": overlap.checked, "images": len(overlap.items), "by_content": len(overlap.by_content),
                             "by_flickr_id": len(overlap.by_flickr_id), "excluded": bool(cfg.exclude_trained and overlap.items)}
        results.append(result)
    return {"benchmark": cfg.benchmark, "bundle": str(bundle.root), "languages": languages, "import": report,
            "results": results, "seconds": time.perf_counter() - started}


def benchmark_table(run: dict) -> str:
    """The field's table: one row per checkpoint x language (R@1/5/10 text->image and image->text,
    SumR), then MRV per checkpoint over the benchmark's languages."""
    header = ["model", "trained on", "lang", "images", "t2i R@1", "t2i R@5", "t2i R@10", "i2t R@1", "i2t R@5", "i2t R@10", "SumR"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in run["results"]:
        for lang in run["languages"]:
            rep = r.get("groups", {}).get(lang)
            if rep is None:
                continue
            cells = [r["model"], r["trained_on"], lang, str(rep["n_images"])]
            cells += [f"{rep[f'{d}_R@{k}']:.1f}" for d in ("t2i", "i2t") for k in (1, 5, 10)]
            cells.append(f"{rep['SumR']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    mrv_lines = []
    for r in run["results"]:
        m = r.get("mrv", {})
        if "mrv_i2t" in m:
            mrv_lines.append(f"MRV over {', '.join(m['languages'])} ({m['n_instances']} images captioned in all): {r['model']} "
                             f"i2t {m['mrv_i2t']:.2f}, t2i {m['mrv_t2i']:.2f}, mean {m['mrv_mean']:.2f} (lower is better)")
        elif "error" in m:
            mrv_lines.append(f"MRV: {r['model']}: {m['error']}")
    return "\n".join(lines) + "\n" + ("\n".join(mrv_lines) + "\n" if mrv_lines else "")


def write_benchmark(run: dict, out: str | os.PathLike) -> tuple[Path, Path]:
    """``results.json`` (every number) and ``results.md`` (the table) in ``out``."""
    out = Path(out)
    write_json_atomic(out / "results.json", run)
    write_text_atomic(out / "results.md", benchmark_table(run))
    return out / "results.json", out / "results.md"
