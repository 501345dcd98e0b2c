"""A "world" for the dashboard: one bundle, its workbench(es), the trained models of a checkpoints
folder and everything derived from them -- per-model embeddings of the test gallery and test
captions, thumbnails (small JPEG files in a cache folder) and a language guesser -- loaded once and
shared read-only by every user. Models trained in the Experiment tab are added at run time
(``World.add_model``) under a lock; readers take a snapshot (``World.model_list``).

Derived files live in ``<workspace>/dashboard/<world>/``: ``thumbs/``, ``eval/``, ``projections/``,
``exports/`` and ``experiments/``; each JSON is stamped with the checkpoint hash it came from.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import threading
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ccr_core.data.bundle import LANGUAGE_NAMES, Bundle, BundleError, Caption, Item, load_bundle
from ccr_core.features import TEST_SPLIT_SUFFIX  # the test images' own caches, until the full ones are built
from ccr_core.io import read_json

THUMB_SIZE = 192  # longest side of a thumbnail, pixels
MAX_QUERY_CHARS = 2000  # a query is cut here before tokenising (the model sees far fewer tokens anyway)
NATIVE_SOURCES = ("human", "generated", "human-translation")  # test captions offered as queries
METHOD_ORDER = ("baseline", "baseline-en", "nrccr", "cl2cm", "uml", "one_to_k")


# torch intra-op threads for the e5 forward of a typed query (0: leave torch's setting). One short
# text gains little from a second OpenMP thread, and a second thread that must wait for a busy core
# (a training run in the Experiment tab, the warm-up thread, other requests or jobs on the machine)
# made that forward 10-60x slower on the 2-core dev machine (benchmarks/bench_query.py).
QUERY_THREADS = 1
# ... and the background pass over the training pairs (World.finish_training_caches) keeps to one
# thread, so the other core answers searches while it runs.
BACKGROUND_THREADS = 1


@contextlib.contextmanager
def _torch_threads(n: int):
    """``torch.set_num_threads(n)`` for the block, then back (OpenMP keeps the count per OS thread)."""
    before = torch.get_num_threads()
    if n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0 and n != before:
            torch.set_num_threads(before)


class InputError(ValueError):
    """Bad user input (empty query, unknown method, unreadable image ...): the message is for the user."""


class WorldNotBuilt(RuntimeError):
    """The world's bundle or checkpoints are missing; the message says which command builds them."""


def language_name(code: str) -> str:
    from ccr_core.dashboard.detect import ENCODER_LANGUAGES

    return LANGUAGE_NAMES.get(code) or ENCODER_LANGUAGES.get(code, code)


# --------------------------------------------------------------------------------------------------
# language guessing for "auto" queries


_SCRIPT_LANGS = {"CJK": ("zh", "ja"), "HIRAGANA": ("ja",), "KATAKANA": ("ja",), "HANGUL": ("ko",), "CYRILLIC": ("ru", "uk", "bg"),
                 "ARABIC": ("ar", "fa", "ur"), "GREEK": ("el",), "DEVANAGARI": ("hi", "mr", "ne"), "THAI": ("th",), "HEBREW": ("he",)}


def _script(ch: str) -> str:
    try:
        return unicodedata.name(ch).split()[0]
    except ValueError:
        return "OTHER"


def _scripts(text: str) -> Counter:
    return Counter(_script(ch) for ch in text if ch.isalpha())


class LanguageGuesser:
    """Naive Bayes over character 1-3-grams learned from the world's own captions, restricted first
    by writing system (kana means Japanese, Han without kana Chinese, ...). Only the world's languages
    are candidates, so it is right on the captions the models were trained for."""

    def __init__(self, texts_by_lang: dict[str, list[str]]):
        self.langs = sorted(texts_by_lang)
        self.counts: dict[str, Counter] = {}
        self.totals: dict[str, int] = {}
        self.scripts: dict[str, Counter] = {}
        for lang, texts in texts_by_lang.items():
            grams: Counter = Counter()
            scripts: Counter = Counter()
            for text in texts:
                grams.update(self._grams(text))
                scripts.update(_scripts(text))
            self.counts[lang], self.totals[lang], self.scripts[lang] = grams, sum(grams.values()), scripts
        self.vocab = len(set().union(*self.counts.values())) if self.counts else 1

    @staticmethod
    def _grams(text: str) -> list[str]:
        t = f" {text.lower()} "
        return [t[i : i + n] for n in (1, 2, 3) for i in range(len(t) - n + 1)]

    def guess(self, text: str) -> str:
        if not self.langs:
            return "en"
        candidates = list(self.langs)
        scripts = _scripts(text)
        if scripts:
            main = "KATAKANA" if (scripts["HIRAGANA"] + scripts["KATAKANA"]) and "ja" in self.langs else scripts.most_common(1)[0][0]
            by_profile = [l for l in candidates if self.scripts[l] and self.scripts[l].most_common(1)[0][0] == main]
            by_table = [l for l in _SCRIPT_LANGS.get(main, ()) if l in candidates]
            candidates = by_profile or by_table or candidates
        grams = self._grams(text[:500])
        best, best_score = candidates[0], -math.inf
        for lang in candidates:
            counts, total = self.counts[lang], self.totals[lang] + self.vocab
            score = sum(math.log((counts.get(g, 0) + 1) / total) for g in grams)
            if score > best_score:
                best, best_score = lang, score
        return best


# --------------------------------------------------------------------------------------------------
# models


@dataclass
class ModelEntry:
    """One trained model with its embeddings of the world's test gallery and test captions."""

    name: str
    method: str  # registry name
    trained: object  # ccr_core.evaluate.TrainedModel
    bench: object  # the Workbench whose backbones it was trained with (audit: its noisy bundle)
    text_config: tuple  # (text_backbone, visual_backbone, trainable_layers, text_prefix)
    checkpoint_hash: str  # SHA-256 of model.safetensors (stamps every cache derived from the model)
    noise: float  # the training noise rate (train_config.noise)
    image_emb: np.ndarray  # (N, E) float32, world.gallery order
    captions: np.ndarray | None  # (M, E) float32, world.captions order; None until the test captions are encoded
    shipped: bool = True  # False: trained in the Experiment tab
    captions_wait: Callable[[], str] | None = None  # the world's status while ``captions`` is None

    @property
    def caption_emb(self) -> np.ndarray:
        """(M, E) embeddings of the test captions; an InputError (shown in the tab) while the world is
        still encoding them in the background (``World.finish_caption_caches``)."""
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


def _checkpoint_folders(root: Path) -> list[tuple[str, Path]]:
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / "manifest.json").exists():
            out.append((sub.name, sub))
        elif (sub / "best" / "manifest.json").exists():
            out.append((sub.name, sub / "best"))
    return out


def checkpoint_hash(folder: Path) -> str:
    manifest = read_json(folder / "manifest.json")
    return manifest["sha256"]["model.safetensors"]


def _method_sort_key(entry: ModelEntry) -> tuple:
    order = METHOD_ORDER.index(entry.method) if entry.method in METHOD_ORDER else len(METHOD_ORDER)
    return (not entry.shipped, order, entry.noise, entry.name)


def safe_name(text: str) -> str:
    """A file-name-safe slug plus a short hash (ids may hold '#', '/', spaces ...)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:40]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


# --------------------------------------------------------------------------------------------------
# the world


@dataclass
class World:
    name: str
    bundle: Bundle
    workspace: Path
    cache_dir: Path  # <workspace>/dashboard/<world name>
    checkpoints_dir: Path
    benches: dict  # text_config -> Workbench (clean bundle)
    gallery: list[Item]  # test images: the search gallery, in this order everywhere
    captions: list[Caption]  # test captions of gallery items (no back-translations), in this order everywhere
    thumbs: dict[str, Path]  # item id -> thumbnail file
    guesser: LanguageGuesser
    load_seconds: float = 0.0
    _models: dict[str, ModelEntry] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    memo: dict = field(default_factory=dict)  # derived views computed once (consistency tables, ...)
    _visual_backbones: dict = field(default_factory=dict)
    # Training-pair caches still to build after the test split (text_config -> TrainConfig), and how far that is.
    pending_training: dict = field(default_factory=dict)
    training_status: str = ""
    training_error: str = ""
    training_ready: threading.Event = field(default_factory=threading.Event)
    # Test captions whose text states are still to encode after the page is up (text_config -> texts), and how far that is.
    pending_captions: dict = field(default_factory=dict)
    captions_status: str = ""
    captions_error: str = ""
    captions_ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.gallery_pos = {it.id: i for i, it in enumerate(self.gallery)}
        self.caption_pos = {c.id: i for i, c in enumerate(self.captions)}
        self.captions_by_text: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(self.captions):
            self.captions_by_text[c.text].append(i)
        self.captions_of_item: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(self.captions):
            self.captions_of_item[c.item].append(i)
        # What a model's cached embeddings are of (caption and gallery ids), hashed once for every model's cache key.
        ids = "\n".join(c.id for c in self.captions) + "|" + "\n".join(it.id for it in self.gallery)
        self.ids_digest = hashlib.sha256(ids.encode()).hexdigest()

    # -- the test captions, after the page is up -----------------------------------------------------
    def finish_caption_caches(self, progress: bool = False) -> None:
        """Encode the text states of the test captions that were left for later (``load_world(...,
        defer_captions=True)``), swap the complete cache into every workbench and embed the captions with
        every model (a background thread of the app: search by typed text and by picture worked before).
        Image -> text, Consistency and the embedding maps wait for this. A no-op when nothing is pending."""
        from ccr_core.training.text_cache import build_text_cache

        try:
            for config, texts in list(self.pending_captions.items()):
                bench = self.benches[config]
                start = time.perf_counter()

                def status(done: int, total: int) -> None:
                    self.captions_status = captions_status(total, done, time.perf_counter() - start)

                status(0, len(texts))
                _, _, trainable_layers, prefix = config
                with _torch_threads(BACKGROUND_THREADS):
                    full = build_text_cache(bench.text_encoder, texts, bench.text_states.root, trainable_layers, prefix,
                                            progress=progress, on_progress=status)
                old = bench.text_states
                with self._lock:  # the clean workbench and the noisy ones made from it share its caches
                    for other in self._workbenches():
                        if other.text_states is old:
                            other.text_states = full
                    del self.pending_captions[config]
                for model in self.model_list():
                    if model.text_config == config and model.captions is None:
                        self.captions_status = f"Embedding the test captions with {model.name}…"
                        model.captions = self._caption_embeddings(model.trained, bench, model.checkpoint_hash, model.image_emb)
            self.captions_status = ""
        except Exception as exc:  # noqa: BLE001 -- reported in the tabs that need captions; search keeps working
            self.captions_error = f"{type(exc).__name__}: {exc}"
            self.captions_status = f"Encoding the test captions failed: {self.captions_error}"
            raise
        finally:
            if not self.pending_captions or self.captions_error:
                self.captions_ready.set()

    # -- the training pairs, after the test split ---------------------------------------------------
    def finish_training_caches(self, progress: bool = False) -> None:
        """Build what the Uncertainty audit and Experiment tabs need -- features of every image and text
        states of the training captions -- and swap them into every workbench (a background thread of
        the app; the test split was ready before the page opened). A no-op when nothing is pending."""
        try:
            for config, cfg in list(self.pending_training.items()):
                with _torch_threads(BACKGROUND_THREADS):
                    self._finish_one(config, cfg, progress)
        except Exception as exc:  # noqa: BLE001 -- reported in the tabs that need it; search keeps working
            self.training_error = f"{type(exc).__name__}: {exc}"
            self.training_status = f"Preparing the training pairs failed: {self.training_error}"
            raise
        finally:
            if not self.pending_training or self.training_error:
                self.training_ready.set()

    def _finish_one(self, config: tuple, cfg, progress: bool) -> None:
        from ccr_core.training.train import prepare_workbench

        start = time.perf_counter()
        self.training_status = (f"Preparing the training pairs in the background (since {time.strftime('%H:%M:%S')}): features of all "
                                f"{len(self.bundle.items):,} images and text states of the training captions. The test split is ready.")
        old = self.benches[config]
        full = prepare_workbench(cfg, self.workspace, self.bundle, progress=progress, encoder=old.text_encoder,
                                 backbone=getattr(old, "visual_backbone", None))
        interim = old.features.root if old.features.root.name.endswith(TEST_SPLIT_SUFFIX) else None
        with self._lock:
            # The clean workbench and the noisy ones made from it (noisy_bench) share its caches.
            shared = (old.features, old.text_states)
            for bench in self._workbenches():
                if bench.features is shared[0] or bench.text_states is shared[1]:
                    bench.features, bench.text_states = full.features, full.text_states
                bench.drop_test_split_maps()  # the fine-tuned models' gallery maps (already embedded)
            old.complete = True
            del self.pending_training[config]
        if interim is not None:  # the test split's own feature cache, now covered by the full one
            import shutil

            shutil.rmtree(interim, ignore_errors=True)
        self.training_status = f"Training pairs ready ({time.perf_counter() - start:.0f} s in the background)."

    def _workbenches(self) -> list:
        """Every workbench in use, each once: the clean ones and the models' (noisy ones share their caches)."""
        return list({id(b): b for b in [*self.benches.values(), *(m.bench for m in self._models.values())]}.values())

    def require_training_pairs(self) -> None:
        """Raise a user-facing message while the training pairs are still being prepared."""
        if self.pending_training:
            raise InputError(self.training_status or "The training pairs are still being prepared in the background; try again in a minute.")

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
        from ccr_core.dashboard.detect import ENCODER_LANGUAGES

        rest = sorted((l for l in ENCODER_LANGUAGES if l not in self.languages), key=language_name)
        return [*self.languages, *rest]

    def detect_language(self, text: str) -> str:
        """The language of a typed text, among every language the text encoder knows (``detect``)."""
        from ccr_core.dashboard.detect import detect_language

        return detect_language(text, self.languages, fallback=self.guesser.guess)

    def resolve_language(self, lang: str | None, text: str) -> tuple[str, bool]:
        """(language, guessed?) for a query; ``auto`` / empty detects it from the text."""
        from ccr_core.dashboard.detect import known_language

        if not lang or lang == "auto":
            return self.detect_language(text), True
        if lang not in self.languages and not known_language(lang):
            raise InputError(f"Language {lang!r} is not one the text encoder knows (choose auto, or one of: {', '.join(self.query_languages[:12])}, ...).")
        return lang, False

    # -- models -------------------------------------------------------------------------------------
    def model_list(self) -> list[ModelEntry]:
        with self._lock:
            return sorted(self._models.values(), key=_method_sort_key)

    def model_names(self) -> list[str]:
        return [m.name for m in self.model_list()]

    def model(self, name: str) -> ModelEntry:
        with self._lock:
            if name not in self._models:
                raise InputError(f"No model named {name!r} (available: {', '.join(self.model_names()) or 'none'}).")
            return self._models[name]

    def select_models(self, names: Sequence[str] | str | None) -> list[ModelEntry]:
        """The chosen models in display order; none chosen is a user error."""
        if isinstance(names, str):
            names = [names]
        names = [n for n in (names or []) if n]
        if not names:
            raise InputError("Choose at least one method.")
        chosen = {self.model(n).name for n in names}
        return [m for m in self.model_list() if m.name in chosen]

    def add_model(self, trained, bench, text_config: tuple, shipped: bool = True) -> ModelEntry:
        """Embed the gallery and captions with ``trained`` and register it (Experiment tab, loading). While
        the test captions of its backbones are pending, only the gallery is embedded now (captions later)."""
        weights_hash = checkpoint_hash(trained.folder)
        image_emb, caption_emb = self._cached_embeddings(trained, self.benches[text_config], weights_hash,
                                                         captions=text_config not in self.pending_captions)
        entry = ModelEntry(
            name=trained.name, method=trained.meta["method"], trained=trained, bench=bench, text_config=text_config,
            checkpoint_hash=weights_hash, noise=float(trained.meta.get("train_config", {}).get("noise", 0.0) or 0.0),
            image_emb=image_emb, captions=caption_emb, shipped=shipped, captions_wait=lambda: self.captions_status,
        )
        with self._lock:
            if entry.name in self._models and self._models[entry.name].checkpoint_hash != entry.checkpoint_hash:
                raise ValueError(f"two different models are named {entry.name!r}")
            self._models[entry.name] = entry
        return entry

    def _embeddings_path(self, trained, weights_hash: str) -> Path:
        key = hashlib.sha256((weights_hash + "|" + self.ids_digest).encode()).hexdigest()[:24]
        return self.cache_dir / "embeddings" / f"{safe_name(trained.name)}-{key}.npz"

    def _cached_embeddings(self, trained, bench, weights_hash: str, captions: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Gallery and test-caption embeddings of a model, computed once and kept on disk under
        ``<cache_dir>/embeddings/``, keyed by the checkpoint's weights hash and the gallery/caption ids
        (NRCCR's attention tower makes embedding 12,000 captions the slowest part of a cold start).
        ``captions=False`` (their text states are not encoded yet): the gallery's alone, captions None,
        nothing written (``_caption_embeddings`` writes both later)."""
        from ccr_core.evaluate import embed_items

        path = self._embeddings_path(trained, weights_hash)
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    images, stored_captions = stored["images"], stored["captions"]
                if images.shape[0] == len(self.gallery) and stored_captions.shape[0] == len(self.captions):
                    return images, stored_captions
            except (OSError, ValueError, KeyError, EOFError):
                pass  # unreadable: recompute and overwrite
        images = embed_items(trained, bench, self.gallery).numpy().astype(np.float32)
        if not captions:
            return images, None
        return images, self._caption_embeddings(trained, bench, weights_hash, images)

    def _caption_embeddings(self, trained, bench, weights_hash: str, images: np.ndarray) -> np.ndarray:
        """Embed the test captions with ``trained`` and store them with the gallery's (atomically)."""
        from ccr_core.io import atomic_path

        captions = self._embed_captions(trained, bench)
        with atomic_path(self._embeddings_path(trained, weights_hash)) as tmp:
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
            for b in range(0, len(rows), 512):
                chunk = rows[b : b + 512]
                emb = trained.method.encode_text(bench.text_states.batch([self.captions[i].text for i in chunk]), lang).numpy()
                if out is None:
                    out = np.zeros((len(self.captions), emb.shape[1]), dtype=np.float32)
                out[chunk] = emb
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    # -- encoding new queries -----------------------------------------------------------------------
    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], lang: str, models: Sequence[ModelEntry]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Embeddings ``{model name: (len(texts), E)}`` of free-typed texts, and notes (truncation).

        Each text goes once through the frozen text backbone of each backbone configuration
        (``frozen_states``; captions already in the text-state cache are read from it instead),
        then through each model's own head.
        """
        from ccr_core.methods.base import TextBatch
        from ccr_core.training.text_cache import frozen_states

        notes: list[str] = []
        out: dict[str, np.ndarray] = {}
        by_config: dict[tuple, list[ModelEntry]] = defaultdict(list)
        for m in models:
            by_config[m.text_config].append(m)
        for config, group in by_config.items():
            bench = self.benches[config]
            _, _, trainable_layers, prefix = config
            if all(t in bench.text_states for t in texts):
                batch = bench.text_states.batch(list(texts))
            else:
                with _torch_threads(QUERY_THREADS):
                    states, mask = frozen_states(bench.text_encoder, list(texts), trainable_layers, prefix)
                batch = TextBatch(states.float(), mask)
                notes += self._truncation_notes(bench.text_encoder, texts, prefix)
            for m in group:
                out[m.name] = m.trained.method.encode_text(batch, lang).numpy().astype(np.float32)
        return out, sorted(set(notes))

    @staticmethod
    def _truncation_notes(encoder, texts: Sequence[str], prefix: str) -> list[str]:
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

    def visual_backbone(self, spec: str):
        with self._lock:
            if spec not in self._visual_backbones:
                from ccr_core.backbones.vision import load_visual_backbone

                self._visual_backbones[spec] = load_visual_backbone(spec)
            return self._visual_backbones[spec]

    @torch.no_grad()
    def encode_image_file(self, path: str | Path, models: Sequence[ModelEntry]) -> dict[str, np.ndarray]:
        """``{model name: (E,)}`` for an uploaded picture, through each model's own visual backbone."""
        from PIL import Image, UnidentifiedImageError

        from ccr_core.backbones.vision import load_rgb

        path = Path(path)
        if not path.is_file():
            raise InputError("The uploaded file is missing; upload it again.")
        if path.stat().st_size > 25 * 1024 * 1024:
            raise InputError("That file is larger than 25 MB; upload a smaller picture.")
        try:
            image = load_rgb(path)
        except Image.DecompressionBombError as exc:
            raise InputError(f"That picture is too large to decode ({exc}). Upload a smaller picture.") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"Could not read that file as a picture ({type(exc).__name__}). Upload a JPEG, PNG, WebP or GIF image.") from None
        from ccr_core.encoding import pooled_image_features

        features: dict[tuple, torch.Tensor] = {}
        out = {}
        for m in models:
            spec = m.trained.meta.get("train_config", {}).get("visual_backbone") or m.text_config[1]
            top = getattr(m.trained.method, "visual_top", None)
            key = (spec, None) if top is None else (spec, id(m.trained.method))  # a fine-tuned image top is the model's own
            if key not in features:
                backbone = self.visual_backbone(spec)
                features[key] = pooled_image_features(m.trained.method, backbone, backbone.preprocess(image)[None])  # (1, Dv)
            out[m.name] = m.trained.method.encode_visual(features[key]).numpy()[0].astype(np.float32)
        return out

    # -- thumbnails ---------------------------------------------------------------------------------
    def thumbnail(self, item_id: str) -> Path:
        """The item's thumbnail file, made on first use for items outside the test gallery."""
        if item_id in self.thumbs:
            return self.thumbs[item_id]
        path = _make_thumbnail(self.bundle, self.bundle.item(item_id), self.thumb_dir)
        self.thumbs[item_id] = path
        return path

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
# loading


def _make_thumbnail(bundle: Bundle, item: Item, out_dir: Path) -> Path:
    from PIL import Image, ImageDraw

    from ccr_core.backbones.vision import load_rgb

    out = out_dir / f"{safe_name(item.id)}.jpg"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    src = bundle.image_path(item)
    try:
        if src.is_dir():  # a video given as a folder of frames: its first frame
            frames = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
            image = load_rgb(frames[0])
        elif src.suffix == ".npy":
            raise ValueError("frame features only")
        else:
            image = load_rgb(src)
    except Exception:  # noqa: BLE001 -- a missing or unreadable picture gets a labelled placeholder
        image = Image.new("RGB", (THUMB_SIZE, THUMB_SIZE), (200, 200, 200))
        ImageDraw.Draw(image).text((8, THUMB_SIZE // 2), item.id[:24], fill=(60, 60, 60))
    image.thumbnail((THUMB_SIZE, THUMB_SIZE))
    tmp = out.with_suffix(".tmp.jpg")
    image.save(tmp, "JPEG", quality=85)
    tmp.replace(out)
    return out


def captions_status(total: int, done: int | None = None, seconds: float = 0.0) -> str:
    """The status line of the background pass over the test captions (tabs that wait for it show it)."""
    progress = f": {done:,} done ({seconds:.0f} s)" if done is not None else ""
    return (f"Encoding the {total:,} test captions in the background{progress}. Search by text or picture works now; "
            "image → text, Consistency and the embedding maps fill in when this is done.")


def bundle_stamp(world: "World") -> str:
    """What identifies the bundle's content in derived caches and shipped artefacts: its manifest's file hashes."""
    return json.dumps(world.bundle.manifest.files, sort_keys=True)


def uncertainty_models(world: "World") -> list[str]:
    """Models that estimate uncertainty (UML); noise-trained ones first (they are the interesting audit)."""
    models = [m for m in world.model_list() if hasattr(m.trained.method, "uncertainty") and m.method == "uml"]
    return [m.name for m in sorted(models, key=lambda m: -m.noise)]


def _text_config(meta: dict) -> tuple:
    cfg = meta.get("train_config", {})
    return (cfg.get("text_backbone", "e5-small"), cfg.get("visual_backbone", "efficientnet-lite0"),
            int(meta.get("text_trainable_layers", cfg.get("trainable_layers", 0)) or 0), meta.get("text_prefix", cfg.get("text_prefix", "query: ")))


def noisy_bench(bench, noise: float, seed: int):
    """The workbench a noise-trained model saw: the same caches over the bundle with injected noise."""
    try:
        from ccr_core.data.noise import inject_noise
    except ImportError:
        return None
    captions, labels = inject_noise(bench.bundle, noise, seed=seed)
    bundle = Bundle(bench.bundle.root, bench.bundle.manifest, bench.bundle.items, captions, labels)
    return bench.with_bundle(bundle)


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
    from ccr_core.evaluate import load_trained
    from ccr_core.training.checkpoint import CheckpointError
    from ccr_core.training.train import TrainConfig, prepare_workbench

    start = time.perf_counter()
    workspace = Path(workspace)
    checkpoints_dir = Path(checkpoints_dir)
    try:
        bundle = load_bundle(bundle_root, check_images=check_images)
    except BundleError as exc:
        raise WorldNotBuilt(f"The world at {bundle_root} cannot be loaded: {exc}") from None
    if not checkpoints_dir.is_dir() or not _checkpoint_folders(checkpoints_dir):
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
        if len(texts_by_lang[c.lang]) < 3000 and not c.source.startswith("back-translation:"):
            texts_by_lang[c.lang].append(c.text)
    world = World(bundle.name, bundle, workspace, cache_dir, checkpoints_dir, {}, gallery, captions, {}, LanguageGuesser(dict(texts_by_lang)))
    for item in gallery:
        world.thumbs[item.id] = _make_thumbnail(bundle, item, world.thumb_dir)

    noisy: dict[tuple, object] = {}  # (backbones, noise rate, noise seed) -> the workbench over that noisy bundle
    for name, folder in _checkpoint_folders(checkpoints_dir):
        try:
            meta = read_json(folder / "config.json")
        except (OSError, ValueError) as exc:
            raise WorldNotBuilt(f"{folder}: unreadable checkpoint config ({exc})") from None
        config = _text_config(meta)
        if config not in world.benches:
            cfg = TrainConfig(text_backbone=config[0], visual_backbone=config[1], trainable_layers=config[2], text_prefix=config[3], data=str(bundle.root))
            world.benches[config] = prepare_test_workbench(cfg, workspace, bundle, world.gallery, world.captions, progress=progress,
                                                           defer_captions=defer_captions)
            if not world.benches[config].complete:
                world.pending_training[config] = cfg
            if world.benches[config].pending_texts:
                world.pending_captions[config] = world.benches[config].pending_texts
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
                noisy[key] = noisy_bench(bench, noise, key[2]) or bench
            model_bench = noisy[key]
        world.add_model(trained, model_bench, config, shipped=True)
    if world.pending_training:
        world.training_status = ("Preparing the training pairs in the background (features of all images, text states of the "
                                 "training captions); the test split is ready.")
    else:
        world.training_ready.set()
    if world.pending_captions:
        world.captions_status = captions_status(sum(len(texts) for texts in world.pending_captions.values()))
    else:
        world.captions_ready.set()
    world.load_seconds = time.perf_counter() - start
    return world


def prepare_test_workbench(cfg, workspace: Path, bundle: Bundle, gallery: list[Item], captions: list[Caption], progress: bool = False,
                           defer_captions: bool = False):
    """A workbench for what search needs: the complete caches when they exist, else features of the
    test gallery and text states of the test captions only (caches of their own, so nothing of the
    full ones is replaced), with ``complete = False``: ``World.finish_training_caches`` adds the rest.
    With ``defer_captions`` the test captions' missing text states are not encoded here either: the
    workbench's ``pending_texts`` lists them for ``World.finish_caption_caches``."""
    from ccr_core.backbones.text import load_text_encoder
    from ccr_core.backbones.vision import load_visual_backbone
    from ccr_core.features import FeatureCacheError, cache_dir_for, extract_features, load_features
    from ccr_core.training.text_cache import TextCacheError, build_text_cache, cache_identity, load_text_cache, text_cache_dir
    from ccr_core.training.data import needed_captions, training_examples
    from ccr_core.training.train import Workbench

    backbone = load_visual_backbone(cfg.visual_backbone)
    encoder = load_text_encoder(cfg.text_backbone)
    identity = cache_identity(encoder, cfg.trainable_layers, cfg.text_prefix)
    feature_dir = cache_dir_for(workspace, bundle, backbone)
    text_dir = text_cache_dir(workspace, bundle.name, identity)
    full_features = None
    try:
        cache = load_features(feature_dir, backbone.identity())
        full_features = cache if cache.ids == [it.id for it in bundle.items] else None
    except (FeatureCacheError, OSError, ValueError):
        pass
    states = None  # the text cache as it is now, loaded (and checked) once for every branch below
    try:
        states = load_text_cache(text_dir, identity)
        text_of = {c.id: c.text for c in bundle.captions}
        examples = training_examples(bundle, "train", cfg.target_langs, cfg.target_sources)
        needed = {c.text for c in bundle.captions if c.split != "train"} | {text_of[cid] for cid in needed_captions(examples)}
        texts_complete = all(t in states for t in needed)
    except (TextCacheError, OSError, ValueError):
        texts_complete = False
    if full_features is not None and texts_complete:  # a warm workspace: the complete caches, as loaded (and checked) above
        bench = Workbench(bundle, full_features, encoder, states, backbone.identity(), backbone, Path(workspace), map_items=list(gallery))
        bench.complete = True
        bench.pending_texts = []
        return bench
    if full_features is not None:  # e.g. the demo world's shipped features: only the text states are missing
        features = full_features
    else:
        test_bundle = Bundle(bundle.root, bundle.manifest, list(gallery), list(captions), {})
        features = extract_features(test_bundle, backbone, feature_dir.with_name(feature_dir.name + TEST_SPLIT_SUFFIX), progress=progress)
    # Text states of the test captions go into the one text cache (it is keyed by text and appends),
    # so the background pass later adds only the training captions.
    # (Every test caption, not only the searchable ones: the leaderboard evaluates them all.)
    test_texts = sorted({c.text for c in bundle.captions if c.split == "test"})
    pending: list[str] = []
    if defer_captions:
        if states is None:
            states = build_text_cache(encoder, [], text_dir, cfg.trainable_layers, cfg.text_prefix, progress=False)  # empty, appended to later
        pending = [t for t in test_texts if t not in states]
    else:
        states = build_text_cache(encoder, test_texts, text_dir, cfg.trainable_layers, cfg.text_prefix, progress=progress)
    bench = Workbench(bundle, features, encoder, states, backbone.identity(), backbone, Path(workspace), map_items=list(gallery))
    bench.complete = False
    bench.pending_texts = pending
    return bench


def default_train_config(world: World) -> dict:
    """Training settings for new runs in this world: those of a shipped model (same backbones)."""
    first = world.model_list()[0]
    cfg = dict(first.trained.meta.get("train_config", {}))
    return cfg


def stamp(obj: dict, model: ModelEntry) -> dict:
    return {**obj, "checkpoint_sha256": model.checkpoint_hash, "model": model.name}


def json_dump(path: Path, obj) -> None:
    from ccr_core.io import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
