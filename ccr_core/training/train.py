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

import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

import ccr_core.methods  # noqa: F401  (registers every built-in method)
from ccr_core.data.bundle import load_bundle, resolve_bundle, source_matches
from ccr_core.data.noise import noisy_bundle
from ccr_core.devices import batch_to, resolve_device
from ccr_core.encoding import encode_captions, encode_items
from ccr_core.io import write_json_atomic
from ccr_core.methods.base import METHODS, build_method
from ccr_core.metrics import recall_at_k, text_to_image_ranks
from ccr_core.paths import SUMMARY_FILE, TRAIN_CONFIG_FILE, workspace_dir
from ccr_core.training.checkpoint import load_optimizer_state, load_weights, save_checkpoint, verify_checkpoint
from ccr_core.training.config import TrainConfig
from ccr_core.training.curve import VALIDATION_SOURCES, curve_point, due
from ccr_core.training.data import BatchSource, training_examples
from ccr_core.training.workbench import Workbench, attach_backbone_tops, prepare_workbench

__all__ = ["TrainConfig", "Workbench", "prepare_workbench", "train", "validation_score", "build_run_method"]


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def method_config_class(name: str):
    return METHODS.get(name).config_class


def build_run_method(cfg: TrainConfig, bench: Workbench):
    langs = ["en"] + sorted(set(cfg.target_langs or [l for l in bench.bundle.languages if l != "en"]))
    overrides = {"text_dim": int(bench.text_states.states.shape[1]), "visual_dim": bench.features.dim, "languages": langs}
    if hasattr(method_config_class(cfg.method), "video"):
        overrides["video"] = any(it.kind == "video" for it in bench.bundle.items)
    overrides.update(cfg.method_config)
    method = build_method(cfg.method, None, **overrides)
    attach_backbone_tops(method, bench, cfg.trainable_layers, cfg.trainable_image_blocks)
    return method


def embed_split(method, bench: Workbench, split: str, lang: str, sources=None):
    """Embeddings of a split's items and of its captions in ``lang``: (images (N, E), captions (M, E), caption->image index, captions)."""
    method.eval()
    items = bench.bundle.items_in(split)
    position = {it.id: i for i, it in enumerate(items)}
    caps = [c for c in bench.bundle.captions_in(split, lang) if c.item in position]
    if sources is not None:
        caps = [c for c in caps if source_matches(c.source, sources)]
    return (encode_items(method, bench, items), encode_captions(method, bench, caps, lang),
            np.array([position[c.item] for c in caps], dtype=np.int64), caps)




def validation_score(method, bench: Workbench, lang: str) -> dict:
    """Text->image R@1+R@5+R@10 on the validation split in ``lang`` (human/native captions, else MT)."""
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
        if not dist.is_initialized():
            use_nccl = torch.cuda.is_available()
            if use_nccl:  # one GPU per process: bind it before NCCL starts
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group("nccl" if use_nccl else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class _Run:
    """What the named steps of one training run share: its settings, data, model, optimisers and counters."""

    cfg: TrainConfig
    run_dir: Path
    bench: Workbench
    method: Any  # the CCRMethod being trained
    model: Any  # what the step calls: the method, or its DistributedDataParallel wrapper
    source: BatchSource
    optimizer: torch.optim.Optimizer
    extra_opts: dict  # name -> the method's own optimisers (checkpointed beside "adam")
    params: list  # the main optimiser's parameters (gradient clipping)
    select_lang: str
    device: torch.device
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    state: dict = field(default_factory=dict)  # epoch, step, best score, schedule, history: saved in every checkpoint
    base_meta: dict = field(default_factory=dict)  # what every checkpoint's config.json records about the run
    start_time: float = field(default_factory=time.perf_counter)
    earlier_seconds: float = 0.0  # training time before a resume: reported times are the whole run's
    curve_seconds: float = 0.0  # this session's learning-curve validation passes (not training time)
    seen: int = 0  # captions trained on in this process's session (English + each target), for the speed
    target_exposures: int = 0  # target-language captions trained on (the budget's unit)
    # per language: a batch holds the target languages its pairs share, so languages can differ in exposures
    exposures_by_language: dict = field(default_factory=dict)

    def seconds(self) -> float:
        return self.earlier_seconds + time.perf_counter() - self.start_time - self.curve_seconds

    def curve_point(self) -> None:
        """A learning-curve point after this step when ``eval_every`` says so (its time is not training time)."""
        if self.rank == 0 and due(self.state["step"], self.cfg.eval_every, self.cfg.max_steps):
            tick = time.perf_counter()
            self.state.setdefault("curve", []).append(curve_point(self.method, self.bench, self.state["step"]))
            spent = time.perf_counter() - tick
            self.curve_seconds += spent
            self.state["curve_seconds"] = self.state.get("curve_seconds", 0.0) + spent

    def captions_per_second(self) -> float:
        return self.seen / max(time.perf_counter() - self.start_time, 1e-9)

    def targets_per_batch(self) -> int:
        """The method's own (its class's ``targets_per_batch``: 0 for a loss over every language), else the config's."""
        own = self.method.targets_per_batch
        return self.cfg.targets_per_batch if own is None else own


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
    run = _start_run(cfg, Path(run_dir), Path(workspace or workspace_dir()), progress, bench)
    if resume:
        _resume(run)
    _set_lr(run.optimizer, run.state["lr"])
    if run.rank == 0:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.run_dir / TRAIN_CONFIG_FILE, asdict(cfg))
    run.start_time = time.perf_counter()  # the clock starts with the first step (set-up and caches not counted)
    stop = False
    while run.state["epoch"] < cfg.epochs and not stop:
        epoch = run.state["epoch"]
        # Dropout and sampling draw from a per-epoch seed, so a resumed run repeats the same epochs.
        _set_seed(cfg.seed * 1_000_003 + epoch)
        run.method.train()
        steps = _epoch_steps(run, epoch)
        bar = tqdm(steps, disable=not progress or run.rank != 0, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}", unit="step")
        running = None
        for micro in bar:
            terms = _optimiser_step(run, micro)
            run.curve_point()
            running = terms["loss"] if running is None else 0.9 * running + 0.1 * terms["loss"]
            bar.set_postfix(loss=f"{running:.4f}", caps_per_s=f"{run.captions_per_second():.0f}")
            if on_step is not None and run.rank == 0:
                on_step({"step": run.state["step"], "epoch": epoch, "loss": terms["loss"], "terms": terms,
                         "captions_per_s": run.captions_per_second()})
            if (cfg.max_steps and run.state["step"] >= cfg.max_steps) or (should_stop is not None and should_stop()):
                stop = True
                break
        bar.close()
        if _end_epoch(run, epoch):
            break
    return _finish(run)


def _start_run(cfg: TrainConfig, run_dir: Path, workspace: Path, progress: bool, bench: Workbench | None) -> _Run:
    """The device and process group, the workbench (bundle, noise, caches), the seeded method, its batches and optimisers."""
    device = resolve_device(cfg.device)  # checked before any distributed start-up or cache work
    rank, world_size = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if bench is None:
        bundle = load_bundle(resolve_bundle(cfg.data))
        if cfg.noise > 0:
            bundle = noisy_bundle(bundle, cfg.noise, cfg.noise_seed)
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
    model = method
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    run = _Run(cfg=cfg, run_dir=run_dir, bench=bench, method=method, model=model, source=source, optimizer=optimizer,
               extra_opts={f"extra{i}": o for i, o in enumerate(method.extra_optimizers())}, params=params,
               select_lang=select_lang, device=device, rank=rank, world_size=world_size, progress=progress,
               state={"epoch": 0, "step": 0, "best_val_t2i_recall_sum": -1.0, "best_epoch": -1, "stale": 0, "lr": cfg.lr, "history": []})
    run.base_meta = {
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
    return run


def _resume(run: _Run) -> None:
    """Weights, optimiser states, schedule and counters from ``last/`` when a run left one (else a fresh start)."""
    last_dir = run.run_dir / "last"
    if not (last_dir / "manifest.json").exists():
        return
    meta = verify_checkpoint(last_dir)
    run.method.load_state_dict(load_weights(last_dir))  # load_state_dict copies onto the method's device
    for name, opt in {"adam": run.optimizer, **run.extra_opts}.items():
        opt_state = load_optimizer_state(last_dir, name)
        if opt_state:
            opt.load_state_dict(opt_state)
    run.state = meta["train_state"]
    if "best_score" in run.state:  # a checkpoint saved before the field took the summary's name
        run.state["best_val_t2i_recall_sum"] = run.state.pop("best_score")
    run.earlier_seconds = float(run.state.get("seconds", 0.0))
    run.target_exposures = int(run.state.get("target_exposures", 0))
    run.exposures_by_language = dict(run.state.get("exposures_by_language", {}))


def _epoch_steps(run: _Run, epoch: int) -> list[list]:
    """The epoch's optimiser steps: each a list of ``accumulate × world size`` micro-batches (an incomplete last one is dropped)."""
    cfg, per_step = run.cfg, run.cfg.accumulate * run.world_size
    batches = run.source.epoch_batches(cfg.batch_size, seed=cfg.seed * 100_003 + epoch)
    steps = [batches[i : i + per_step] for i in range(0, len(batches), per_step)]
    return [s for s in steps if len(s) == per_step]


def _optimiser_step(run: _Run, micro: list) -> dict[str, float]:
    """One optimiser step over this process's share of ``micro``: the loss terms averaged over its micro-batches."""
    cfg, method, mine = run.cfg, run.method, micro[run.rank :: run.world_size]
    run.optimizer.zero_grad(set_to_none=True)
    terms_sum: dict[str, float] = {}
    for k, indices in enumerate(mine):
        batch = run.source.make_batch(indices, seed=cfg.seed * 7919 + run.state["step"] * 131 + k * run.world_size + run.rank,
                                      targets_per_batch=run.targets_per_batch())
        if run.device.type != "cpu":
            batch = batch_to(batch, run.device)
        terms = run.model(batch)  # the method's forward (image top, then loss), DDP-wrapped when distributed
        (terms["loss"] / len(mine)).backward()
        if method.has_discriminator_step:
            method.discriminator_step(batch)
        for key, value in terms.items():
            terms_sum[key] = terms_sum.get(key, 0.0) + float(value.detach()) / len(mine)
        _count_exposures(run, len(indices), batch["targets"])
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
    run.optimizer.step()
    run.state["step"] += 1
    run.state["target_exposures"] = run.target_exposures
    run.state["exposures_by_language"] = dict(run.exposures_by_language)
    return terms_sum


def _count_exposures(run: _Run, items: int, targets: list[str]) -> None:
    """A micro-batch of ``items`` pairs with ``targets``: its captions (English + each target) and target exposures."""
    run.seen += items * (1 + len(targets))
    run.target_exposures += items * len(targets)
    for lang in targets:
        run.exposures_by_language[lang] = run.exposures_by_language.get(lang, 0) + items


def _end_epoch(run: _Run, epoch: int) -> bool:
    """Validation, the schedule (decay; halve after ``halve_after`` stale epochs), ``best/`` and ``last/``; whether
    to stop early (``patience`` stale epochs)."""
    cfg, state = run.cfg, run.state
    score = _broadcast(validation_score(run.method, run.bench, run.select_lang) if run.rank == 0 else None, run.world_size)
    state["epoch"] = epoch + 1
    improved = score["t2i_recall_sum"] > state["best_val_t2i_recall_sum"]
    state["history"].append({"epoch": epoch + 1, "step": state["step"], "val": score, "lr": state["lr"], "seconds": run.seconds(),
                             "target_exposures": run.target_exposures, "exposures_by_language": dict(run.exposures_by_language)})
    if improved:
        state["best_val_t2i_recall_sum"], state["best_epoch"], state["stale"] = score["t2i_recall_sum"], epoch + 1, 0
    else:
        state["stale"] += 1
        if state["stale"] % cfg.halve_after == 0:
            state["lr"] /= 2
    state["lr"] *= cfg.lr_decay
    state["seconds"] = run.seconds()
    _set_lr(run.optimizer, state["lr"])
    if run.rank == 0:
        meta = {**run.base_meta, "train_state": state, "val": score, "train_seconds": run.seconds()}
        if improved:
            save_checkpoint(run.run_dir / "best", run.method, meta)
        save_checkpoint(run.run_dir / "last", run.method, meta, {"adam": run.optimizer, **run.extra_opts})
    if run.progress and run.rank == 0:
        print(f"epoch {epoch + 1}: val {run.select_lang} t2i R@1+5+10 = {score['t2i_recall_sum']:.1f}"
              f"{' (best)' if improved else ''}, lr {state['lr']:.2e}", flush=True)
    return state["stale"] >= cfg.patience


def _finish(run: _Run) -> dict:
    """The run's summary, written to ``summary.json``."""
    state = run.state
    summary = {"method": run.cfg.method, "bundle": run.bench.bundle.name, "best_epoch": state["best_epoch"],
               "best_val_t2i_recall_sum": state["best_val_t2i_recall_sum"], "epochs": state["epoch"], "steps": state["step"],
               "target_exposures": run.target_exposures, "exposures_by_language": dict(run.exposures_by_language),
               "train_seconds": run.seconds(), "captions_per_s": run.captions_per_second(), "select_lang": run.select_lang,
               "history": state["history"], "curve": state.get("curve", []), "curve_seconds": state.get("curve_seconds", 0.0)}
    if run.rank == 0:
        write_json_atomic(run.run_dir / SUMMARY_FILE, summary)
    return summary


def _broadcast(obj, world_size: int):
    """Rank 0's value on every rank (so every process takes the same learning-rate and stop decisions)."""
    if world_size == 1:
        return obj
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

