"""Embeddings the tabs search: every model's embeddings of the test gallery and test captions (computed
once, kept on disk keyed by the checkpoint's weights hash and the ids they cover), and the encoding of
new queries -- typed texts and uploaded pictures -- through each chosen model."""
from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ccr_core.backbones.vision import load_rgb, load_visual_backbone
from ccr_core.dashboard.background import torch_threads
from ccr_core.dashboard.errors import InputError
from ccr_core.dashboard.models import ModelEntry
from ccr_core.training.config import BackboneConfig
from ccr_core.dashboard.thumbnails import safe_name
from ccr_core.data.bundle import Caption, Item
from ccr_core.encoding import pooled_image_features
from ccr_core.io import atomic_path

# torch intra-op threads for the e5 forward of a typed query (0: leave torch's setting). One short
# text gains little from a second OpenMP thread, and a second thread that must wait for a busy core
# (a training run in the Experiment tab, the background passes, other requests) made that forward
# 10-60x slower on the 2-core dev machine (benchmarks/bench_query.py).
QUERY_THREADS = 1
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
CAPTION_BATCH = 512


class Embeddings:
    """The embedding cache of one world's gallery and captions, and the query encoders over it."""

    def __init__(self, cache_dir: Path, gallery: list[Item], captions: list[Caption]):
        self.cache_dir = cache_dir
        self.gallery = gallery
        self.captions = captions
        # What a model's cached embeddings are of (caption and gallery ids), hashed once for every model's cache key.
        ids = "\n".join(c.id for c in captions) + "|" + "\n".join(it.id for it in gallery)
        self.ids_digest = hashlib.sha256(ids.encode()).hexdigest()
        self._visual_backbones: dict = {}
        self._lock = threading.Lock()

    # -- the gallery and the test captions, per model ------------------------------------------------
    def path(self, trained, weights_hash: str) -> Path:
        key = hashlib.sha256((weights_hash + "|" + self.ids_digest).encode()).hexdigest()[:24]
        return self.cache_dir / "embeddings" / f"{safe_name(trained.name)}-{key}.npz"

    def cached(self, trained, bench, weights_hash: str, captions: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Gallery and test-caption embeddings of a model, from disk when stored (NRCCR's attention tower
        makes embedding 12,000 captions the slowest part of a cold start), else computed and stored.
        ``captions=False`` (their text states are not encoded yet): the gallery's alone, captions None,
        nothing written (``caption_embeddings`` writes both later)."""
        path = self.path(trained, weights_hash)
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    images, stored_captions = stored["images"], stored["captions"]
                if images.shape[0] == len(self.gallery) and stored_captions.shape[0] == len(self.captions):
                    return images, stored_captions
            except (OSError, ValueError, KeyError, EOFError):
                pass  # unreadable: recompute and overwrite
        images = trained.on(bench).encode_items(self.gallery).numpy().astype(np.float32)
        if not captions:
            return images, None
        return images, self.caption_embeddings(trained, bench, weights_hash, images)

    def caption_embeddings(self, trained, bench, weights_hash: str, images: np.ndarray) -> np.ndarray:
        """Embed the test captions with ``trained`` and store them with the gallery's (atomically)."""
        captions = self._embed_captions(trained, bench)
        with atomic_path(self.path(trained, weights_hash)) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=images, captions=captions)
        return captions

    @torch.no_grad()
    def _embed_captions(self, trained, bench) -> np.ndarray:
        by_lang: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(self.captions):
            by_lang[c.lang].append(i)
        out = None
        for lang, rows in by_lang.items():
            for b in range(0, len(rows), CAPTION_BATCH):
                chunk = rows[b : b + CAPTION_BATCH]
                emb = trained.on(bench).encode_captions([self.captions[i] for i in chunk], lang).numpy()
                if out is None:
                    out = np.zeros((len(self.captions), emb.shape[1]), dtype=np.float32)
                out[chunk] = emb
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    # -- new queries --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_texts(self, benches: dict, texts: Sequence[str], lang: str, models: Sequence[ModelEntry]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Embeddings ``{model name: (len(texts), E)}`` of free-typed texts, and notes (truncation).

        Each text goes once through the frozen text backbone of each backbone configuration
        (``frozen_states``; captions already in the text-state cache are read from it instead),
        then through each model's own head."""
        notes: list[str] = []
        out: dict[str, np.ndarray] = {}
        by_config: dict[BackboneConfig, list[ModelEntry]] = defaultdict(list)
        for m in models:
            by_config[m.backbones].append(m)
        for config, group in by_config.items():
            bench = benches[config]
            first = group[0].trained.on(bench)
            with torch_threads(QUERY_THREADS):  # the frozen backbone's forward, when a text is not in the cache
                batch = first.text_batch(texts)  # one backbone pass, shared by the models of this configuration
            if not all(t in bench.text_states for t in texts):
                notes += truncation_notes(bench.text_encoder, texts, first.backbones.text_prefix)
            for m in group:
                out[m.name] = m.trained.on(bench).encode_texts(texts, lang, batch).numpy().astype(np.float32)
        return out, sorted(set(notes))

    def visual_backbone(self, spec: str):
        with self._lock:
            if spec not in self._visual_backbones:
                self._visual_backbones[spec] = load_visual_backbone(spec)
            return self._visual_backbones[spec]

    @torch.no_grad()
    def encode_image_file(self, path: str | Path, models: Sequence[ModelEntry]) -> dict[str, np.ndarray]:
        """``{model name: (E,)}`` for an uploaded picture, through each model's own visual backbone."""
        image = read_upload(path)
        features: dict[tuple, torch.Tensor] = {}
        out = {}
        for m in models:
            spec = m.trained.meta.get("train_config", {}).get("visual_backbone") or m.backbones.visual_backbone
            top = getattr(m.trained.method, "visual_top", None)
            key = (spec, None) if top is None else (spec, id(m.trained.method))  # a fine-tuned image top is the model's own
            if key not in features:
                backbone = self.visual_backbone(spec)
                features[key] = pooled_image_features(m.trained.method, backbone, backbone.preprocess(image)[None])  # (1, Dv)
            out[m.name] = m.trained.method.encode_visual(features[key]).numpy()[0].astype(np.float32)
        return out


def read_upload(path: str | Path) -> Image.Image:
    """An uploaded picture as RGB; a missing, huge or unreadable file is a user error that says what to do."""
    path = Path(path)
    if not path.is_file():
        raise InputError("The uploaded file is missing; upload it again.")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise InputError("That file is larger than 25 MB; upload a smaller picture.")
    try:
        return load_rgb(path)
    except Image.DecompressionBombError as exc:
        raise InputError(f"That picture is too large to decode ({exc}). Upload a smaller picture.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"Could not read that file as a picture ({type(exc).__name__}). Upload a JPEG, PNG, WebP or GIF image.") from None


def truncation_notes(encoder, texts: Sequence[str], prefix: str) -> list[str]:
    """A note per text longer than the encoder reads."""
    content = getattr(encoder, "_content_ids", None)
    if content is None:
        return []
    room = encoder.max_length - len(encoder.head_ids) - len(encoder.tail_ids)
    notes = []
    for text in texts:
        n = len(content([prefix + text])[0])
        if n > room:
            notes.append(f"Long text: the model reads only its first {room} of {n} tokens ({encoder.max_length} with special tokens); the rest was ignored.")
    return notes
