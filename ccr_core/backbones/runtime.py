"""ONNX Runtime for the frozen backbones' batch inference on the CPU (feature caches, text states).

On this project's 2-core CPU, ONNX Runtime runs EfficientNet-Lite0 several times faster than eager
PyTorch (5.4x, benchmarks/bench_vision.py) and e5-small 1.2x faster (benchmarks/bench_text.py), with
the same numbers to float32 rounding. A frozen backbone is exported once per weights (the
TorchScript-based ``torch.onnx.export``, offline) into ``<cache>/onnx/<key>.onnx`` beside a JSON
record, and every session is checked before use: its outputs on a seeded probe input must equal the
PyTorch module's to ``PROBE_TOLERANCE``, otherwise (or if ``onnxruntime``/``onnx`` are missing, or the
export fails) the backbone keeps running in PyTorch and says why once. Training, GPUs and trainable
layers always run in PyTorch.

``CCR_RUNTIME=torch`` turns the runtime off (what the A/B benchmarks and some tests use);
``CCR_RUNTIME=onnx`` makes a failure to use it an error instead of a fallback.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from ccr_core.io import atomic_path, file_lock, matches_sha256, sha256_file, write_json_atomic
from ccr_core.paths import cache_dir

RUNTIME_ENV = "CCR_RUNTIME"
FORMAT = 1            # bump when what is exported changes: old files are then rebuilt under a new key
OPSET = 17
PROBE_TOLERANCE = 1e-3  # max |ONNX - PyTorch| allowed on the probe input (seen: 1e-5 for Lite0, 2e-6 for e5)
# Batches smaller than this run in PyTorch: one typed query gains nothing (e5: 22 ms in ONNX, 26 ms in
# PyTorch) and the dashboard's query threads would each need a session of their own thread count.
MIN_BATCH = 8


class RuntimeUnavailable(RuntimeError):
    """ONNX Runtime cannot serve this backbone (not installed, export failed, probe mismatch)."""


def mode() -> str:
    """``auto`` (default), ``onnx`` (required) or ``torch`` (off), from ``CCR_RUNTIME``."""
    value = os.environ.get(RUNTIME_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "onnx", "torch"):
        raise ValueError(f"{RUNTIME_ENV}={value!r}: expected 'onnx', 'torch' or 'auto'")
    return value


def onnx_dir() -> Path:
    return cache_dir() / "onnx"


def version() -> str | None:
    """The installed onnxruntime version, or None."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


class OnnxModel:
    """One ONNX Runtime session: ``model(name=array, ...)`` returns the first output as a NumPy array."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **arrays: np.ndarray) -> np.ndarray:
        return self.session.run(None, {name: np.ascontiguousarray(arrays[name]) for name in self.inputs})[0]


def export(build: Callable[[], torch.nn.Module], key: str, example: Mapping[str, torch.Tensor], output: str,
           dynamic_axes: Mapping[str, Mapping[int, str]], source: dict) -> Path:
    """The ONNX file under ``key`` of the module ``build()`` returns (built and exported only if the file
    is absent or its record does not match).

    ``example`` maps input names to example tensors (in the module's ``forward`` argument order);
    ``source`` (e.g. the weights' hash) is written into the record and must match on reuse. Written
    atomically under a lock, so concurrent processes export once and a killed export leaves nothing.
    """
    folder = onnx_dir()
    path, record_path = folder / f"{key}.onnx", folder / f"{key}.json"
    expected = {"format": FORMAT, "opset": OPSET, "source": source}

    def usable() -> bool:
        if not (path.is_file() and record_path.is_file()):
            return False
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        # hashed again only when the file changed since its last check (e5's is 470 MB)
        return all(record.get(k) == v for k, v in expected.items()) and matches_sha256(path, str(record.get("sha256")))

    if usable():
        return path
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError as exc:
        raise RuntimeUnavailable(f"the ONNX exporter needs the 'onnx' package ({exc})") from None
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / f".{key}.lock"):
        if usable():  # another process exported it while this one waited
            return path
        record_path.unlink(missing_ok=True)  # a record never describes a file being rewritten
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            try:
                torch.onnx.export(build(), tuple(example.values()), str(tmp), input_names=list(example),
                                  output_names=[output], dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                                  opset_version=OPSET, dynamo=False)
            except Exception as exc:  # noqa: BLE001 -- any exporter failure means "run in PyTorch"
                raise RuntimeUnavailable(f"export of {key} failed: {type(exc).__name__}: {str(exc)[:300]}") from None
        write_json_atomic(record_path, {**expected, "sha256": sha256_file(path), "torch": torch.__version__})
    return path


def session_for(build: Callable[[], torch.nn.Module], key: str, example: Mapping[str, torch.Tensor], output: str,
                dynamic_axes: Mapping[str, Mapping[int, str]], source: dict,
                reference: Callable[..., torch.Tensor], probe: Mapping[str, torch.Tensor],
                compare: Callable[[np.ndarray, np.ndarray], float] | None = None) -> OnnxModel:
    """Export (once) and open an ONNX session for the module ``build()`` makes, checked against ``reference`` on ``probe``.

    ``reference(**probe)`` is the PyTorch output the session must reproduce to ``PROBE_TOLERANCE``
    (``compare(onnx_out, torch_out)`` gives the error; default max |difference|). Raises
    :class:`RuntimeUnavailable` when onnxruntime is missing or anything does not hold.
    """
    if version() is None:
        raise RuntimeUnavailable("onnxruntime is not installed")
    path = export(build, key, example, output, dynamic_axes, source)
    try:
        model = OnnxModel(path, torch.get_num_threads())
        with torch.inference_mode():
            want = reference(**probe).float().cpu().numpy()
        got = model(**{k: v.numpy() for k, v in probe.items()})
    except RuntimeUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 -- a broken file or an ORT error means "run in PyTorch"
        raise RuntimeUnavailable(f"{path.name}: {type(exc).__name__}: {str(exc)[:300]}") from None
    error = compare(got, want) if compare is not None else float(np.abs(got - want).max())
    if not error <= PROBE_TOLERANCE:
        raise RuntimeUnavailable(f"{path.name}: ONNX output differs from PyTorch by {error:.2e} on the probe "
                                 f"(> {PROBE_TOLERANCE:g})")
    return model


_told: set[str] = set()


def fallback(name: str, reason: Exception | str) -> None:
    """Say once per backbone why it runs in PyTorch; under ``CCR_RUNTIME=onnx`` raise instead."""
    if mode() == "onnx":
        raise RuntimeUnavailable(f"{name} cannot run in ONNX Runtime ({RUNTIME_ENV}=onnx): {reason}")
    if name not in _told:
        _told.add(name)
        print(f"[ccr] {name}: running in PyTorch ({reason})", file=sys.stderr)


def on_cpu(module: torch.nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in module.parameters())


def session_or_none(name: str, **kwargs) -> OnnxModel | None:
    """:func:`session_for` (same arguments), or None after saying once why ``name`` runs in PyTorch
    (:func:`fallback`; an error under ``CCR_RUNTIME=onnx``)."""
    try:
        return session_for(**kwargs)
    except RuntimeUnavailable as exc:
        fallback(name, exc)
        return None


@contextlib.contextmanager
def only_pytorch() -> Iterator[None]:
    """``CCR_RUNTIME=torch`` for the block (the benchmarks' A/B), then the setting as it was."""
    before = os.environ.get(RUNTIME_ENV)
    os.environ[RUNTIME_ENV] = "torch"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUNTIME_ENV, None)
        else:
            os.environ[RUNTIME_ENV] = before
