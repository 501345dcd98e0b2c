"""The trained models of a world: one :class:`ModelEntry` per checkpoint, with its embeddings of the
test gallery and captions, and the :class:`ModelRegistry` the tabs read. Models trained in the
Experiment tab are private to the browser session that trained them (``owner``) until published."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ccr_core.dashboard.errors import InputError
from ccr_core.training.checkpoint import weights_sha256
from ccr_core.methods import method_sort_key
from ccr_core.training.config import BackboneConfig


@dataclass
class ModelEntry:
    """One trained model with its embeddings of the world's test gallery and test captions."""

    name: str
    method: str  # registry name
    trained: object  # ccr_core.training.inference.TrainedModel
    bench: object  # the Workbench whose backbones it was trained with (audit: its noisy bundle)
    backbones: BackboneConfig  # what it encodes with: models that agree share one workbench and one encoding of each typed query
    checkpoint_hash: str  # SHA-256 of model.safetensors (stamps every cache derived from the model)
    noise: float  # the training noise rate (train_config.noise)
    image_emb: np.ndarray  # (N, E) float32, world.gallery order
    captions: np.ndarray | None  # (M, E) float32, world.captions order; None until the test captions are encoded
    shipped: bool = True  # False: trained in the Experiment tab
    captions_wait: Callable[[], str] | None = None  # the world's status while ``captions`` is None
    owner: str | None = None  # the session that trained it, while it is private; None: every user sees it

    @property
    def caption_emb(self) -> np.ndarray:
        """(M, E) embeddings of the test captions; an InputError (shown in the tab) while the world is
        still encoding them in the background."""
        if self.captions is None:
            raise InputError((self.captions_wait() if self.captions_wait else "") or
                             "The test captions are still being encoded in the background; this fills in when they are done.")
        return self.captions

    @property
    def label(self) -> str:
        return self.name if self.shipped else f"{self.name} (trained here)"

    @property
    def has_uncertainty(self) -> bool:
        return hasattr(self.trained.method, "query_uncertainty")

    @property
    def fine_tuned(self) -> bool:
        """Whether backbone blocks were trained with it (the real-photo world's ``-ft`` models)."""
        meta = getattr(self.trained, "meta", None) or {}
        return bool(meta.get("visual_trainable_blocks") or meta.get("text_trainable_layers"))


def sort_key(entry: ModelEntry) -> tuple:
    """Shipped models first, in the library's method display order, then by noise rate and name."""
    return (not entry.shipped, method_sort_key(entry.method)[0], entry.noise, entry.name)


def checkpoint_folders(root: Path) -> list[tuple[str, Path]]:
    """(model name, checkpoint folder) of every checkpoint under ``root`` (``<name>/`` or ``<name>/best/``)."""
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / "manifest.json").exists():
            out.append((sub.name, sub))
        elif (sub / "best" / "manifest.json").exists():
            out.append((sub.name, sub / "best"))
    return out


def checkpoint_hash(folder: Path) -> str:
    return weights_sha256(folder)


class ModelRegistry:
    """The world's models under a lock; readers get sorted snapshots. A private model (``owner`` set)
    is listed only for its owner's session."""

    def __init__(self):
        self._models: dict[str, ModelEntry] = {}
        self.lock = threading.RLock()

    def add(self, entry: ModelEntry) -> ModelEntry:
        with self.lock:
            old = self._models.get(entry.name)
            if old is not None and old.checkpoint_hash != entry.checkpoint_hash:
                raise ValueError(f"two different models are named {entry.name!r}")
            self._models[entry.name] = entry
        return entry

    def remove(self, name: str) -> ModelEntry | None:
        with self.lock:
            return self._models.pop(name, None)

    def find(self, name: str) -> ModelEntry | None:
        """The model of that name, private or not, or None (for labels and colours, never for access)."""
        with self.lock:
            return self._models.get(name)

    def list(self, session: str | None = None, include_private: bool = False) -> list[ModelEntry]:
        """Every shared model, plus ``session``'s private ones (all private ones with ``include_private``)."""
        with self.lock:
            shown = [m for m in self._models.values() if m.owner is None or include_private or (session and m.owner == session)]
        return sorted(shown, key=sort_key)

    def get(self, name: str, session: str | None = None) -> ModelEntry:
        with self.lock:
            entry = self._models.get(name)
        if entry is None or (entry.owner is not None and entry.owner != session):
            names = ", ".join(m.name for m in self.list(session)) or "none"
            raise InputError(f"No model named {name!r} (available: {names}).")
        return entry

    def select(self, names: Sequence[str] | str | None, session: str | None = None) -> list[ModelEntry]:
        """The chosen models in display order; none chosen is a user error."""
        if isinstance(names, str):
            names = [names]
        names = [n for n in (names or []) if n]
        if not names:
            raise InputError("Choose at least one method.")
        chosen = {self.get(n, session).name for n in names}
        return [m for m in self.list(session) if m.name in chosen]
