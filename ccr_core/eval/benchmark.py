"""Standard CCR benchmarks in one command (``ccr benchmark xflickrco|multi30k``): build the test
bundle from the upstream layout as published (:mod:`ccr_core.data.test_sets`), evaluate every
checkpoint on it, and print the table the field reports -- per language R@1/5/10 in both directions
and SumR, and for xFlickr&CO the MRV over its languages (CCRK's population std of each instance's
ranks, averaged; docs/methods.md §2). Gallery images a checkpoint was trained on are counted and
warned about; ``exclude_trained`` drops them from that checkpoint's evaluation.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ccr_core.data.importer import format_import_summary
from ccr_core.data.test_sets import (BENCHMARKS, MULTI30K_LANGUAGES, XFLICKRCO_LANGUAGES, BenchmarkConfig, build_benchmark_bundle,
                                     training_overlap, without_items)
from ccr_core.eval.retrieval import evaluate_model
from ccr_core.io import write_json_atomic, write_text_atomic
from ccr_core.paths import RESULTS_FILE
from ccr_core.training.checkpoint import verify_checkpoint
from ccr_core.training.config import BackboneConfig, TrainConfig
from ccr_core.training.inference import load_trained
from ccr_core.training.workbench import Workbench, prepare_workbench


def run_benchmark(cfg: BenchmarkConfig, workspace: str | os.PathLike, progress: bool = True, log=print) -> dict:
    """Build the bundle, evaluate every checkpoint; return ``{"bundle", "import", "results", "seconds"}``
    (each result as :func:`ccr_core.eval.retrieval.evaluate_model` returns it, plus ``trained_on`` and ``overlap``)."""
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
    benches: dict[BackboneConfig, Workbench] = {}
    results = []
    for ckpt, meta in folders:
        train_cfg = TrainConfig.from_dict(meta["train_config"])
        key = BackboneConfig.of_run(train_cfg)
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
            action = "dropped from its evaluation (--exclude-trained)" if cfg.exclude_trained else "pass --exclude-trained to drop them"
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
        result["scored"] = {"checkpoint": ckpt.name if ckpt.name in ("best", "last") else "the folder given",
                            "steps": (meta.get("train_state") or {}).get("step")}  # as every record says what it scored
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
    write_json_atomic(out / RESULTS_FILE, run)
    write_text_atomic(out / "results.md", benchmark_table(run))
    return out / RESULTS_FILE, out / "results.md"
