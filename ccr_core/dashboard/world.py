"""A "world" for the dashboard: one bundle, its workbench(es), the trained models of a checkpoints
folder and everything derived from them, loaded once and shared read-only by every user. The parts
live in their own modules -- models (``models``), their embeddings and query encoding
(``embeddings``), work left for after the page is up (``background``), thumbnails (``thumbnails``),
language guessing (``detect``) -- and :class:`World` ties them together for the tabs.

Derived files live in ``<workspace>/dashboard/<world>/``: ``thumbs/``, ``embeddings/``, ``eval/``,
``projections/``, ``exports/`` and ``experiments/``; each is stamped with the checkpoint hash it came from.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ccr_core.dashboard import background
from ccr_core.dashboard.background import BackgroundWork
from ccr_core.dashboard.detect import ENCODER_LANGUAGES, LanguageGuesser, detect_language, known_language, language_name
from ccr_core.dashboard.embeddings import Embeddings
from ccr_core.dashboard.errors import InputError, WorldNotBuilt
from ccr_core.dashboard.models import ModelEntry, ModelRegistry, checkpoint_folders, checkpoint_hash
from ccr_core.dashboard.thumbnails import make_thumbnail, marked_thumbnail, safe_name
from ccr_core.dashboard.workbenches import noisy_bench, prepare_test_workbench
from ccr_core.data.bundle import Bundle, BundleError, Caption, Item, load_bundle
from ccr_core.training.inference import load_trained
from ccr_core.io import read_json
from ccr_core.methods import METHODS
from ccr_core.training.checkpoint import CheckpointError
from ccr_core.training.config import BackboneConfig

MAX_QUERY_CHARS = 2000  # a query is cut here before tokenising (the model sees far fewer tokens anyway)
NATIVE_SOURCES = ("human", "generated", "human-translation")  # test captions offered as queries
log = logging.getLogger("ccr.app")
GUESSER_TEXTS_PER_LANGUAGE = 3000  # captions per language the world's own language guesser learns from

__all__ = ["World", "InputError", "WorldNotBuilt", "ModelEntry", "load_world", "resolve_world", "language_name", "safe_name",
           "noisy_bench", "MAX_QUERY_CHARS", "NATIVE_SOURCES"]


@dataclass
class World:
    name: str
    bundle: Bundle
    workspace: Path
    cache_dir: Path  # <workspace>/dashboard/<world name>
    checkpoints_dir: Path
    benches: dict  # BackboneConfig -> Workbench (clean bundle)
    gallery: list[Item]  # test images: the search gallery, in this order everywhere
    captions: list[Caption]  # test captions of gallery items (no back-translations), in this order everywhere
    thumbs: dict[str, Path]  # item id -> thumbnail file
    guesser: LanguageGuesser
    load_seconds: float = 0.0
    registry: ModelRegistry = field(default_factory=ModelRegistry)
    memo: dict = field(default_factory=dict)  # derived views computed once (consistency tables, ...)
    skipped: list[str] = field(default_factory=list)  # checkpoints left out, each with why (shown under the page header)
    caption_work: BackgroundWork = field(default_factory=background.caption_work)  # pending: BackboneConfig -> texts
    training_work: BackgroundWork = field(default_factory=background.training_work)  # pending: BackboneConfig -> TrainConfig

    def __post_init__(self):
        self.gallery_pos = {it.id: i for i, it in enumerate(self.gallery)}
        self.caption_pos = {c.id: i for i, c in enumerate(self.captions)}
        self.captions_by_text: dict[str, list[int]] = defaultdict(list)
        self.captions_of_item: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(self.captions):
            self.captions_by_text[c.text].append(i)
            self.captions_of_item[c.item].append(i)
        self.embeddings = Embeddings(self.cache_dir, self.gallery, self.captions)

    @property
    def lock(self) -> threading.RLock:
        return self.registry.lock

    # -- background work (live status) ---------------------------------------------------------------
    @property
    def pending_captions(self) -> dict:
        return self.caption_work.pending

    @property
    def pending_training(self) -> dict:
        return self.training_work.pending

    @property
    def captions_ready(self) -> threading.Event:
        return self.caption_work.ready

    @property
    def training_ready(self) -> threading.Event:
        return self.training_work.ready

    @property
    def captions_status(self) -> str:
        return self.caption_work.message()

    @property
    def training_status(self) -> str:
        return self.training_work.message()

    @property
    def captions_error(self) -> str:
        return self.caption_work.error

    @property
    def training_error(self) -> str:
        return self.training_work.error

    def finish_caption_caches(self, progress: bool = False) -> None:
        """The test captions' text states and embeddings, after the page is up (``background``)."""
        background.finish_caption_caches(self, progress)

    def finish_training_caches(self, progress: bool = False) -> None:
        """The training pairs' caches, after the test captions (``background``)."""
        background.finish_training_caches(self, progress)

    def require_training_pairs(self) -> None:
        """Raise a user-facing message while the training pairs are still being prepared."""
        if self.pending_training:
            raise InputError(self.training_status or "The training pairs are still being prepared in the background; try again in a minute.")

    def workbenches(self) -> list:
        """Every workbench in use, each once: the clean ones and the models' (noisy ones share their caches)."""
        benches = [*self.benches.values(), *(m.bench for m in self.registry.list(include_private=True))]
        return list({id(b): b for b in benches}.values())

    # -- folders ------------------------------------------------------------------------------------
    @property
    def thumb_dir(self) -> Path:
        return self.cache_dir / "thumbs"

    @property
    def export_dir(self) -> Path:
        d = self.cache_dir / "exports"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def served_dirs(self) -> list[str]:
        """The only folders the web app may serve files from."""
        return [str(self.thumb_dir), str(self.export_dir)]

    # -- languages ----------------------------------------------------------------------------------
    @property
    def languages(self) -> list[str]:
        present = {c.lang for c in self.captions}
        return [l for l in self.bundle.languages if l in present] or sorted(present)

    @property
    def query_languages(self) -> list[str]:
        """Languages a query may be in: the world's first, then every other one the text encoder knows."""
        rest = sorted((l for l in ENCODER_LANGUAGES if l not in self.languages), key=language_name)
        return [*self.languages, *rest]

    def detect_language(self, text: str) -> str:
        """The language of a typed text, among every language the text encoder knows (``detect``)."""
        return detect_language(text, self.languages, fallback=self.guesser.guess)

    def resolve_language(self, lang: str | None, text: str) -> tuple[str, bool]:
        """(language, guessed?) for a query; ``auto`` / empty detects it from the text."""
        if not lang or lang == "auto":
            return self.detect_language(text), True
        if lang not in self.languages and not known_language(lang):
            raise InputError(f"Language {lang!r} is not one the text encoder knows (choose auto, or one of: {', '.join(self.query_languages[:12])}, ...).")
        return lang, False

    # -- models -------------------------------------------------------------------------------------
    def model_list(self, session: str | None = None, include_private: bool = False) -> list[ModelEntry]:
        """The shared models in display order, plus ``session``'s private Experiment models."""
        return self.registry.list(session, include_private)

    def model_names(self, session: str | None = None) -> list[str]:
        return [m.name for m in self.model_list(session)]

    def model(self, name: str, session: str | None = None) -> ModelEntry:
        return self.registry.get(name, session)

    def select_models(self, names: Sequence[str] | str | None, session: str | None = None) -> list[ModelEntry]:
        """The chosen models in display order; none chosen is a user error."""
        return self.registry.select(names, session)

    def add_model(self, trained, bench, backbones: BackboneConfig, shipped: bool = True, owner: str | None = None) -> ModelEntry:
        """Embed the gallery and captions with ``trained`` and register it (loading; the Experiment tab,
        privately for ``owner``). While the test captions of its backbones are pending, only the gallery
        is embedded now (captions later)."""
        weights_hash = checkpoint_hash(trained.folder)
        image_emb, caption_emb = self.embeddings.cached(trained, self.benches[backbones], weights_hash,
                                                        captions=backbones not in self.pending_captions)
        entry = ModelEntry(
            name=trained.name, method=trained.meta["method"], trained=trained, bench=bench, backbones=backbones,
            checkpoint_hash=weights_hash, noise=float(trained.meta.get("train_config", {}).get("noise", 0.0) or 0.0),
            image_emb=image_emb, captions=caption_emb, shipped=shipped, captions_wait=self.caption_work.message, owner=owner,
        )
        return self.registry.add(entry)

    def remove_model(self, name: str) -> None:
        self.registry.remove(name)

    # -- encoding new queries -----------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str], lang: str, models: Sequence[ModelEntry]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Embeddings ``{model name: (len(texts), E)}`` of free-typed texts, and notes (truncation)."""
        return self.embeddings.encode_texts(self.benches, texts, lang, models)

    def encode_image_file(self, path: str | Path, models: Sequence[ModelEntry]) -> dict[str, np.ndarray]:
        """``{model name: (E,)}`` for an uploaded picture, through each model's own visual backbone."""
        return self.embeddings.encode_image_file(path, models)

    # -- thumbnails ---------------------------------------------------------------------------------
    def thumbnail(self, item_id: str) -> Path:
        """The item's thumbnail file, made on first use for items outside the test gallery."""
        if item_id not in self.thumbs:
            self.thumbs[item_id] = make_thumbnail(self.bundle, self.bundle.item(item_id), self.thumb_dir)
        return self.thumbs[item_id]

    def truth_thumbnail(self, item_id: str) -> Path:
        """The item's thumbnail with the ground-truth border drawn in."""
        return marked_thumbnail(self.thumbnail(item_id))

    # -- text helpers -------------------------------------------------------------------------------
    def test_captions_in(self, lang: str | None = None) -> list[Caption]:
        return [c for c in self.captions if lang in (None, "", "all") or c.lang == lang]

    def example_queries(self, per_lang: int = 2) -> list[tuple[str, str]]:
        """(text, lang) examples: the first test captions of each language, from different images."""
        out = []
        for lang in self.languages:
            seen_items: set[str] = set()
            for c in self.captions:
                if c.lang == lang and c.source in NATIVE_SOURCES and c.item not in seen_items:
                    out.append((c.text, lang))
                    seen_items.add(c.item)
                    if len(seen_items) >= per_lang:
                        break
        return out

    def describe(self) -> str:
        counts = Counter(it.split for it in self.bundle.items)
        return (f"{self.name}: {len(self.gallery)} test images, {len(self.captions)} test captions in "
                f"{', '.join(language_name(l) for l in self.languages)}; {len(self.model_list())} models; "
                f"{counts.get('train', 0)} training items")


# --------------------------------------------------------------------------------------------------
# helpers the tabs share


def bundle_stamp(world: World) -> str:
    """What identifies the bundle's content in derived caches and shipped artefacts: its manifest's file hashes."""
    return json.dumps(world.bundle.manifest.files, sort_keys=True)


def uncertainty_models(world: World, session: str | None = None) -> list[str]:
    """Models whose method estimates uncertainty (its class's ``has_uncertainty``: UML); noise-trained ones first (they
    are the interesting audit)."""
    models = [m for m in world.model_list(session) if m.method in METHODS and METHODS.get(m.method).has_uncertainty]
    return [m.name for m in sorted(models, key=lambda m: -m.noise)]


def default_train_config(world: World) -> dict:
    """Training settings for new runs in this world: those of a shipped model (same backbones)."""
    first = world.model_list()[0]
    return dict(first.trained.meta.get("train_config", {}))


def stamp(obj: dict, model: ModelEntry) -> dict:
    return {**obj, "checkpoint_sha256": model.checkpoint_hash, "model": model.name}


# --------------------------------------------------------------------------------------------------
# loading


def resolve_world(world: str, workspace: Path) -> Path:
    """A bundle folder from a world name (``<workspace>/bundles/<name>``) or a path."""
    path = Path(world).expanduser()
    if path.is_dir():
        return path
    candidate = workspace / "bundles" / world
    if candidate.is_dir():
        return candidate
    build = "ccr data build demo-world   (or: make demo)" if world == "demo-world" else f"ccr data build {world}"
    raise WorldNotBuilt(f"The world {world!r} is not built (looked for {candidate}).\nBuild it with:\n    {build}\n"
                        f"(set CCR_WORKSPACE or --workspace if your workspace is elsewhere).")


def unknown_method_warning(name: str, folder: Path, method: str | None) -> str:
    """Why a checkpoint of an unregistered method is left out, and how to load it (its plugin)."""
    from ccr_core.methods import METHODS as registered, PLUGIN_ENV

    broken = "".join(f" Plugin {p} failed to load: {why}." for p, why in sorted(registered.plugin_errors.items()))
    return (f"Checkpoint {name!r} ({folder}) was skipped: its method {method!r} is not registered.{broken} If a plugin defines it, "
            f"load the plugin: {PLUGIN_ENV}=module python app.py, or python app.py --plugin module.")


def load_world(
    bundle_root: str | Path,
    checkpoints_dir: str | Path,
    workspace: str | Path,
    progress: bool = False,
    check_images: bool = True,
    defer_captions: bool = False,
) -> World:
    """Load a world once: bundle, workbench per backbone configuration, every checkpoint under
    ``checkpoints_dir``, their test embeddings, and the thumbnails of the test gallery.

    ``defer_captions`` (the app): test captions whose text states are not cached yet are left for
    ``World.finish_caption_caches`` (listed in ``pending_captions``), so a fresh workspace opens on
    the gallery's features alone -- typed-text and picture search work at once."""
    start = time.perf_counter()
    workspace = Path(workspace)
    checkpoints_dir = Path(checkpoints_dir)
    try:
        bundle = load_bundle(bundle_root, check_images=check_images)
    except BundleError as exc:
        raise WorldNotBuilt(f"The world at {bundle_root} cannot be loaded: {exc}") from None
    if not checkpoints_dir.is_dir() or not checkpoint_folders(checkpoints_dir):
        raise WorldNotBuilt(
            f"No trained checkpoints in {checkpoints_dir}.\nTrain one with, e.g.:\n"
            f"    ccr train --method baseline --data {bundle.name}\nand copy its run folder's best/ to "
            f"{checkpoints_dir}/baseline/, or pass --checkpoints DIR.")
    cache_dir = workspace / "dashboard" / safe_name(bundle.name)
    gallery = bundle.items_in("test", "image") or bundle.items_in("test")
    gallery_ids = {it.id for it in gallery}
    captions = [c for c in bundle.captions if c.split == "test" and c.item in gallery_ids and not c.source.startswith("back-translation:")]
    if not gallery or not captions:
        raise WorldNotBuilt(f"{bundle.root}: the bundle has no test images with captions to search.")

    texts_by_lang: dict[str, list[str]] = defaultdict(list)
    for c in bundle.captions:
        if len(texts_by_lang[c.lang]) < GUESSER_TEXTS_PER_LANGUAGE and not c.source.startswith("back-translation:"):
            texts_by_lang[c.lang].append(c.text)
    world = World(bundle.name, bundle, workspace, cache_dir, checkpoints_dir, {}, gallery, captions, {}, LanguageGuesser(dict(texts_by_lang)))
    for item in gallery:
        world.thumbs[item.id] = make_thumbnail(bundle, item, world.thumb_dir)

    noisy: dict[tuple, object] = {}  # (backbones, noise rate, noise seed) -> the workbench over that noisy bundle
    for name, folder in checkpoint_folders(checkpoints_dir):
        try:
            meta = read_json(folder / "config.json")
        except (OSError, ValueError) as exc:
            raise WorldNotBuilt(f"{folder}: unreadable checkpoint config ({exc})") from None
        if meta.get("method") not in METHODS:  # a plugin's method whose plugin is not loaded: the others still open
            world.skipped.append(unknown_method_warning(name, folder, meta.get("method")))
            log.warning(world.skipped[-1])
            continue
        config = BackboneConfig.of_checkpoint(meta)
        if config not in world.benches:
            cfg = config.train_config(data=str(bundle.root))
            served = prepare_test_workbench(cfg, workspace, bundle, world.gallery, world.captions, progress=progress, defer_captions=defer_captions)
            world.benches[config] = served.bench
            if not served.complete:
                world.pending_training[config] = cfg
            if served.pending_texts:
                world.pending_captions[config] = served.pending_texts
        bench = world.benches[config]
        try:
            trained = load_trained(folder, bench, name=name)
        except CheckpointError as exc:
            raise WorldNotBuilt(f"Checkpoint {folder} cannot be used with this world: {exc}") from None
        noise = float(meta.get("train_config", {}).get("noise", 0.0) or 0.0)
        model_bench = bench
        if noise > 0:  # its training pairs were the bundle's with injected noise (for the audit)
            key = (config, noise, int(meta["train_config"].get("noise_seed", 0)))
            if key not in noisy:  # every model trained at one rate and seed saw the same pairs: inject once (~1 s each)
                noisy[key] = noisy_bench(bench, noise, key[2])
            model_bench = noisy[key]
        world.add_model(trained, model_bench, config, shipped=True)
    if not world.registry.list(include_private=True):
        raise WorldNotBuilt("No checkpoint in " + str(checkpoints_dir) + " can be loaded:\n" + "\n".join(world.skipped))
    world.caption_work.settle()
    world.training_work.settle()
    world.load_seconds = time.perf_counter() - start
    return world
