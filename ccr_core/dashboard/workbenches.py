"""The workbenches a dashboard serves from: on a warm workspace the complete caches; on a fresh one
only what search needs (features of the test gallery, text states of the test captions), so the page
opens in seconds and the background work (``background``) adds the training pairs later.

The complete path is ``training.train.prepare_workbench``; this module decides whether the complete
caches already exist and, when they do not, builds the test split's part alone."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ccr_core.backbones.text import load_text_encoder
from ccr_core.backbones.vision import load_visual_backbone
from ccr_core.data.bundle import Bundle, Caption, Item
from ccr_core.data.noise import inject_noise
from ccr_core.features import TEST_SPLIT_SUFFIX, FeatureCacheError, cache_dir_for, extract_features, load_features
from ccr_core.training.data import needed_captions, training_examples
from ccr_core.training.text_cache import TextCacheError, build_text_cache, cache_identity, load_text_cache, text_cache_dir
from ccr_core.training.train import Workbench


@dataclass
class ServedWorkbench:
    """A workbench and what it still lacks."""

    bench: Workbench
    complete: bool  # the full caches (every image, the training captions) are loaded
    pending_texts: list[str] = field(default_factory=list)  # test captions whose text states are still to encode


def prepare_test_workbench(cfg, workspace: Path, bundle: Bundle, gallery: list[Item], captions: list[Caption], progress: bool = False,
                           defer_captions: bool = False) -> ServedWorkbench:
    """The complete caches when they exist, else features of the test gallery and text states of the
    test captions only (caches of their own, so nothing of the full ones is replaced). With
    ``defer_captions`` the test captions' missing text states are not encoded here either: they are
    returned as ``pending_texts`` for the background pass."""
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
        return ServedWorkbench(Workbench(bundle, full_features, encoder, states, backbone.identity(), backbone, Path(workspace),
                                         map_items=list(gallery)), complete=True)
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
    return ServedWorkbench(bench, complete=False, pending_texts=pending)


def noisy_bench(bench: Workbench, noise: float, seed: int) -> Workbench:
    """The workbench a noise-trained model saw: the same caches over the bundle with injected noise."""
    captions, labels = inject_noise(bench.bundle, noise, seed=seed)
    bundle = Bundle(bench.bundle.root, bench.bundle.manifest, bench.bundle.items, captions, labels)
    return bench.with_bundle(bundle)
