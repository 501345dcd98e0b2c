"""Frozen EfficientNet feature maps, computed once per image and per horizontal flip, and the trainable top
blocks that methods run on them -- the image-side twin of :mod:`ccr_core.training.text_cache`.

A method may fine-tune the last ``k`` MBConv blocks of EfficientNet-Lite0 plus its 1x1 head convolution
(``trainable_image_blocks = k``, 1..16; at 16 every block trains and only the stem convolution stays frozen). Everything below block ``16 - k`` is frozen, so the feature map
at that block's input is a pure function of the image: this module computes it once for every image of
a bundle, for the image and its mirror (training draws one of the two per image and batch; evaluation
uses the unflipped one), and stores it as float16::

    maps.npy    (2, N, C, H, W) float16, [0] the image, [1] its horizontal flip
    meta.json   backbone identity, first trained block, item ids, map shape, SHA-256 of maps.npy -- written last

:class:`ImageTop` holds a trainable copy of the top blocks, the head convolution and its BatchNorm, and
turns maps into the pooled (B, 1280) features the methods' visual heads take. BatchNorm statistics stay
ImageNet's (its layers stay in eval mode while training; their affine weights train): batches of 128
from a few thousand images would only make them noisier. Sizes per image (both flips): block 12's input
(192 x 7 x 7) 37 KB, block 0's (32 x 112 x 112) 1.6 MB.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ccr_core.backbones.vision import efficientnet_blocks, efficientnet_feature_map, load_rgb
from ccr_core.io import file_lock, sha256_file, verify_manifest, write_json_atomic

META_FILE, MAPS_FILE = "meta.json", "maps.npy"


class FeatureMapCacheError(ValueError):
    """A feature-map cache is incomplete, altered, or belongs to another backbone, block or item list."""


def first_trained_block(backbone, trainable_blocks: int) -> int:
    """Index of the first fine-tuned block when the last ``trainable_blocks`` blocks train (ValueError out of range)."""
    n = len(efficientnet_blocks(backbone))
    if not 0 < trainable_blocks <= n:
        raise ValueError(f"trainable_image_blocks must be in 1..{n} for {backbone.name} (0 keeps the image backbone frozen), got {trainable_blocks}")
    return n - trainable_blocks


def check_fine_tunable(bundle, backbone, trainable_blocks: int) -> int:
    """Refuse (ValueError) what cannot fine-tune image blocks -- another backbone, a block count out of range,
    a bundle with videos -- before any cache is computed; return the first fine-tuned block."""
    first = first_trained_block(backbone, trainable_blocks)
    videos = [it.id for it in bundle.items if it.kind != "image"]
    if videos:
        raise ValueError(f"{bundle.name}: trainable_image_blocks fine-tunes image blocks, but the bundle has {len(videos)} "
                         f"video item(s) (first: {videos[0]!r}); train video bundles with trainable_image_blocks=0")
    return first


class ImageTop(nn.Module):
    """A trainable copy of the last ``trainable_blocks`` EfficientNet blocks + head conv + BN + activation,
    applied to cached feature maps, mean-pooled: maps (B, C, H, W) -> (B, Dv) like the pooled feature cache."""

    def __init__(self, backbone, trainable_blocks: int):
        super().__init__()
        self.first_block = first_trained_block(backbone, trainable_blocks)
        net = backbone.net
        self.blocks = nn.ModuleList(copy.deepcopy(list(efficientnet_blocks(backbone)[self.first_block :])))
        self.head = copy.deepcopy(net._conv_head)
        self.bn = copy.deepcopy(net._bn1)
        self.activation = copy.deepcopy(net._swish)  # ReLU6 in Lite0
        for p in self.parameters():
            p.requires_grad_(True)
        self.train(False)

    @property
    def trainable_blocks(self) -> int:
        return len(self.blocks)

    def train(self, mode: bool = True):
        """Like ``Module.train``, but BatchNorm layers keep ImageNet's running statistics (always eval)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        x = maps
        for block in self.blocks:  # no drop-connect: as the frozen network at evaluation
            x = block(x)  # (B, C', H', W')
        x = self.activation(self.bn(self.head(x)))  # (B, 1280, 7, 7)
        return x.mean(dim=(2, 3))  # (B, 1280)


@dataclass
class FeatureMapCache:
    root: Path
    meta: dict
    maps: np.ndarray  # (2, N, C, H, W) float16, memory-mapped ((1, N, ...) for a cache built without mirrors)

    def __post_init__(self):
        self.index = {item_id: i for i, item_id in enumerate(self.meta["ids"])}

    @property
    def first_block(self) -> int:
        return int(self.meta["first_block"])

    def rows(self, item_ids: Sequence[str], flips: Sequence[bool] | bool = False) -> np.ndarray:
        """Maps of the given items (B, C, H, W) float32; ``flips`` per item (or one for all) picks the mirror."""
        if isinstance(flips, bool):
            flips = [flips] * len(item_ids)
        try:
            rows = [self.index[i] for i in item_ids]
        except KeyError as exc:
            raise FeatureMapCacheError(f"{self.root}: no feature map for item {exc.args[0]!r}") from None
        if self.maps.shape[0] == 1 and any(flips):
            raise FeatureMapCacheError(f"{self.root}: holds no mirrored maps (a cache for serving, built without flips); training needs the full cache")
        return np.stack([self.maps[int(f), r] for r, f in zip(rows, flips)]).astype(np.float32)


def map_cache_identity(backbone, first_block: int) -> dict:
    return {"backbone": backbone.identity(), "first_block": int(first_block)}


def feature_map_dir(workspace: str | Path, bundle_name: str, backbone, first_block: int) -> Path:
    """``<workspace>/feature_maps/<bundle>/<backbone>-block<k>-<identity hash>``."""
    key = hashlib.sha256(json.dumps(map_cache_identity(backbone, first_block), sort_keys=True).encode()).hexdigest()[:12]
    safe = backbone.name.replace("/", "_").replace(":", "_").replace("@", "_")
    return Path(workspace) / "feature_maps" / bundle_name / f"{safe}-block{first_block}-{key}"


def build_feature_maps(bundle, backbone, first_block: int, out_dir: str | Path, batch_size: int = 32,
                       progress: bool = True, flips: bool = True) -> FeatureMapCache:
    """Compute (or reuse) the maps at block ``first_block``'s input of every image item of ``bundle``.
    An existing complete cache for the same backbone, block and items is returned as it is; a concurrent
    builder of the same folder waits for the first (a lock file beside it). ``flips=False``: the images
    alone, no mirrors (half the work; enough to serve and evaluate, not to train)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir.parent / f".{out_dir.name}.lock"):
        return _build_feature_maps(bundle, backbone, first_block, out_dir, batch_size, progress, flips)


def _build_feature_maps(bundle, backbone, first_block, out_dir: Path, batch_size, progress, flips=True) -> FeatureMapCache:
    identity = map_cache_identity(backbone, first_block)
    check_fine_tunable(bundle, backbone, len(efficientnet_blocks(backbone)) - first_block)
    items = list(bundle.items)
    ids = [it.id for it in items]
    if (out_dir / META_FILE).exists():
        cache = load_feature_maps(out_dir, identity)
        if cache.meta["ids"] == ids:
            return cache
        raise FeatureMapCacheError(f"{out_dir}: holds feature maps of other items; delete the folder to rebuild it")
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / (MAPS_FILE + ".partial")
    device = next(backbone.parameters()).device
    maps = None
    backbone.eval()
    bar = tqdm(total=len(items), disable=not progress, unit="img", desc=f"feature maps {bundle.name} block {first_block}")
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        x = torch.stack([backbone.preprocess(load_rgb(bundle.image_path(it))) for it in chunk]).to(device)  # (B, 3, S, S)
        views = (x, x.flip(3)) if flips else (x,)  # flip(3): mirror the width axis
        for flip, view in enumerate(views):
            h = efficientnet_feature_map(backbone, view, first_block)  # (B, C, H, W)
            if maps is None:
                maps = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(len(views), len(items), *h.shape[1:]))
            maps[flip, start : start + len(chunk)] = h.float().cpu().numpy().astype(np.float16)
        bar.update(len(chunk))
    bar.close()
    if maps is None:
        raise ValueError(f"{bundle.name}: no image items to compute feature maps of")
    shape = list(maps.shape)
    maps.flush()
    del maps
    os.replace(partial, out_dir / MAPS_FILE)
    meta = {"kind": "ccr-feature-maps", "format_version": 1, "identity": identity, "bundle": bundle.name, "first_block": first_block,
            "ids": ids, "shape": shape, "flips": bool(flips), "sha256": {MAPS_FILE: sha256_file(out_dir / MAPS_FILE)}}
    write_json_atomic(out_dir / META_FILE, meta)
    return load_feature_maps(out_dir, identity)


def load_feature_maps(root: str | Path, expected_identity: dict | None = None) -> FeatureMapCache:
    """Memory-map a complete feature-map cache; refuse incomplete, altered or mismatched ones."""
    root = Path(root)
    meta = verify_manifest(root, META_FILE, "ccr-feature-maps", (MAPS_FILE,), FeatureMapCacheError, "feature-map cache",
                           missing_hint=": interrupted; it is rebuilt on the next run", fields=("ids",),
                           expected_identity=expected_identity, identity_of="backbone and block")
    path = root / MAPS_FILE
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise FeatureMapCacheError(f"{path}: not a plain NumPy array ({exc})") from None
    views = 2 if meta.get("flips", True) else 1
    if maps.ndim != 5 or maps.shape[:2] != (views, len(meta["ids"])):
        raise FeatureMapCacheError(f"{path}: shape {maps.shape}, expected ({views}, {len(meta['ids'])}, C, H, W)")
    return FeatureMapCache(root, meta, maps)
