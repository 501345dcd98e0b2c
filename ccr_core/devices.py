"""Where training, evaluation and feature extraction run: the device choice (``auto``, ``cpu``,
``cuda[:N]``), moving a method batch to it, and finding a module's device. Shared by the trainer,
evaluation, the feature extractor and the command line."""
from __future__ import annotations

import os

import torch

from ccr_core.methods.base import TextBatch


def resolve_device(spec: str = "auto") -> torch.device:
    """The device a training process uses. ``auto`` takes GPU ``LOCAL_RANK`` (set by torchrun; 0 otherwise)
    when CUDA is present, else the CPU. Asking for CUDA where there is none is an error, not a silent CPU run."""
    if spec == "auto":
        spec = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"device={spec!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={spec!r}, but this torch build sees no CUDA GPU; use device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={spec!r}, but only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        raise ValueError(f"device={spec!r}: only cpu and cuda are supported")
    return device


def batch_to(batch, device: torch.device):
    """A method batch (nested dicts/lists of tensors and TextBatch) on ``device``; non-tensors unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, TextBatch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: batch_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and any(isinstance(v, (torch.Tensor, TextBatch, dict)) for v in batch):
        return type(batch)(batch_to(v, device) for v in batch)
    return batch


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's parameters live (CPU for a module without parameters)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))
