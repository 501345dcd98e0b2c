"""The faster EfficientNet-Lite0 extraction path (channels_last weights and inputs, inference mode,
the next batch decoded in a worker thread) gives the features of the plain NCHW eager forward."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def effnet():
    from ccr_core.backbones.vision import EfficientNetLite0

    return EfficientNetLite0()


def _photos(folder, n=11):
    """JPEG photos of varied sizes and content (noise, gradients), as real files are."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = 160 + 37 * i, 300 - 11 * i
        grad = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
        pixels = np.clip(grad * (i % 3 + 1) / 3 + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"p{i}.jpg"
        Image.fromarray(pixels).save(path, quality=85)
        paths.append(path)
    return paths


def _reference(effnet, paths) -> np.ndarray:
    """The plain path: NCHW weights and inputs, eager, no worker thread."""
    import copy

    from ccr_core.backbones.vision import load_rgb

    plain = copy.deepcopy(effnet.net).to(memory_format=torch.contiguous_format)
    x = torch.stack([effnet.preprocess(load_rgb(p)) for p in paths]).contiguous()  # (B, 3, 224, 224)
    with torch.no_grad():
        return plain.extract_features(x).mean(dim=(2, 3)).numpy()  # (B, 1280)


def test_channels_last_forward_equals_the_plain_one(effnet, tmp_path):
    from ccr_core.backbones.vision import load_rgb

    paths = _photos(tmp_path / "photos", 5)
    x = torch.stack([effnet.preprocess(load_rgb(p)) for p in paths])
    with torch.no_grad():
        fast = effnet(x).numpy()
    reference = _reference(effnet, paths)
    assert fast.shape == (5, 1280) and np.allclose(fast, reference, atol=1e-4, rtol=1e-4)
    assert np.abs(reference).max() > 0.5  # real activations, not zeros


def test_prefetched_extraction_equals_the_plain_path(effnet, tmp_path):
    from ccr_core.data.bundle import Caption, Item, Manifest, load_bundle, save_bundle
    from ccr_core.features import extract_features

    paths = _photos(tmp_path / "bundle" / "images")
    items = [Item(p.stem, p.name, "test") for p in paths]
    captions = [Caption(f"{it.id}#en#0", it.id, "en", f"photo {it.id}", "human", "test") for it in items]
    save_bundle(tmp_path / "bundle", Manifest("photos", languages=["en"]), items, captions)
    bundle = load_bundle(tmp_path / "bundle")
    cache = extract_features(bundle, effnet, tmp_path / "cache", batch_size=4, progress=False)  # 3 batches, 2 prefetched
    reference = _reference(effnet, [bundle.image_path(it) for it in bundle.items])
    assert np.allclose(np.asarray(cache.features), reference, atol=1e-4, rtol=1e-4)


def test_preprocess_equals_the_torch_broadcast_it_replaced(effnet, tmp_path):
    """Normalising in NumPy gives the very numbers of the former torch broadcast over a permuted tensor."""
    from benchmarks.bench_vision import _old_preprocess
    from ccr_core.backbones.vision import TinyVisual, load_rgb

    for backbone in (effnet, TinyVisual()):
        for path in _photos(tmp_path / "p", 6):
            image = load_rgb(path)
            new, old = backbone.preprocess(image), _old_preprocess(backbone, image)
            assert new.shape == old.shape == (3, backbone.image_size, backbone.image_size)
            assert torch.equal(new, old)
