"""Training: ``ccr train --method M --data BUNDLE [--noise p] [--config FILE] [key=value ...]``.

One loop for every method. Frozen parts are computed once (visual feature cache, text-state cache),
so an epoch only runs what trains: the heads, plus the backbone tops a run fine-tunes -- the top
``trainable_layers`` e5 layers over cached lower-layer states, the last ``trainable_image_blocks``
EfficientNet-Lite0 blocks and head conv over cached feature maps (with flips; BatchNorm statistics
frozen), both at ``backbone_lr``. Each epoch ends with validation on the target-language
text->image recall sum (R@1+5+10), which selects the best checkpoint; the learning rate decays by
``lr_decay`` per epoch and halves after ``halve_after`` epochs without improvement; training stops
early after ``patience`` such epochs. ``last/`` holds the newest checkpoint with optimiser state, so
a killed run resumes with ``--resume``. Under ``torchrun`` (gloo on CPU, NCCL on GPU) each process
takes its share of every step's micro-batches and gradients are averaged (DistributedDataParallel);
a single process reproduces that run with ``accumulate = world size``.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ccr_core.data.bundle import Bundle, load_bundle
from ccr_core.devices import batch_to, resolve_device
from ccr_core.encoding import TrainedModel, embed_captions, embed_items
from ccr_core.features import TEST_SPLIT_SUFFIX, FeatureCache
from ccr_core.io import read_json, write_json_atomic
from ccr_core.training.checkpoint import CheckpointError, load_optimizer_state, load_weights, save_checkpoint, verify_checkpoint
from ccr_core.training.data import BatchSource, needed_captions, training_examples


@dataclass
class TrainConfig:
    method: str = "baseline"  # a name from ccr_core.methods.METHODS
    data: str = "demo-world"  # bundle folder or workspace bundle name
    noise: float = 0.0  # fraction of training pairs whose target caption is replaced by another item's
    noise_seed: int = 0  # seed of the noise injection (independent of the training seed)
    seed: int = 0  # model initialisation and batch order
    epochs: int = 10  # upper bound; early stopping may end sooner
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit); the Experiment tab uses it
    batch_size: int = 128  # NRCCR's published batch size
    accumulate: int = 1  # micro-batches per optimiser step (a single-process stand-in for DDP)
    targets_per_batch: int = 0  # target languages per batch, drawn at random (0: all; 1-to-K always uses all)
    lr: float = 1e-4  # Adam, NRCCR's published rate
    lr_decay: float = 0.99  # per epoch
    halve_after: int = 3  # epochs without improvement before the learning rate halves
    patience: int = 10  # epochs without improvement before stopping
    grad_clip: float = 2.0  # gradient-norm clip
    text_backbone: str = "e5-small"
    trainable_layers: int = 0  # top text-backbone layers to fine-tune (0: frozen, cached once)
    trainable_image_blocks: int = 0  # last EfficientNet-Lite0 blocks (+ head conv) to fine-tune over cached maps (0: frozen; 16: all)
    backbone_lr: float = 0.0  # learning rate of the fine-tuned backbone tops (0: the same as lr)
    text_prefix: str = "query: "  # e5's prefix for short texts
    visual_backbone: str = "efficientnet-lite0"
    target_langs: list[str] | None = None  # None: every language with training translations
    target_sources: list[str] = field(default_factory=lambda: ["mt:", "human-translation"])
    select_lang: str | None = None  # validation language for model selection (default: first target)
    threads: int = 0  # torch CPU threads (0: torch's default)
    device: str = "auto"  # "auto": this process's GPU (cuda:LOCAL_RANK) when CUDA is present, else "cpu"; or "cpu", "cuda", "cuda:1"
    method_config: dict = field(default_factory=dict)  # overrides of the method's own config fields

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def apply_overrides(self, pairs: list[str]) -> None:
        """``key=value`` pairs; keys not in TrainConfig go to ``method_config``. Values parse as JSON when they can."""
        known = {f.name for f in fields(self)}
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"expected key=value, got {pair!r}")
            key, raw = pair.split("=", 1)
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            if key in known:
                current = getattr(self, key)
                if isinstance(current, (int, float)) and not isinstance(current, bool) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ValueError(f"{key}={raw}: {key} must be a number (like {current!r})")
                setattr(self, key, value)
            else:
                self.method_config[key] = value


@dataclass
class Workbench:
    """Everything a run needs besides the method: bundle, caches and encoders."""

    bundle: Bundle
    features: FeatureCache
    text_encoder: object
    text_states: object
    visual_identity: dict
    visual_backbone: object = None  # the loaded frozen visual backbone (needed to fine-tune its top blocks)
    workspace: Path | None = None  # where lazily built caches (feature maps) go
    maps: dict = field(default_factory=dict)  # first fine-tuned block -> FeatureMapCache, built on first use
    map_items: list | None = None  # only these items' maps when the full cache is absent (a dashboard's test gallery)

    @property
    def text_identity(self) -> dict:
        return self.text_encoder.identity()

    def with_bundle(self, bundle: Bundle) -> "Workbench":
        """The same caches over another version of the bundle (e.g. with injected noise: same items)."""
        return replace(self, bundle=bundle)

    def feature_maps(self, trainable_blocks: int, progress: bool = False):
        """The cached feature maps below the last ``trainable_blocks`` visual blocks (computed once per workspace)."""
        from ccr_core.training.image_cache import build_feature_maps, feature_map_dir, first_trained_block

        if self.visual_backbone is None or self.workspace is None:
            raise ValueError("this workbench was made without its visual backbone and workspace; build it with prepare_workbench")
        first = first_trained_block(self.visual_backbone, trainable_blocks)
        if first not in self.maps:
            folder = feature_map_dir(self.workspace, self.bundle.name, self.visual_backbone, first)
            bundle, flips = self.bundle, True
            if self.map_items is not None and not (folder / "meta.json").exists():
                # a dashboard serving the test split: the gallery's maps alone, unmirrored (a minute, not the whole
                # bundle's ten), in a cache of their own, so nothing of the full one is replaced
                bundle, flips = Bundle(self.bundle.root, self.bundle.manifest, list(self.map_items), [], {}), False
                folder = folder.with_name(folder.name + TEST_SPLIT_SUFFIX)
            self.maps[first] = build_feature_maps(bundle, self.visual_backbone, first, folder, progress=progress, flips=flips)
        return self.maps[first]

    def drop_test_split_maps(self) -> None:
        """Forget the test gallery's own maps (``map_items``) once the full caches exist: they would not serve training."""
        self.map_items = None
        self.maps = {k: m for k, m in self.maps.items() if not m.root.name.endswith(TEST_SPLIT_SUFFIX)}


def prepare_workbench(cfg: TrainConfig, workspace: Path, bundle: Bundle | None = None, progress: bool = True,
                      extra_texts=(), splits: tuple[str, ...] = ("train", "val", "test"), backbone=None, encoder=None) -> Workbench:
    """Load the bundle and make sure the feature and text-state caches exist (computing them once).

    Text states are computed for the captions training can use (``cfg``'s languages and sources)
    and for every validation and test caption of ``splits``; a dashboard passes ``("val", "test")``.
    ``backbone`` / ``encoder``: already loaded ones of ``cfg``'s backbones, used instead of loading
    them again (the dashboard's background pass; e5 alone is ~0.5 GB and seconds to load).
    """
    from ccr_core.backbones.text import load_text_encoder
    from ccr_core.backbones.vision import load_visual_backbone
    from ccr_core.features import cache_dir_for, extract_features
    from ccr_core.training.text_cache import build_text_cache, cache_identity, text_cache_dir

    if bundle is None:
        bundle = load_bundle(resolve_bundle(cfg.data))
    backbone = backbone if backbone is not None else load_visual_backbone(cfg.visual_backbone)
    if cfg.trainable_image_blocks:
        from ccr_core.training.image_cache import check_fine_tunable

        check_fine_tunable(bundle, backbone, cfg.trainable_image_blocks)  # before any cache is computed
    features = extract_features(bundle, backbone, cache_dir_for(workspace, bundle, backbone), progress=progress)
    encoder = encoder if encoder is not None else load_text_encoder(cfg.text_backbone)
    identity = cache_identity(encoder, cfg.trainable_layers, cfg.text_prefix)
    texts = [c.text for c in bundle.captions if c.split != "train" and c.split in splits] + list(extra_texts)
    if "train" in splits:
        text_of = {c.id: c.text for c in bundle.captions}
        examples = training_examples(bundle, "train", cfg.target_langs, cfg.target_sources)
        texts += [text_of[cid] for cid in needed_captions(examples)]
    states = build_text_cache(encoder, texts, text_cache_dir(workspace, bundle.name, identity), cfg.trainable_layers, cfg.text_prefix, progress=progress)
    # a workbench without the training split only evaluates: a fine-tuned top's maps of the test images suffice
    serving = None if "train" in splits else list(bundle.items_in("test", "image"))
    bench = Workbench(bundle, features, encoder, states, backbone.identity(), backbone, Path(workspace), map_items=serving)
    if cfg.trainable_image_blocks > 0:
        bench.feature_maps(cfg.trainable_image_blocks, progress=progress)
    return bench


def resolve_bundle(data: str) -> Path:
    from ccr_core.paths import bundle_dir

    path = Path(data)
    if path.exists():
        return path
    if bundle_dir(data).exists():
        return bundle_dir(data)
    raise FileNotFoundError(f"no bundle {data!r}: give a folder or build it with `ccr data build {data}`")


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def method_config_class(name: str):
    import ccr_core.methods  # noqa: F401  (registers every method)
    from ccr_core.methods.base import METHODS

    return METHODS.get(name).config_class


def build_run_method(cfg: TrainConfig, bench: Workbench):
    import ccr_core.methods  # noqa: F401  (registers every method)
    from ccr_core.methods.base import build_method
    from ccr_core.training.image_cache import ImageTop
    from ccr_core.training.text_cache import TextTop

    langs = ["en"] + sorted(set(cfg.target_langs or [l for l in bench.bundle.languages if l != "en"]))
    overrides = {"text_dim": int(bench.text_states.states.shape[1]), "visual_dim": bench.features.dim, "languages": langs}
    if hasattr(method_config_class(cfg.method), "video"):
        overrides["video"] = any(it.kind == "video" for it in bench.bundle.items)
    overrides.update(cfg.method_config)
    method = build_method(cfg.method, None, **overrides)
    if cfg.trainable_layers > 0:
        method.text_top = TextTop(bench.text_encoder, cfg.trainable_layers)
    if cfg.trainable_image_blocks > 0:
        method.visual_top = ImageTop(bench.visual_backbone, cfg.trainable_image_blocks)
    return method


def embed_split(method, bench: Workbench, split: str, lang: str, sources=None):
    """Embeddings of a split's items and of its captions in ``lang``: (images (N, E), captions (M, E), caption->image index, captions)."""
    method.eval()
    items = bench.bundle.items_in(split)
    position = {it.id: i for i, it in enumerate(items)}
    caps = [c for c in bench.bundle.captions_in(split, lang) if c.item in position]
    if sources is not None:
        caps = [c for c in caps if any(c.source == s or (s.endswith(":") and c.source.startswith(s)) for s in sources)]
    model = TrainedModel(method.name, method, {}, Path())
    return embed_items(model, bench, items), embed_captions(model, bench, caps, lang), np.array([position[c.item] for c in caps], dtype=np.int64), caps


VALIDATION_SOURCES = ("human", "generated", "human-translation")


def validation_score(method, bench: Workbench, lang: str) -> dict:
    """Text->image R@1+R@5+R@10 on the validation split in ``lang`` (human/native captions, else MT)."""
    from ccr_core.eval.metrics import recall_at_k, text_to_image_ranks

    images, texts, c2i, caps = embed_split(method, bench, "val", lang, VALIDATION_SOURCES)
    if len(caps) == 0:
        images, texts, c2i, caps = embed_split(method, bench, "val", lang, ("mt:",))
    if len(caps) == 0:
        raise ValueError(f"no validation captions in {lang!r}; choose select_lang among {bench.bundle.languages}")
    ranks = text_to_image_ranks((texts @ images.T).numpy(), c2i)
    recalls = recall_at_k(ranks)
    return {"lang": lang, "t2i_recall_sum": float(sum(recalls.values())), **{f"t2i_R@{k}": v for k, v in recalls.items()}, "n_captions": len(caps)}


def _distributed() -> tuple[int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            use_nccl = torch.cuda.is_available()
            if use_nccl:  # one GPU per process: bind it before NCCL starts
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group("nccl" if use_nccl else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    workspace: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    bench: Workbench | None = None,
    on_step: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train ``cfg.method``; return the run summary (also written to ``run_dir/summary.json``).

    ``on_step`` receives ``{"step", "epoch", "loss", ...}`` after every optimiser step (the dashboard's
    live loss curve); ``should_stop`` is polled between steps to cancel cleanly.
    """
    from ccr_core.paths import workspace_dir

    run_dir = Path(run_dir)
    workspace = Path(workspace or workspace_dir())
    device = resolve_device(cfg.device)  # checked before any distributed start-up or cache work
    rank, world = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if bench is None:
        bundle = load_bundle(resolve_bundle(cfg.data))
        if cfg.noise > 0:
            bundle = _noisy(bundle, cfg)
        bench = prepare_workbench(cfg, workspace, bundle, progress=progress and rank == 0)
    examples = training_examples(bench.bundle, "train", cfg.target_langs, cfg.target_sources)
    if not examples:
        raise ValueError(f"{bench.bundle.name}: no English training captions to train on")
    _set_seed(cfg.seed)
    method = build_run_method(cfg, bench).to(device)
    maps = bench.feature_maps(cfg.trainable_image_blocks, progress=progress and rank == 0) if cfg.trainable_image_blocks > 0 else None
    source = BatchSource(examples, bench.features, bench.text_states, bench.bundle, maps)
    select_lang = cfg.select_lang or (method.config.languages[1] if len(method.config.languages) > 1 else "en")
    params = method.main_parameters()
    optimizer = torch.optim.Adam(_param_groups(method, params, cfg), lr=cfg.lr)
    extra_opts = {f"extra{i}": o for i, o in enumerate(method.extra_optimizers())}
    model = method
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    state = {"epoch": 0, "step": 0, "best_score": -1.0, "best_epoch": -1, "stale": 0, "lr": cfg.lr, "history": []}
    last_dir, best_dir = run_dir / "last", run_dir / "best"
    if resume and (last_dir / "manifest.json").exists():
        meta = verify_checkpoint(last_dir)
        method.load_state_dict(load_weights(last_dir))  # load_state_dict copies onto the method's device
        opt_state = load_optimizer_state(last_dir, "adam")
        if opt_state:
            optimizer.load_state_dict(opt_state)
        for name, opt in extra_opts.items():
            st = load_optimizer_state(last_dir, name)
            if st:
                opt.load_state_dict(st)
        state = meta["train_state"]
    _set_lr(optimizer, state["lr"])
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "train_config.json", asdict(cfg))
    base_meta = {
        "method": cfg.method,
        "method_config": method.config.to_dict(),
        "train_config": asdict(cfg),
        "bundle": bench.bundle.name,
        "text_backbone": bench.text_identity,
        "text_trainable_layers": cfg.trainable_layers,
        "text_prefix": cfg.text_prefix,
        "visual_backbone": bench.visual_identity,
        "visual_trainable_blocks": cfg.trainable_image_blocks,
        "select_lang": select_lang,
    }
    start_time = time.perf_counter()
    earlier = float(state.get("seconds", 0.0))  # training time before a resume: reported times are the whole run's

    def run_seconds() -> float:
        return earlier + time.perf_counter() - start_time

    seen = 0
    target_exposures = int(state.get("target_exposures", 0))  # target-language captions trained on (the budget's unit)
    # per language: a batch holds the target languages its pairs share, so languages can differ in exposures
    exposures_by_language: dict[str, int] = dict(state.get("exposures_by_language", {}))
    stop = False
    while state["epoch"] < cfg.epochs and not stop:
        epoch = state["epoch"]
        # Dropout and sampling draw from a per-epoch seed, so a resumed run repeats the same epochs.
        _set_seed(cfg.seed * 1_000_003 + epoch)
        method.train()
        batches = source.epoch_batches(cfg.batch_size, seed=cfg.seed * 100_003 + epoch)
        steps = [batches[i : i + cfg.accumulate * world] for i in range(0, len(batches), cfg.accumulate * world)]
        steps = [s for s in steps if len(s) == cfg.accumulate * world]
        bar = tqdm(steps, disable=not progress or rank != 0, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}", unit="step")
        running = None
        for micro in bar:
            mine = micro[rank::world]
            optimizer.zero_grad(set_to_none=True)
            terms_sum: dict[str, float] = {}
            for k, indices in enumerate(mine):
                batch = source.make_batch(indices, seed=cfg.seed * 7919 + state["step"] * 131 + k * world + rank,
                                          targets_per_batch=0 if cfg.method == "one_to_k" else cfg.targets_per_batch)
                if device.type != "cpu":
                    batch = batch_to(batch, device)
                terms = model(batch)  # the method's forward (image top, then loss), DDP-wrapped when distributed
                (terms["loss"] / len(mine)).backward()
                if hasattr(method, "discriminator_step"):
                    method.discriminator_step(batch)
                for key, value in terms.items():
                    terms_sum[key] = terms_sum.get(key, 0.0) + float(value.detach()) / len(mine)
                seen += len(indices) * (1 + len(batch["targets"]))  # captions (English + each target)
                target_exposures += len(indices) * len(batch["targets"])
                for lang in batch["targets"]:
                    exposures_by_language[lang] = exposures_by_language.get(lang, 0) + len(indices)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            state["step"] += 1
            state["target_exposures"] = target_exposures
            state["exposures_by_language"] = dict(exposures_by_language)
            running = terms_sum["loss"] if running is None else 0.9 * running + 0.1 * terms_sum["loss"]
            elapsed = time.perf_counter() - start_time
            bar.set_postfix(loss=f"{running:.4f}", caps_per_s=f"{seen / max(elapsed, 1e-9):.0f}")
            if on_step is not None and rank == 0:
                on_step({"step": state["step"], "epoch": epoch, "loss": terms_sum["loss"], "terms": terms_sum, "captions_per_s": seen / max(elapsed, 1e-9)})
            if (cfg.max_steps and state["step"] >= cfg.max_steps) or (should_stop is not None and should_stop()):
                stop = True
                break
        bar.close()
        score = _broadcast(validation_score(method, bench, select_lang) if rank == 0 else None, world)
        state["epoch"] = epoch + 1
        improved = score["t2i_recall_sum"] > state["best_score"]
        state["history"].append({"epoch": epoch + 1, "step": state["step"], "val": score, "lr": state["lr"], "seconds": run_seconds(),
                                 "target_exposures": target_exposures, "exposures_by_language": dict(exposures_by_language)})
        if improved:
            state["best_score"], state["best_epoch"], state["stale"] = score["t2i_recall_sum"], epoch + 1, 0
        else:
            state["stale"] += 1
            if state["stale"] % cfg.halve_after == 0:
                state["lr"] /= 2
        state["lr"] *= cfg.lr_decay
        state["seconds"] = run_seconds()
        _set_lr(optimizer, state["lr"])
        if rank == 0:
            meta = {**base_meta, "train_state": state, "val": score, "train_seconds": run_seconds()}
            if improved:
                save_checkpoint(best_dir, method, meta)
            save_checkpoint(last_dir, method, meta, {"adam": optimizer, **extra_opts})
        if progress and rank == 0:
            print(f"epoch {epoch + 1}: val {select_lang} t2i R@1+5+10 = {score['t2i_recall_sum']:.1f}"
                  f"{' (best)' if improved else ''}, lr {state['lr']:.2e}", flush=True)
        if state["stale"] >= cfg.patience:
            break
    summary = {"method": cfg.method, "bundle": bench.bundle.name, "best_epoch": state["best_epoch"], "best_val_t2i_recall_sum": state["best_score"],
               "epochs": state["epoch"], "steps": state["step"], "target_exposures": target_exposures,
               "exposures_by_language": dict(exposures_by_language), "train_seconds": run_seconds(),
               "captions_per_s": seen / max(time.perf_counter() - start_time, 1e-9), "select_lang": select_lang, "history": state["history"]}
    if rank == 0:
        write_json_atomic(run_dir / "summary.json", summary)
    return summary


def _broadcast(obj, world: int):
    """Rank 0's value on every rank (so every process takes the same learning-rate and stop decisions)."""
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _param_groups(method, params, cfg: TrainConfig) -> list[dict]:
    """The main optimiser's groups: heads at ``lr``; fine-tuned backbone tops at ``backbone_lr`` (when set)."""
    tops = {id(p) for p in method.backbone_parameters()}
    heads = [p for p in params if id(p) not in tops]
    backbone = [p for p in params if id(p) in tops]
    scale = cfg.backbone_lr / cfg.lr if cfg.backbone_lr > 0 and backbone else 1.0
    groups = [{"params": heads, "lr_scale": 1.0}]
    if backbone:
        groups.append({"params": backbone, "lr_scale": scale})
    return groups


def _set_lr(optimizer, lr: float) -> None:
    """Every group at ``lr`` times its scale (the schedule's decay and halving move both together)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def _noisy(bundle: Bundle, cfg: TrainConfig) -> Bundle:
    from ccr_core.data.noise import inject_noise

    captions, noise = inject_noise(bundle, cfg.noise, seed=cfg.noise_seed)
    return Bundle(bundle.root, bundle.manifest, bundle.items, captions, noise)
