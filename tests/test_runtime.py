"""ONNX Runtime for frozen backbones (ccr_core/backbones/runtime.py): the same numbers as PyTorch,
checked before use, rebuilt when the file is altered, and PyTorch whenever it cannot be trusted."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ccr_core.backbones import runtime

pytest.importorskip("onnxruntime")  # a pinned requirement: present wherever `make test` installed it


@pytest.fixture
def onnx_dir(tmp_path, monkeypatch):
    """A private ONNX folder, so these tests neither reuse nor damage the cache's exports."""
    folder = tmp_path / "onnx"
    monkeypatch.setattr(runtime, "onnx_dir", lambda: folder)
    monkeypatch.setattr(runtime, "MIN_BATCH", 1)  # these tests use small batches
    monkeypatch.delenv(runtime.RUNTIME_ENV, raising=False)
    return folder


@pytest.fixture(scope="module")
def lite0():
    from ccr_core.backbones.vision import EfficientNetLite0

    return EfficientNetLite0()


@pytest.fixture(scope="module")
def e5():
    from ccr_core.backbones.text import load_text_encoder

    return load_text_encoder("e5-small").eval()


def _images(n=3):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 224, 224, generator=g) * 2 - 1  # the normalised range of (x - 0.5) / 0.5


def _fresh(model):
    model._apply(lambda t: t)  # drops the cached sessions, as .to() does
    return model


def test_lite0_runs_in_onnx_with_pytorchs_features(lite0, onnx_dir):
    x = _images()
    got = _fresh(lite0).infer(x)
    assert lite0._onnx[1] is not None, "the ONNX session was not used"
    with torch.inference_mode():
        want = lite0(x)
    assert got.shape == (3, 1280) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4) and want.abs().max() > 0.5
    record = json.loads(next(onnx_dir.glob("efficientnet-lite0-*.json")).read_text())
    assert record["source"]["weights_sha256"] == lite0.weights_hash() and record["opset"] == runtime.OPSET


@pytest.mark.parametrize("first_block", [14, 5])
def test_lite0_feature_maps_below_a_fine_tuned_top_run_in_onnx_with_pytorchs_numbers(lite0, onnx_dir, first_block):
    """The frozen bottom under trainable_image_blocks (a fine-tuned model's gallery and feature-map cache) in ONNX
    Runtime: the maps PyTorch computes, from an export of its own keyed by the block."""
    from ccr_core.backbones.vision import _stem_and_blocks, efficientnet_feature_map

    x = _images()
    got = efficientnet_feature_map(_fresh(lite0), x, first_block)
    assert lite0._bottom_sessions[(first_block, torch.get_num_threads())] is not None, "the ONNX session was not used"
    with torch.no_grad():
        want = _stem_and_blocks(lite0.net, x, first_block)  # PyTorch
    assert got.shape == want.shape and got.shape[0] == 3 and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4) and want.abs().max() > 0.5
    record = json.loads(next(onnx_dir.glob(f"efficientnet-lite0-*-below{first_block}.json")).read_text())
    assert record["source"]["first_block"] == first_block


@pytest.mark.parametrize("skip_top", [0, 2])
def test_e5_states_in_onnx_equal_pytorchs(e5, onnx_dir, skip_top, monkeypatch):
    texts = ["query: Ein Hund rennt durch den Schnee .", "query: 一个小女孩在爬楼梯", "query: a man",
             "query: Muž v modrém tričku sedí na lavičce a čte noviny v parku ."]  # lengths differ: padding
    batch = e5.tokenize(texts)
    got = _fresh(e5).infer_states(batch["input_ids"], batch["attention_mask"], skip_top=skip_top)
    layers = 12 - skip_top
    assert e5._onnx_sessions[(layers, torch.get_num_threads())] is not None
    monkeypatch.setenv(runtime.RUNTIME_ENV, "torch")
    want = e5.infer_states(batch["input_ids"], batch["attention_mask"], skip_top=skip_top)
    mask = batch["attention_mask"].bool()[..., None]
    assert got.shape == want.shape == (4, batch["input_ids"].shape[1], 384)
    assert float(((got - want).abs() * mask).max()) < 1e-4
    assert float(want.abs().max()) > 1.0  # real states
    if skip_top == 0:  # the full stack is the model's own forward, what the caches were built with
        with torch.no_grad():
            hidden, _ = e5(batch["input_ids"], batch["attention_mask"])
        assert torch.equal(want, hidden)


def test_an_altered_onnx_file_is_rebuilt_not_used(lite0, onnx_dir):
    _fresh(lite0).infer(_images(1))
    path = next(onnx_dir.glob("efficientnet-lite0-*.onnx"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    path.write_bytes(bytes(data))
    x = _images(2)
    got = _fresh(lite0).infer(x)
    assert lite0._onnx[1] is not None
    with torch.inference_mode():
        assert torch.allclose(got, lite0(x), atol=1e-4, rtol=1e-4)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] != __import__("hashlib").sha256(bytes(data)).hexdigest()  # a new export


def test_a_session_that_fails_its_probe_falls_back_to_pytorch(lite0, onnx_dir, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "PROBE_TOLERANCE", -1.0)  # no session can pass: the check must refuse it
    monkeypatch.setattr(runtime, "_told", set())
    x = _images(2)
    got = _fresh(lite0).infer(x)
    assert lite0._onnx[1] is None
    with torch.inference_mode():
        assert torch.equal(got, lite0(x))  # PyTorch's numbers exactly
    err = capsys.readouterr().err
    assert "efficientnet-lite0: running in PyTorch" in err and "differs from PyTorch" in err
    monkeypatch.setenv(runtime.RUNTIME_ENV, "onnx")  # required: the same failure is an error
    with pytest.raises(runtime.RuntimeUnavailable, match="differs from PyTorch"):
        _fresh(lite0).infer(x)


def test_without_onnxruntime_or_when_turned_off_pytorch_runs(lite0, e5, onnx_dir, monkeypatch):
    x = _images(1)
    monkeypatch.setenv(runtime.RUNTIME_ENV, "torch")
    assert _fresh(lite0)._onnx_session() is None and not e5.prepare_runtime()
    monkeypatch.setenv(runtime.RUNTIME_ENV, "auto")
    monkeypatch.setattr(runtime, "version", lambda: None)  # onnxruntime not installed
    monkeypatch.setattr(runtime, "_told", set())
    with torch.inference_mode():
        assert torch.equal(_fresh(lite0).infer(x), lite0(x))
    assert not list(onnx_dir.glob("*.onnx"))  # nothing exported for a runtime that is absent
    monkeypatch.setenv(runtime.RUNTIME_ENV, "fast")
    with pytest.raises(ValueError, match="CCR_RUNTIME"):
        runtime.mode()


def test_trainable_or_training_encoders_stay_in_pytorch(e5, onnx_dir):
    from ccr_core.backbones.text import load_text_encoder

    batch = e5.tokenize(["query: a dog"])
    trainable = load_text_encoder("e5-small", trainable_layers=1).eval()
    assert not trainable._onnx_eligible(batch["input_ids"])
    e5.train()
    try:
        assert not e5._onnx_eligible(batch["input_ids"])
    finally:
        e5.eval()
    assert e5._onnx_eligible(batch["input_ids"])
    tiny = load_text_encoder("tiny-text").eval()  # not a Hugging Face checkpoint: PyTorch
    assert not tiny._onnx_eligible(tiny.tokenize(["a"])["input_ids"])


def test_text_cache_states_match_the_pytorch_built_ones(e5, onnx_dir, tmp_path, monkeypatch):
    """A cache built through ONNX holds the float16 states a PyTorch build holds (to float16 rounding):
    caches built before the runtime existed stay valid, and are not rebuilt (same identity)."""
    from ccr_core.training.text_cache import build_text_cache

    texts = ["Ein Hund im Schnee .", "两只狗在草地上玩耍", "A girl in a pink dress climbs the stairs .", "x"]
    fast = build_text_cache(_fresh(e5), texts, tmp_path / "onnx-cache", progress=False)
    monkeypatch.setenv(runtime.RUNTIME_ENV, "torch")
    slow = build_text_cache(e5, texts, tmp_path / "torch-cache", progress=False)
    assert fast.meta["identity"] == slow.meta["identity"]
    a, b = np.asarray(fast.states, dtype=np.float32), np.asarray(slow.states, dtype=np.float32)
    assert a.shape == b.shape and np.abs(a - b).max() < 5e-3  # float16 steps near |x| ~ 1-10


def test_a_single_query_runs_in_pytorch(lite0, e5, onnx_dir, monkeypatch):
    """Below MIN_BATCH (one typed query, one uploaded picture) no session is made: no gain, and the
    dashboard's one-thread query path would need a session of its own."""
    monkeypatch.setattr(runtime, "MIN_BATCH", 8)
    x = _images(1)
    with torch.inference_mode():
        assert torch.equal(_fresh(lite0).infer(x), lite0(x))
    batch = _fresh(e5).tokenize(["query: un perro corriendo en la nieve"])
    e5.infer_states(batch["input_ids"], batch["attention_mask"])
    assert getattr(lite0, "_onnx", None) is None and not e5.__dict__.get("_onnx_sessions")
    assert not list(onnx_dir.glob("*.onnx"))


def test_prepare_models_covers_the_bottom_of_every_shipped_fine_tuned_image_top(lite0):
    """`ccr prepare-models` exports the frozen bottom under each shipped fine-tuned image top (the flickr8k-ml *-ft
    models train the last 2 of Lite0's 16 blocks), so a fresh workspace's first open does not export it."""
    from ccr_core.cli import shipped_first_blocks
    from ccr_core.io import read_json
    from ccr_core.paths import CHECKPOINTS_DIR

    tuned = {int(read_json(c).get("visual_trainable_blocks") or 0) for c in CHECKPOINTS_DIR.glob("*/*/config.json")} - {0}
    assert tuned, "no shipped checkpoint fine-tunes its image top"
    assert shipped_first_blocks(lite0) == sorted(len(lite0.net._blocks) - t for t in tuned)
