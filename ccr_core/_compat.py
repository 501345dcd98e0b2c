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

For every other script in the venv (``from transformers import BertModel``, ``import timm``,
``open_clip``, a notebook) the same fix runs at interpreter start: :func:`install` (run by
``make setup``) copies this file into the venv's site-packages as
:data:`HOOK_MODULE` next to a :data:`PTH_FILE` whose one line installs :func:`install_import_hook`.
The hook costs nothing at start-up (torch is not imported): it waits in ``sys.meta_path`` for the
first ``import torchvision``, runs :func:`ensure_torchvision_importable` and steps aside. This file
therefore imports only the standard library at module level, and the ``.pth`` line swallows every
error, so a broken or removed install can never stop the interpreter from starting.
"""
from __future__ import annotations

import glob
import importlib.abc
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


# --------------------------------------------------------------------------------------------------
# Interpreter-start install (see the module docstring)

HOOK_MODULE = "_ccr_lab_torchvision_shim"  # this file's copy in site-packages
PTH_FILE = "ccr_lab_torchvision_shim.pth"
PTH_LINE = (f"import sys; exec('try:\\n import {HOOK_MODULE}\\n {HOOK_MODULE}.install_import_hook()\\n"
            "except Exception:\\n pass')\n")


class _FirstTorchvisionImport(importlib.abc.MetaPathFinder):
    """Runs the shim just before the first ``import torchvision`` proceeds, then removes itself."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            uninstall_import_hook()
            try:
                ensure_torchvision_importable()
            except Exception:  # noqa: BLE001 -- never turn an import into a different error
                pass
        return None  # the normal finders import torchvision


def install_import_hook() -> bool:
    """Arrange for :func:`ensure_torchvision_importable` to run before torchvision is first imported
    (now, if it already was: then nothing can be done and False is returned)."""
    if "torchvision" in sys.modules:
        return False
    if not any(isinstance(f, _FirstTorchvisionImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _FirstTorchvisionImport())
    return True


def uninstall_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _FirstTorchvisionImport)]


def install(target: str | os.PathLike | None = None) -> list[str]:
    """Write :data:`HOOK_MODULE` (a copy of this file) and :data:`PTH_FILE` into ``target`` (default:
    this interpreter's site-packages); return the two paths. Idempotent; each file is replaced atomically."""
    import sysconfig
    import tempfile

    folder = os.fspath(target) if target is not None else sysconfig.get_paths()["purelib"]
    os.makedirs(folder, exist_ok=True)
    with open(__file__, encoding="utf-8") as handle:
        source = handle.read()
    written = []
    for name, content in ((HOOK_MODULE + ".py", source), (PTH_FILE, PTH_LINE)):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(folder, name))
        written.append(os.path.join(folder, name))
    return written


def installed(target: str | os.PathLike | None = None) -> bool:
    """Whether :func:`install` has put both files into ``target`` (default: this interpreter's site-packages)."""
    import sysconfig

    folder = os.fspath(target) if target is not None else sysconfig.get_paths()["purelib"]
    return all(os.path.isfile(os.path.join(folder, n)) for n in (HOOK_MODULE + ".py", PTH_FILE))

