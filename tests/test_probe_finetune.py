"""The backbone fine-tuning probe (python -m ccr_core.probe_finetune): its cached maps reproduce the frozen
backbone, it trains exactly the parts a setting names, and it writes its results table."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccr_core import probe_finetune as probe
from tests.conftest import make_tiny_bundle


@pytest.fixture(scope="module")
def lite0():
    from ccr_core.backbones.vision import EfficientNetLite0

    return EfficientNetLite0()


def test_cached_maps_through_a_frozen_top_give_the_backbones_pooled_features(tmp_path, lite0):
    from ccr_core.backbones.vision import load_rgb
    from ccr_core.data.bundle import load_bundle

    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", n_images=5))
    items = [it for it in bundle.items if it.kind == "image"]
    maps = probe.feature_maps(bundle, lite0, items, tmp_path / "cache", progress=False)
    assert maps.shape == (2, 5, 192, 7, 7)
    top = probe.ImageTop(lite0.net, 17).eval()
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(maps[0], dtype=np.float32))
        for block in list(top.frozen) + list(top.trained):
            x = block(x)
        pooled = F.relu6(top.bn(top.head(x))).mean(dim=(2, 3))
        expected = lite0.encode_pil([load_rgb(bundle.image_path(it)) for it in items])
    # float16 maps: agreement to a few parts in a thousand of the feature scale
    assert torch.allclose(pooled, expected, atol=2e-2 * float(expected.abs().max()))
    # the cache is reused (same file), and rebuilt for another item list
    again = probe.feature_maps(bundle, lite0, items, tmp_path / "cache", progress=False)
    assert again.filename == maps.filename
    assert probe.feature_maps(bundle, lite0, items[:3], tmp_path / "cache", progress=False).shape[1] == 3


def test_image_top_trains_exactly_the_named_blocks(lite0):
    def trainable(top):
        return {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith(("frozen", "trained")) else "")
                for n, p in top.named_parameters() if p.requires_grad}

    assert trainable(probe.ImageTop(lite0.net, 17)) == {"map"}
    assert trainable(probe.ImageTop(lite0.net, 16)) == {"map", "head", "bn"}
    assert trainable(probe.ImageTop(lite0.net, 15)) == {"map", "head", "bn", "trained.0"}
    assert trainable(probe.ImageTop(lite0.net, 12)) == {"map", "head", "bn", "trained.0", "trained.1", "trained.2", "trained.3"}
    assert len(probe.ImageTop(lite0.net, 14).frozen) == 2
    with pytest.raises(ValueError, match="12..17"):
        probe.ImageTop(lite0.net, 11)
    # BatchNorm keeps ImageNet statistics in training mode
    top = probe.ImageTop(lite0.net, 15).train()
    assert not top.bn.training and top.map.training
    # the original network is untouched (the top is a copy)
    assert not any(p.requires_grad for p in lite0.net.parameters())


def test_probe_run_trains_and_writes_its_table(tmp_path, monkeypatch, lite0):
    root = make_tiny_bundle(tmp_path / "b", n_images=18, langs=("en", "zh"), with_mt=True)
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    out = tmp_path / "probes" / "tiny-finetune.json"
    args = ["--data", str(root), "--epochs", "2", "--batch-size", "4", "--text-backbone", "tiny-text", "--out", str(out)]
    assert probe.main(args + ["--image-from", "15", "--text-layers", "1"]) == 0
    (record,) = json.loads(out.read_text())
    expected_params = sum(p.numel() for p in list(lite0.net._blocks[15].parameters()) + list(lite0.net._conv_head.parameters())
                          + list(lite0.net._bn1.parameters()))
    assert record["trainable_backbone_params"] > expected_params  # + the tiny text layer
    assert record["setting"] == "image blocks 15-15 + head; text top 1 e5 layer(s)"
    assert [h["epoch"] for h in record["history"]] == [1, 2] and 1 <= record["best_epoch"] <= 2
    assert set(record["test"]) == {"en", "zh"}
    for report in record["test"].values():
        assert 0.0 <= report["SumR"] <= 600.0 and report["n_images"] == 6
    table = (out.parent / "README.md").read_text()
    assert "| image blocks 15-15 + head; text top 1 e5 layer(s) |" in table
    # a second setting is added; rerunning a setting replaces its row
    assert probe.main(args + ["--image-from", "17"]) == 0
    assert probe.main(args + ["--image-from", "17"]) == 0
    records = json.loads(out.read_text())
    assert [r["setting"] for r in records] == ["image frozen; text frozen", "image blocks 15-15 + head; text top 1 e5 layer(s)"]
    assert records[0]["trainable_backbone_params"] == 0
    assert "| image frozen; text frozen |" in (out.parent / "README.md").read_text()


def test_probe_refuses_bad_settings_clearly(tmp_path, monkeypatch, capsys):
    root = make_tiny_bundle(tmp_path / "b", n_images=6, langs=("en", "zh"), with_mt=True)
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    out = tmp_path / "p.json"
    base = ["--data", str(root), "--text-backbone", "tiny-text", "--out", str(out)]
    assert probe.main(base + ["--batch-size", "4", "--image-from", "11"]) == 2
    assert "12..17" in capsys.readouterr().out
    assert probe.main(base + ["--batch-size", "64"]) == 2  # two training images: not one batch
    assert "fewer than one batch" in capsys.readouterr().out
    german = make_tiny_bundle(tmp_path / "de", n_images=6, langs=("en", "de"), with_mt=True)
    assert probe.main(["--data", str(german), "--text-backbone", "tiny-text", "--out", str(out), "--batch-size", "2"]) == 2
    assert "no Chinese validation captions" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        probe.main(base + ["--epochs", "0"])
    assert not out.exists()
