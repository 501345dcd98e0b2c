"""The workbench of a run: a bundle with its visual feature cache, text-state cache and the frozen
encoders behind them -- everything training, evaluation and search need besides the method -- and
the same workbench over the bundle with injected training noise (:func:`with_noise`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ccr_core.backbones.text import load_text_encoder
from ccr_core.backbones.vision import load_visual_backbone
from ccr_core.data.bundle import Bundle, load_bundle, resolve_bundle
from ccr_core.data.noise import noisy_bundle
from ccr_core.features import TEST_SPLIT_SUFFIX, FeatureCache, cache_dir_for, extract_features
from ccr_core.training.config import TrainConfig
from ccr_core.training.data import needed_captions, training_examples
from ccr_core.training.image_cache import ImageTop, build_feature_maps, check_fine_tunable, feature_map_dir, first_trained_block
from ccr_core.training.text_cache import TextTop, build_text_cache, cache_identity, text_cache_dir


@dataclass
class Workbench:
    """Everything a run needs besides the method: bundle, caches and encoders."""

    bundle: Bundle
    features: FeatureCache
    text_encoder: object
    text_states: object
    visual_identity: dict
    visual_backbone: object = None  # the loaded frozen visual backbone (needed to fine-tune its top blocks)
    workspace: Path | None = None  # where lazily built caches (feature maps) go
    maps: dict = field(default_factory=dict)  # first fine-tuned block -> FeatureMapCache, built on first use
    map_items: list | None = None  # only these items' maps when the full cache is absent (a dashboard's test gallery)

    @property
    def text_identity(self) -> dict:
        return self.text_encoder.identity()

    def with_bundle(self, bundle: Bundle) -> "Workbench":
        """The same caches over another version of the bundle (e.g. with injected noise: same items)."""
        return replace(self, bundle=bundle)

    def feature_maps(self, trainable_blocks: int, progress: bool = False):
        """The cached feature maps below the last ``trainable_blocks`` visual blocks (computed once per workspace)."""
        if self.visual_backbone is None or self.workspace is None:
            raise ValueError("this workbench was made without its visual backbone and workspace; build it with prepare_workbench")
        first = first_trained_block(self.visual_backbone, trainable_blocks)
        if first not in self.maps:
            folder = feature_map_dir(self.workspace, self.bundle.name, self.visual_backbone, first)
            bundle, flips = self.bundle, True
            if self.map_items is not None and not (folder / "meta.json").exists():
                # a dashboard serving the test split: the gallery's maps alone, unmirrored (a minute, not the whole
                # bundle's ten), in a cache of their own, so nothing of the full one is replaced
                bundle, flips = Bundle(self.bundle.root, self.bundle.manifest, list(self.map_items), [], {}), False
                folder = folder.with_name(folder.name + TEST_SPLIT_SUFFIX)
            self.maps[first] = build_feature_maps(bundle, self.visual_backbone, first, folder, progress=progress, flips=flips)
        return self.maps[first]

    def drop_test_split_maps(self) -> None:
        """Forget the test gallery's own maps (``map_items``) once the full caches exist: they would not serve training."""
        self.map_items = None
        self.maps = {k: m for k, m in self.maps.items() if not m.root.name.endswith(TEST_SPLIT_SUFFIX)}


def prepare_workbench(cfg: TrainConfig, workspace: Path, bundle: Bundle | None = None, progress: bool = True,
                      extra_texts=(), splits: tuple[str, ...] = ("train", "val", "test"), backbone=None, encoder=None) -> Workbench:
    """Load the bundle and make sure the feature and text-state caches exist (computing them once).

    Text states are computed for the captions training can use (``cfg``'s languages and sources)
    and for every validation and test caption of ``splits``; a dashboard passes ``("val", "test")``.
    ``backbone`` / ``encoder``: already loaded ones of ``cfg``'s backbones, used instead of loading
    them again (the dashboard's background pass; e5 alone is ~0.5 GB and seconds to load).
    """
    if bundle is None:
        bundle = load_bundle(resolve_bundle(cfg.data))
    backbone = backbone if backbone is not None else load_visual_backbone(cfg.visual_backbone)
    if cfg.trainable_image_blocks:
        check_fine_tunable(bundle, backbone, cfg.trainable_image_blocks)  # before any cache is computed
    features = extract_features(bundle, backbone, cache_dir_for(workspace, bundle, backbone), progress=progress)
    encoder = encoder if encoder is not None else load_text_encoder(cfg.text_backbone)
    identity = cache_identity(encoder, cfg.trainable_layers, cfg.text_prefix)
    texts = [c.text for c in bundle.captions if c.split != "train" and c.split in splits] + list(extra_texts)
    if "train" in splits:
        text_of = {c.id: c.text for c in bundle.captions}
        examples = training_examples(bundle, "train", cfg.target_langs, cfg.target_sources)
        texts += [text_of[cid] for cid in needed_captions(examples)]
    states = build_text_cache(encoder, texts, text_cache_dir(workspace, bundle.name, identity), cfg.trainable_layers, cfg.text_prefix, progress=progress)
    # a workbench without the training split only evaluates: a fine-tuned top's maps of the test images suffice
    serving = None if "train" in splits else list(bundle.items_in("test", "image"))
    bench = Workbench(bundle, features, encoder, states, backbone.identity(), backbone, Path(workspace), map_items=serving)
    if cfg.trainable_image_blocks > 0:
        bench.feature_maps(cfg.trainable_image_blocks, progress=progress)
    return bench


def with_noise(clean: Workbench, rate: float, seed: int = 0) -> Workbench:
    """The workbench a noise-trained run saw: ``clean``'s caches (and encoders, feature maps) over its
    bundle with noise injected into a ``rate`` share of the training pairs at ``seed``
    (:func:`ccr_core.data.noise.noisy_bundle`). ``rate`` 0 returns ``clean`` itself."""
    if not rate:
        return clean
    return clean.with_bundle(noisy_bundle(clean.bundle, rate, seed))


def attach_backbone_tops(method, bench: Workbench, text_layers: int, image_blocks: int) -> None:
    """Give ``method`` the trainable tops of ``bench``'s backbones, for training and for inference alike: the
    top ``text_layers`` layers of its text encoder (``method.text_top``, over the text-state cache) and the
    top ``image_blocks`` blocks of its visual backbone (``method.visual_top``, over the feature maps below
    them); none when 0. Raises ValueError when the blocks cannot be fine-tuned on this workbench."""
    if text_layers > 0:
        method.text_top = TextTop(bench.text_encoder, text_layers)
    if image_blocks > 0:
        if getattr(bench, "visual_backbone", None) is None:
            raise ValueError(f"{image_blocks} fine-tuned image blocks, but the workbench has no visual backbone to run below them")
        method.visual_top = ImageTop(bench.visual_backbone, image_blocks)
