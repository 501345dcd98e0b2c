"""Embeddings of a method: items (images, videos) and captions of a bundle, in batches.

The one place embeddings are computed: training validates through it, and a loaded checkpoint
(:class:`ccr_core.training.inference.TrainedModel`, which evaluation, benchmarks, experiments and the
dashboard use) encodes through it. It sits below training, so neither direction needs the other.
``bench`` is anything with the workbench's attributes (``bundle``, ``features``, ``text_states``; for a
method that fine-tunes image blocks also ``feature_maps(k)``): :class:`ccr_core.training.workbench.Workbench`
in practice.
"""
from __future__ import annotations

import numpy as np
import torch

from ccr_core.backbones.vision import efficientnet_feature_map
from ccr_core.devices import module_device

ENCODE_BATCH = 512  # items or captions per forward pass at evaluation time
MAP_BATCH = 64  # images per forward pass of a fine-tuned image top (block 0's maps are 1.6 MB an image)


def _encode_item_batch(method, bench, items) -> torch.Tensor:
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
    maps = efficientnet_feature_map(backbone, images, visual_top.first_block)  # (B, C, H, W)
    return visual_top(maps.to(module_device(method))).float().cpu()


@torch.no_grad()
def encode_items(method, bench, items) -> torch.Tensor:
    """(N, E) embeddings of ``items`` by ``method``, in batches of ``ENCODE_BATCH`` ((0, 0) for no items)."""
    if not items:
        return torch.zeros(0, 0)
    return torch.cat([_encode_item_batch(method, bench, items[b : b + ENCODE_BATCH]) for b in range(0, len(items), ENCODE_BATCH)])


@torch.no_grad()
def encode_captions(method, bench, captions, lang: str) -> torch.Tensor:
    """(M, E) embeddings of bundle ``captions`` in ``lang`` (text states read from the workbench's cache)."""
    device = module_device(method)
    chunks = [method.encode_text(bench.text_states.batch([c.text for c in captions[b : b + ENCODE_BATCH]]).to(device), lang).cpu()
              for b in range(0, len(captions), ENCODE_BATCH)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)
