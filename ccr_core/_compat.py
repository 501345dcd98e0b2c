"""Compatibility shim so that torchvision's pure-Python parts import on a CPU-only torch.

PyPI's torchvision 0.28.0 wheel is a CUDA build: its compiled ops library (``torchvision/_C.so``)
cannot load next to the CPU build of torch 2.13.0. torchvision then still imports its
``_meta_registrations`` module, which registers fake (meta) kernels for ``torchvision::nms`` and
``torchvision::qnms`` -- and that fails with "operator torchvision::nms does not exist", breaking
``import torchvision`` and, through it, open_clip, timm and transformers' vision model classes.

:func:`ensure_torchvision_importable` runs before the first torchvision import (``ccr_core``'s
``__init__`` calls it). It first tries to load the compiled library exactly as torchvision would;
on a normal install that succeeds and nothing else happens (torchvision's own load is then a no-op).
Only when loading fails does it define placeholder *schemas* for the two ops, so the fake
registrations find an operator. The placeholders have no kernel: calling ``nms`` raises torch's
"no kernel" error, while transforms and models (everything CCR Lab uses) work.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys

_PLACEHOLDER_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the placeholder torch.library.Library alive
shim_active = False


def _compiled_ops_path() -> str | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for pattern in ("_C*.so", "_C*.pyd", "_C*.dylib"):
            hits = glob.glob(os.path.join(folder, pattern))
            if hits:
                return hits[0]
    return None


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work; return True if the placeholder shim had to be installed."""
    global _library, shim_active
    if shim_active or "torchvision" in sys.modules:
        return shim_active
    path = _compiled_ops_path()
    if path is None:  # torchvision absent, or a build without compiled ops: nothing to fix
        return False
    import torch

    try:
        torch.ops.load_library(path)
        return False
    except (OSError, RuntimeError):
        pass
    import torch.library

    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _PLACEHOLDER_SCHEMAS.items():
        if not torch._C._jit_get_schemas_for_operator(f"torchvision::{name}"):
            _library.define(schema)
    shim_active = True
    return True
