"""Checkpoints: safetensors weights + JSON config + a manifest of SHA-256 hashes, written atomically.

Only what a method trains is stored -- its heads and any fine-tuned backbone tops (``text_top.*``,
``visual_top.*``: trained copies of the top e5 layers and EfficientNet blocks); the frozen backbones are
referenced by identity (name and a hash of their weights, in ``config.json`` with ``text_trainable_layers``
and ``visual_trainable_blocks``), so a checkpoint is never paired with the wrong backbone. The manifest is
removed first and written last: a folder whose writer was killed has no manifest and is refused.
Nothing here unpickles anything.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ccr_core.io import atomic_path, read_json, sha256_file, verify_manifest, write_json_atomic

MANIFEST, WEIGHTS, CONFIG, OPTIMIZER, OPTIMIZER_META = "manifest.json", "model.safetensors", "config.json", "optimizer.safetensors", "optimizer.json"


class CheckpointError(ValueError):
    """A checkpoint is incomplete, altered, pickle-based, or does not match what was asked for."""


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars["state"].setdefault(str(pid), {})[key] = value
    return tensors, scalars


def _optimizer_state(tensors: dict[str, torch.Tensor], scalars: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in scalars["state"].items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_checkpoint(folder: str | Path, method: torch.nn.Module, meta: dict, optimizers: dict[str, torch.optim.Optimizer] | None = None) -> Path:
    """Write ``method``'s trainable state and ``meta`` (JSON-serialisable) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    files = [WEIGHTS, CONFIG]
    _save_tensors(folder / WEIGHTS, dict(method.state_dict()))
    write_json_atomic(folder / CONFIG, meta)
    for name, optimizer in (optimizers or {}).items():
        tensors, scalars = _optimizer_tensors(optimizer)
        _save_tensors(folder / f"{name}.{OPTIMIZER}", tensors)
        write_json_atomic(folder / f"{name}.{OPTIMIZER_META}", scalars)
        files += [f"{name}.{OPTIMIZER}", f"{name}.{OPTIMIZER_META}"]
    write_json_atomic(folder / MANIFEST, {"kind": "ccr-checkpoint", "format_version": 1, "sha256": {f: sha256_file(folder / f) for f in files}})
    return folder


def verify_checkpoint(folder: str | Path) -> dict:
    """Check the manifest and every hash; return the config (meta) dict."""
    folder = Path(folder)
    verify_manifest(folder, MANIFEST, "ccr-checkpoint", (WEIGHTS, CONFIG), CheckpointError, "checkpoint",
                    missing_hint=": never finished writing, or not a checkpoint")
    try:
        meta = read_json(folder / CONFIG)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("method"), str) or not isinstance(meta.get("method_config", {}), dict):
        raise CheckpointError(f"{folder / CONFIG}: not a checkpoint config (needs 'method' and 'method_config')")
    return meta


def weights_sha256(folder: str | Path) -> str:
    """The SHA-256 of a checkpoint's weights, as its manifest records it: what names a model's numbers (a record's
    ``checkpoint_sha256``, the dashboard's caches)."""
    return read_json(Path(folder) / MANIFEST)["sha256"][WEIGHTS]


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_optimizer_state(folder: str | Path, name: str) -> dict | None:
    folder = Path(folder)
    if not (folder / f"{name}.{OPTIMIZER}").exists():
        return None
    return _optimizer_state(load_file(str(folder / f"{name}.{OPTIMIZER}")), read_json(folder / f"{name}.{OPTIMIZER_META}"))


def check_compatible(meta: dict, *, method: str | None = None, visual: dict | None = None, text: dict | None = None, where: str = "checkpoint") -> None:
    """Refuse a checkpoint trained for another method or with other backbones."""
    if method is not None and meta.get("method") != method:
        raise CheckpointError(f"{where}: holds method {meta.get('method')!r}, not {method!r}")
    for key, want in (("visual_backbone", visual), ("text_backbone", text)):
        got = meta.get(key)
        if want is not None and got != want:
            got_name = (got or {}).get("name")
            raise CheckpointError(f"{where}: trained with {key.replace('_', ' ')} {got_name!r} ({json.dumps(got)[:160]}), "
                                  f"but {want.get('name')!r} ({json.dumps(want)[:160]}) is in use")


def drop_optimizer_state(folder: str | Path) -> None:
    """Remove a verified checkpoint's optimiser files (they resume training; a shipped model does not need them) and
    their manifest entries, so that the folder verifies without them."""
    folder = Path(folder)
    verify_checkpoint(folder)
    manifest = read_json(folder / MANIFEST)
    for path in [*folder.glob(f"*.{OPTIMIZER}"), *folder.glob(f"*.{OPTIMIZER_META}")]:
        path.unlink()
    write_json_atomic(folder / MANIFEST, {**manifest, "sha256": {f: h for f, h in manifest["sha256"].items() if (folder / f).exists()}})


def convert_weights(folder: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Rewrite a checkpoint's floating-point weights in ``dtype`` (what ships in ``checkpoints/``:
    half the size) and re-stamp the manifest. Loading casts them back to the model's float32."""
    folder = Path(folder)
    meta = verify_checkpoint(folder)
    manifest = read_json(folder / MANIFEST)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_weights(folder).items()}
    (folder / MANIFEST).unlink()
    _save_tensors(folder / WEIGHTS, tensors)
    meta["weights_dtype"] = str(dtype).replace("torch.", "")
    write_json_atomic(folder / CONFIG, meta)
    hashes = {name: sha256_file(folder / name) for name in manifest["sha256"] if (folder / name).exists()}
    write_json_atomic(folder / MANIFEST, {**manifest, "sha256": hashes})
