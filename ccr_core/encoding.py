"""Embeddings of a trained method: items (images, videos) and captions of a bundle, in batches.

The one place both directions of the library encode through: training validates with it and
evaluation, experiments and the dashboard score with it, so ``ccr_core.training`` never imports
``ccr_core.evaluate`` (evaluate imports training, not the reverse). ``bench`` is anything with the
workbench's attributes (``bundle``, ``features``, ``text_states``; for a method that fine-tunes image blocks also ``feature_maps(k)``): :class:`ccr_core.training.train.Workbench` in practice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ccr_core.devices import module_device

ENCODE_BATCH = 512  # items or captions per forward pass at evaluation time
MAP_BATCH = 64  # images per forward pass of a fine-tuned image top (block 0's maps are 1.6 MB an image)


@dataclass
class TrainedModel:
    name: str  # display name, e.g. "nrccr" or "nrccr@noise0.4"
    method: torch.nn.Module
    meta: dict
    folder: Path


def encode_items(method, bench, items) -> torch.Tensor:
    """Visual embeddings (N, E) of items, videos through the temporal encoder (grouped by kind, order kept).
    A method that fine-tunes image blocks (``method.visual_top``) encodes images from the workbench's cached
    feature maps (unflipped) through its own top instead of reading the pooled feature cache."""
    out = [None] * len(items)
    device = module_device(method)
    visual_top = getattr(method, "visual_top", None)
    for kind in ("image", "video"):
        idx = [k for k, it in enumerate(items) if it.kind == kind]
        if not idx:
            continue
        ids = [items[k].id for k in idx]
        frames = mask = None
        if visual_top is not None and kind == "image":
            maps = bench.feature_maps(visual_top.trainable_blocks)
            visual = torch.cat([visual_top(torch.from_numpy(maps.rows(ids[b : b + MAP_BATCH])).to(device))
                                for b in range(0, len(ids), MAP_BATCH)])  # (B, Dv)
        else:
            visual = torch.from_numpy(np.ascontiguousarray(bench.features.rows(ids), dtype=np.float32))  # (B, Dv)
        if kind == "video":
            seqs = [bench.features.video_frames(i) for i in ids]
            t_max = max(s.shape[0] for s in seqs)
            frames = torch.zeros(len(seqs), t_max, seqs[0].shape[1])  # (B, T, Dv)
            mask = torch.zeros(len(seqs), t_max, dtype=torch.bool)  # (B, T)
            for k, s in enumerate(seqs):
                frames[k, : s.shape[0]] = torch.from_numpy(np.array(s, dtype=np.float32))
                mask[k, : s.shape[0]] = True
        if device.type != "cpu":
            visual, frames, mask = (None if x is None else x.to(device) for x in (visual, frames, mask))
        emb = method.encode_visual(visual, frames, mask).cpu()  # (B, E)
        for k, e in zip(idx, emb):
            out[k] = e
    return torch.stack(out)


@torch.no_grad()
def pooled_image_features(method, backbone, images: torch.Tensor) -> torch.Tensor:
    """Pooled visual features (B, Dv) of preprocessed images (B, 3, S, S) as ``method`` sees them: the frozen
    backbone's, or -- when the method fine-tunes image blocks -- the frozen lower blocks then its own top.
    (For pictures that are not in a cache, e.g. a dashboard upload.)"""
    visual_top = getattr(method, "visual_top", None)
    if visual_top is None:
        return backbone(images).float()
    from ccr_core.backbones.vision import efficientnet_feature_map

    maps = efficientnet_feature_map(backbone, images, visual_top.first_block)  # (B, C, H, W)
    return visual_top(maps.to(module_device(method))).float().cpu()


@torch.no_grad()
def embed_items(model: TrainedModel, bench, items) -> torch.Tensor:
    """(N, E) embeddings of ``items`` by a trained model, in batches of ``ENCODE_BATCH``."""
    if not items:
        return torch.zeros(0, 0)
    return torch.cat([encode_items(model.method, bench, items[b : b + ENCODE_BATCH]) for b in range(0, len(items), ENCODE_BATCH)])


@torch.no_grad()
def embed_captions(model: TrainedModel, bench, captions, lang: str) -> torch.Tensor:
    """(M, E) embeddings of ``captions`` (bundle captions, text from the workbench's text-state cache) in ``lang``."""
    device = module_device(model.method)
    chunks = [model.method.encode_text(bench.text_states.batch([c.text for c in captions[b : b + ENCODE_BATCH]]).to(device), lang).cpu()
              for b in range(0, len(captions), ENCODE_BATCH)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)
