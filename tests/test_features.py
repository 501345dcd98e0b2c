"""Feature cache: extraction, memory-mapped loading, identity checks, resume, tampering, import."""
import json

import numpy as np
import pytest

import ccr_core.features as features_mod
from ccr_core.backbones.vision import TinyVisual
from ccr_core.features import FeatureCacheError, extract_features, import_precomputed, load_features


def test_extract_and_load(tiny_bundle, tmp_path):
    backbone = TinyVisual()
    cache = extract_features(tiny_bundle, backbone, tmp_path / "cache", batch_size=4, progress=False)
    assert cache.features.shape == (12, 64) and isinstance(cache.features, np.memmap)
    assert cache.ids == [it.id for it in tiny_bundle.items]
    # Rows equal a direct forward pass of the same images.
    direct = backbone.encode_pil([__import__("PIL.Image").Image.open(tiny_bundle.image_path("img3"))]).numpy()
    np.testing.assert_allclose(cache.rows(["img3"]), direct, atol=1e-5)
    # A video's row is the mean of its frame features.
    frames = cache.video_frames("vid1")
    assert frames.shape == (3, 64)
    np.testing.assert_allclose(cache.rows(["vid1"])[0], frames.mean(0), atol=1e-6)
    # Asking again returns the existing cache without recomputing.
    again = extract_features(tiny_bundle, backbone, tmp_path / "cache", progress=False)
    assert again.meta == cache.meta


def test_wrong_backbone_is_refused(tiny_bundle, tmp_path):
    extract_features(tiny_bundle, TinyVisual(seed=0), tmp_path / "c", progress=False)
    with pytest.raises(FeatureCacheError, match="differs in: weights_sha256"):
        load_features(tmp_path / "c", TinyVisual(seed=1).identity())
    with pytest.raises(FeatureCacheError, match="differs in: dim"):
        extract_features(tiny_bundle, TinyVisual(dim=32), tmp_path / "c", progress=False)


def test_interrupted_extraction_resumes(tiny_bundle, tmp_path, monkeypatch):
    backbone = TinyVisual()
    reference = extract_features(tiny_bundle, backbone, tmp_path / "ref", batch_size=2, progress=False)
    real_encode, calls = features_mod._encode_paths, []

    def flaky(bb, paths):
        calls.append(len(paths))
        if len(calls) == 6:  # 3 frame batches, then 2 image batches, then the kill
            raise KeyboardInterrupt("simulated kill")
        return real_encode(bb, paths)

    monkeypatch.setattr(features_mod, "_encode_paths", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract_features(tiny_bundle, backbone, tmp_path / "run", batch_size=2, progress=False)
    with pytest.raises(FeatureCacheError, match="interrupted"):
        load_features(tmp_path / "run")
    done_before = json.loads((tmp_path / "run" / "progress.json").read_text())["done_items"]
    assert done_before > 0
    monkeypatch.setattr(features_mod, "_encode_paths", real_encode)
    calls.clear()
    resumed_rows = []
    monkeypatch.setattr(features_mod, "_encode_paths", lambda bb, p: (resumed_rows.append(len(p)), real_encode(bb, p))[1])
    cache = extract_features(tiny_bundle, backbone, tmp_path / "run", batch_size=2, progress=False)
    # Only the images not done before the kill were encoded again.
    n_images = sum(it.kind == "image" for it in tiny_bundle.items)
    assert sum(resumed_rows) == n_images - done_before
    np.testing.assert_allclose(np.asarray(cache.features), np.asarray(reference.features), atol=1e-6)
    assert not (tmp_path / "run" / "progress.json").exists()


def test_tampered_or_truncated_cache_is_refused(tiny_bundle, tmp_path):
    extract_features(tiny_bundle, TinyVisual(), tmp_path / "c", progress=False)
    path = tmp_path / "c" / "features.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FeatureCacheError, match="SHA-256 does not match"):
        load_features(tmp_path / "c")
    path.write_bytes(bytes(data[:-100]))
    with pytest.raises(FeatureCacheError, match="SHA-256 does not match"):
        load_features(tmp_path / "c")


def test_pickled_array_is_refused(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FeatureCacheError, match="not a plain NumPy array"):
        import_precomputed(bad, ["x"], tmp_path / "out")


def test_import_precomputed_reorders_to_bundle(tiny_bundle, tmp_path):
    ids = [it.id for it in tiny_bundle.items][::-1]
    matrix = np.arange(len(ids) * 5, dtype=np.float32).reshape(len(ids), 5)
    np.save(tmp_path / "m.npy", matrix)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    cache = import_precomputed(tmp_path / "m.npy", tmp_path / "ids.txt", tmp_path / "out", bundle=tiny_bundle)
    assert cache.ids == [it.id for it in tiny_bundle.items]
    np.testing.assert_array_equal(cache.rows([ids[0]]), matrix[:1])
    with pytest.raises(FeatureCacheError, match="3 rows but 2 ids"):
        np.save(tmp_path / "s.npy", matrix[:3])
        import_precomputed(tmp_path / "s.npy", ids[:2], tmp_path / "o2")
    with pytest.raises(FeatureCacheError, match="no row for 1 bundle items"):
        np.save(tmp_path / "p.npy", matrix[:-1])
        import_precomputed(tmp_path / "p.npy", ids[:-1], tmp_path / "o3", bundle=tiny_bundle)
