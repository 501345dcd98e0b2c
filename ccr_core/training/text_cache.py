"""Frozen text-backbone states, computed once per caption and memory-mapped, so training on a CPU
only runs what it trains.

A method may fine-tune the top ``k`` transformer layers of the text backbone. Everything below them
is frozen, so the output of layer ``n - k`` is a pure function of the caption: this module runs the
embeddings and the frozen layers once for every caption of a bundle and stores the token states
ragged (``states.npy``: all tokens of all captions, float16; ``offsets.npy``: where each caption
starts). :class:`TextTop` holds a trainable copy of the top ``k`` layers that methods apply to
those states. The cache is stamped with the backbone identity, ``k``, the prefix and the maximum
length, and refused for any other.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ccr_core.backbones.text import _transformer_layers, additive_mask  # the frozen bottom and the trainable top share them
from ccr_core.io import atomic_path, file_lock, sha256_file, verify_manifest, write_json_atomic
from ccr_core.methods.base import TextBatch

META_FILE = "meta.json"


class TextCacheError(ValueError):
    """A text-state cache is incomplete, altered, or belongs to another backbone configuration."""


def _layers(encoder) -> nn.ModuleList:
    return _transformer_layers(encoder.model)


def frozen_states(encoder, texts: Sequence[str], trainable_layers: int, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states after the frozen layers of ``encoder``: ((B, L, D) float, (B, L) bool mask).
    (``encoder.infer_states``: in ONNX Runtime on the CPU where it is installed, else PyTorch.)"""
    return _infer(encoder, encoder.tokenize(list(texts), prefix=prefix), trainable_layers)


def _infer(encoder, batch: dict, trainable_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`frozen_states` of an already tokenised batch."""
    hidden = encoder.infer_states(batch["input_ids"], batch["attention_mask"], skip_top=max(0, trainable_layers))
    return hidden, batch["attention_mask"].bool().to(hidden.device)


_local = threading.local()


@contextlib.contextmanager
def encoding_workers(workers: int):
    """Text-state builds this thread starts inside the block encode with ``workers`` threads of one torch (and ONNX
    Runtime) thread each, every thread a batch at a time: on a machine whose other work is light (the dashboard's
    background passes) they use every core without the spin-waiting of one multi-threaded pool, which starves a query
    thread. The states are the same (each batch is encoded alone, whichever thread runs it; a thread count may change
    float rounding, as it does for any build)."""
    before = getattr(_local, "workers", 1)
    _local.workers = max(1, int(workers))
    try:
        yield
    finally:
        _local.workers = before


def _single_threaded() -> None:
    torch.set_num_threads(1)  # per OS thread (OpenMP keeps the count per thread): this worker's ops stay on one core


def encoded_batches(encoder, texts: Sequence[str], batch_size: int, trainable_layers: int, prefix: str, workers: int = 1):
    """``(rows, (hidden, mask))`` for consecutive batches of ``texts``, in order; ``workers`` > 1 runs up to that many
    batches' frozen layers at once on single-threaded workers. Tokenising stays on the calling thread (a fast tokenizer
    is not safe to call from two threads at once), and the first batch runs alone, so a lazily built ONNX session is
    built once."""
    batches = [texts[b : b + batch_size] for b in range(0, len(texts), batch_size)]
    if workers <= 1 or len(batches) <= 1:
        for rows in batches:
            yield rows, frozen_states(encoder, rows, trainable_layers, prefix)
        return
    def submit(pool, rows):
        return rows, pool.submit(_infer, encoder, encoder.tokenize(list(rows), prefix=prefix), trainable_layers)

    with ThreadPoolExecutor(workers, initializer=_single_threaded, thread_name_prefix="text-states") as pool:
        flight = deque([submit(pool, batches[0])])
        upcoming = iter(batches[1:])
        while flight:
            rows, future = flight.popleft()
            states = future.result()
            for nxt in upcoming:  # refill: up to 2 batches per worker in flight
                flight.append(submit(pool, nxt))
                if len(flight) >= 2 * workers:
                    break
            yield rows, states


class TextTop(nn.Module):
    """A trainable copy of the top ``k`` layers of a text backbone, applied to cached frozen states."""

    def __init__(self, encoder, trainable_layers: int):
        super().__init__()
        layers = _layers(encoder)
        if not 0 < trainable_layers <= len(layers):
            raise ValueError(f"trainable_layers must be in 1..{len(layers)}, got {trainable_layers}")
        self.layers = nn.ModuleList(copy.deepcopy(layers[len(layers) - trainable_layers :]))
        for p in self.layers.parameters():
            p.requires_grad_(True)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = additive_mask(mask, states.dtype)  # (B, 1, 1, L)
        for layer in self.layers:
            states = layer(states, additive)  # (B, L, D)
        return states


@dataclass
class TextStateCache:
    root: Path
    meta: dict
    states: np.ndarray  # (total_tokens, D) float16, memory-mapped
    offsets: np.ndarray  # (N + 1,) int64

    def __post_init__(self):
        self.index = {text: i for i, text in enumerate(self.meta["texts"])}

    def __contains__(self, text: str) -> bool:
        return text in self.index

    def batch(self, texts: Sequence[str]) -> TextBatch:
        """Padded states of the given caption texts: TextBatch((B, L, D) float32, (B, L) bool)."""
        try:
            rows = [self.index[t] for t in texts]
        except KeyError as exc:
            raise TextCacheError(f"{self.root}: caption text not in the cache: {exc.args[0][:80]!r}") from None
        rows = np.asarray(rows, dtype=np.int64)
        starts, lengths = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]  # (B,) each
        width = int(lengths.max()) if len(rows) else 0
        mask = np.arange(width)[None, :] < lengths[:, None]  # (B, L) bool
        # one gather of every real token row (row-major over the mask), then one scatter into the padding
        token_rows = (starts[:, None] + np.arange(width)[None, :])[mask]  # (n,)
        out = np.zeros((len(rows), width, self.states.shape[1]), dtype=np.float32)
        out[mask] = self.states[token_rows]
        return TextBatch(torch.from_numpy(out), torch.from_numpy(mask))


def cache_identity(encoder, trainable_layers: int, prefix: str) -> dict:
    return {"encoder": encoder.identity(), "trainable_layers": int(trainable_layers), "prefix": prefix}


def build_text_cache(
    encoder,
    texts: Sequence[str],
    out_dir: str | Path,
    trainable_layers: int = 0,
    prefix: str = "query: ",
    batch_size: int = 128,
    progress: bool = True,
    on_progress=None,
    announce=None,
) -> TextStateCache:
    """Compute (or reuse) frozen states for every distinct text of ``texts``.

    The cache is keyed by text, not caption id: identical captions are encoded once, and a bundle
    with injected noisy correspondence (captions moved between items) reuses the clean bundle's cache.
    An existing cache holding all ``texts`` is returned as it is; otherwise only the missing texts
    are encoded and appended, every few minutes of a long build (so a stopped build resumes). ``on_progress(done,
    total)`` is called after every batch (the dashboard's status line); a build expected to take over a minute says so
    once, with its estimate, through ``announce(message)`` (default: a line on stderr, even without a progress bar).
    """
    out_dir = Path(out_dir)
    with file_lock(out_dir.parent / f".{out_dir.name}.lock"):  # concurrent builders run one after the other
        return _build_text_cache(encoder, texts, out_dir, trainable_layers, prefix, batch_size, progress, on_progress, announce)


FLUSH_SECONDS = 300.0  # a long build appends what it has encoded this often, so a killed build resumes from there
ANNOUNCE_SECONDS = 60.0  # a build expected to take longer than this says so before it goes on (with its estimate)


def _build_text_cache(encoder, texts, out_dir: Path, trainable_layers, prefix, batch_size, progress, on_progress=None,
                      announce=None) -> TextStateCache:
    """Encode the texts ``out_dir``'s cache lacks and append them, every ``FLUSH_SECONDS`` and at the end: a build killed
    part-way keeps what it had flushed and the next call encodes only the rest."""
    identity = cache_identity(encoder, trainable_layers, prefix)
    unique = sorted(set(texts))
    old = load_text_cache(out_dir, identity) if (out_dir / META_FILE).exists() else None
    missing = [t for t in unique if old is None or t not in old]
    if old is not None and not missing:
        return old
    out_dir.mkdir(parents=True, exist_ok=True)
    # Sort by length so batches pad little.
    missing.sort(key=len)
    pending_texts: list[str] = []
    pending: list[np.ndarray] = []
    bar = tqdm(total=len(missing), disable=not progress, unit="cap", desc="text states")
    encoder.eval()
    started = last_flush = time.perf_counter()
    announced = False
    done = 0
    for rows, (hidden, mask) in encoded_batches(encoder, missing, batch_size, trainable_layers, prefix, getattr(_local, "workers", 1)):
        pending += [hidden[k, mask[k]].to(torch.float16).numpy() for k in range(len(rows))]
        pending_texts += rows
        bar.update(len(rows))
        done += len(rows)
        if on_progress is not None:
            on_progress(done, len(missing))
        elapsed = time.perf_counter() - started
        if not announced and done >= min(len(missing), 4 * batch_size):
            announced = True
            # the shortest texts come first, so this under-estimates a little
            estimate = elapsed / done * len(missing)
            if estimate > ANNOUNCE_SECONDS:
                (announce or _announce)(f"text states: encoding {len(missing):,} captions into {out_dir} takes about "
                                        f"{estimate / 60:.0f} min on this machine ({done / elapsed:.0f} captions/s); it is done "
                                        f"once (kept every {FLUSH_SECONDS / 60:.0f} min, so a stopped build resumes). "
                                        "`ccr features --data <bundle> --text-states` builds it ahead of training.")
        if time.perf_counter() - last_flush > FLUSH_SECONDS and done < len(missing):
            old = _append(out_dir, identity, old, pending_texts, pending, encoder.dim)
            pending_texts, pending, last_flush = [], [], time.perf_counter()
    bar.close()
    return _append(out_dir, identity, old, pending_texts, pending, encoder.dim)


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _append(out_dir: Path, identity: dict, old: "TextStateCache | None", texts: list[str], chunks: list[np.ndarray], dim: int) -> TextStateCache:
    """``old``'s texts and states (if any) followed by ``texts`` with their token states ``chunks``, written atomically:
    the states and offsets first, then the meta file that makes them count (a killed write leaves no meta, and the
    next build starts again from nothing rather than read half a file)."""
    order = sorted(range(len(texts)), key=texts.__getitem__)  # stored in text order (encoded in length order)
    texts, chunks = [texts[i] for i in order], [chunks[i] for i in order]
    lengths = np.array([c.shape[0] for c in chunks], dtype=np.int64)
    new_states = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float16)
    all_texts = list(texts)
    if old is not None:
        all_texts = list(old.meta["texts"]) + all_texts
        lengths = np.concatenate([np.diff(old.offsets), lengths])
        new_states = np.concatenate([np.asarray(old.states), new_states])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    (out_dir / META_FILE).unlink(missing_ok=True)  # a killed rewrite must not look complete
    hashes = {}
    for name, array in (("states.npy", new_states), ("offsets.npy", offsets)):
        with atomic_path(out_dir / name) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, array)
        hashes[name] = sha256_file(out_dir / name)
    meta = {"kind": "ccr-text-cache", "identity": identity, "texts": all_texts, "sha256": hashes}
    write_json_atomic(out_dir / META_FILE, meta)
    return load_text_cache(out_dir, identity)


def load_text_cache(root: str | Path, expected_identity: dict | None = None) -> TextStateCache:
    root = Path(root)
    meta = verify_manifest(root, META_FILE, "ccr-text-cache", ("states.npy", "offsets.npy"), TextCacheError, "text-state cache",
                           fields=("texts",), expected_identity=expected_identity, remember_hashes=True)
    arrays = {}
    for name in meta["sha256"]:
        try:
            arrays[name] = np.load(root / name, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise TextCacheError(f"{root / name}: not a plain NumPy array ({exc})") from None
    return TextStateCache(root, meta, arrays["states.npy"], np.asarray(arrays["offsets.npy"]))


def text_cache_dir(workspace: str | Path, bundle_name: str, identity: dict) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    name = identity["encoder"].get("name", "text").replace("/", "_")
    return Path(workspace) / "text_states" / bundle_name / f"{name}-k{identity['trainable_layers']}-{key}"


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
