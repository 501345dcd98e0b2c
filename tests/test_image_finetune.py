"""Fine-tuning the last EfficientNet-Lite0 blocks inside the trainer (``trainable_image_blocks``): cached maps
through a frozen top reproduce the backbone's pooled features, only the named blocks learn, BatchNorm keeps
ImageNet's statistics, and a tiny run trains, saves, loads, evaluates and serves like any model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ccr_core.data.bundle import load_bundle
from ccr_core.training.image_cache import FeatureMapCacheError, ImageTop, build_feature_maps, load_feature_maps
from ccr_core.training.train import TrainConfig, prepare_workbench, train
from conftest import make_tiny_bundle

SMALL = dict(text_backbone="tiny-text", visual_backbone="efficientnet-lite0", batch_size=4, target_langs=["zh"])


def asymmetric_pictures(folder) -> None:
    """Repaint the tiny bundle's flat squares (whose mirror images are themselves) as left-to-right
    gradients with a bar near the left edge, each in its own colour and size, as photos are."""
    from PIL import Image

    for k, path in enumerate(sorted((folder / "images").glob("*.png"))):
        with Image.open(path) as im:
            w, h = im.size
            colour = np.array(im.convert("RGB"), dtype=np.float32)[0, 0]
        ramp = np.linspace(0.2, 1.0, w, dtype=np.float32)[None, :, None]  # (1, W, 1)
        pixels = np.broadcast_to(colour * ramp, (h, w, 3)).copy()
        pixels[:, w // 8 : w // 8 + 3 + k % 4] = 255.0
        Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    folder = make_tiny_bundle(root / "bundle", n_images=18, langs=("en", "zh"), with_mt=True)
    asymmetric_pictures(folder)
    bundle = load_bundle(folder)
    cfg = TrainConfig(method="floor", data=str(bundle.root), trainable_image_blocks=4, **SMALL)
    bench = prepare_workbench(cfg, root / "ws", bundle, progress=False)
    return root, bundle, bench


def test_cached_maps_through_the_frozen_top_give_the_backbones_pooled_features(world):
    root, bundle, bench = world
    maps = bench.feature_maps(4)
    assert maps.first_block == 12 and maps.maps.shape == (2, 18, 192, 7, 7) and maps.maps.dtype == np.float16
    ids = [it.id for it in bundle.items]
    top = ImageTop(bench.visual_backbone, 4).eval()
    with torch.no_grad():
        pooled = top(torch.from_numpy(maps.rows(ids)))  # (18, 1280)
        mirrored = top(torch.from_numpy(maps.rows(ids, flips=True)))
    expected = torch.from_numpy(np.asarray(bench.features.rows(ids)))  # what feature extraction stored
    scale = float(expected.abs().max())
    assert torch.allclose(pooled, expected, atol=2e-2 * scale)  # float16 maps: a few parts in a thousand
    # the mirror map is the mirrored picture's, not the picture's
    from ccr_core.backbones.vision import load_rgb

    with torch.no_grad():
        flipped = bench.visual_backbone(torch.stack([bench.visual_backbone.preprocess(load_rgb(bundle.image_path(it))) for it in bundle.items]).flip(3))
    assert torch.allclose(mirrored, flipped, atol=2e-2 * scale)
    assert not torch.allclose(mirrored, pooled, atol=2e-1 * scale)  # and the mirror is a different picture
    # the cache is reused as it is, and refused once altered
    again = build_feature_maps(bundle, bench.visual_backbone, 12, maps.root, progress=False)
    assert again.meta == maps.meta
    data = bytearray((maps.root / "maps.npy").read_bytes())
    data[-1] ^= 0xFF
    copy = root / "altered"
    copy.mkdir()
    (copy / "maps.npy").write_bytes(bytes(data))
    (copy / "meta.json").write_text(json.dumps(maps.meta))
    with pytest.raises(FeatureMapCacheError, match="SHA-256"):
        load_feature_maps(copy)


def test_image_top_trains_only_the_named_blocks_with_frozen_batchnorm_statistics(world):
    _, bundle, bench = world
    backbone = bench.visual_backbone
    top = ImageTop(backbone, 2)
    assert top.first_block == 14 and len(top.blocks) == 2
    for k, block in enumerate(top.blocks):  # copies of blocks 14 and 15, not the originals
        ref = backbone.net._blocks[14 + k]
        assert block is not ref and all(torch.equal(a, b) for a, b in zip(block.state_dict().values(), ref.state_dict().values()))
    top.train()
    batchnorms = [m for m in top.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms) and top.blocks[0].training
    stats = {n: b.clone() for n, b in top.named_buffers()}
    # one training step of the floor with this top, from a real batch of cached maps
    from ccr_core.methods import build_method
    from ccr_core.training.data import BatchSource, training_examples

    method = build_method("floor", None, text_dim=32, visual_dim=1280, languages=["en", "zh"])
    method.visual_top = top
    maps = bench.feature_maps(2)
    source = BatchSource(training_examples(bundle, "train", ["zh"]), bench.features, bench.text_states, bundle, maps)
    batch = source.make_batch(source.epoch_batches(4, seed=0)[0], seed=0)
    assert "visual" not in batch and batch["visual_maps"].shape == (4, 192, 7, 7)
    method(batch)["loss"].backward()
    with_grad = {n.split(".")[0] + "." + n.split(".")[1] for n, p in method.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {"visual_top.blocks", "visual_top.head", "visual_top.bn", "text_map.weight", "text_map.bias",
                         "visual_map.weight", "visual_map.bias"}
    assert all(torch.equal(stats[n], b) for n, b in top.named_buffers())  # running statistics untouched
    assert not any(p.requires_grad for p in backbone.parameters())  # the frozen backbone stays frozen
    assert {id(p) for p in method.backbone_parameters()} == {id(p) for p in top.parameters()}
    # flips are drawn per image in training, never at evaluation
    draws = {tuple(np.asarray(source.make_batch([0], seed=s)["visual_maps"][0, 0, 0, :2]).round(3).tolist()) for s in range(12)}
    assert len(draws) == 2
    fixed = {tuple(np.asarray(source.make_batch([0], seed=s, flip=False)["visual_maps"][0, 0, 0, :2]).round(3).tolist()) for s in range(6)}
    assert len(fixed) == 1
    with pytest.raises(ValueError, match="1..16"):
        ImageTop(backbone, 17)
    from ccr_core.backbones.vision import TinyVisual

    with pytest.raises(ValueError, match="efficientnet-lite0"):
        ImageTop(TinyVisual(), 1)


def test_a_tiny_fine_tuning_run_trains_saves_loads_evaluates_and_serves(world, tmp_path, monkeypatch, capsys):
    root, bundle, bench = world
    from ccr_core import cli
    from ccr_core.eval.retrieval import evaluate_model
    from ccr_core.training.inference import load_trained
    from ccr_core.training.checkpoint import load_optimizer_state, load_weights, verify_checkpoint

    monkeypatch.setenv("CCR_WORKSPACE", str(root / "ws"))  # the workbench's caches are reused
    run = tmp_path / "run"
    argv = ["train", "--method", "floor", "--data", str(bundle.root), "--out", str(run), "--quiet", "epochs=2", "lr=1e-3",
            "backbone_lr=1e-4", "temperature=0.08", "trainable_image_blocks=2", "trainable_layers=1",
            *[f"{k}={json.dumps(v)}" for k, v in SMALL.items()], "target_sources=[\"mt:\"]"]
    assert cli.main(argv) == 0
    assert "best validation zh" in capsys.readouterr().out
    meta = verify_checkpoint(run / "best")
    assert meta["visual_trainable_blocks"] == 2 and meta["text_trainable_layers"] == 1
    assert meta["visual_backbone"] == bench.visual_identity and len(meta["visual_backbone"]["weights_sha256"]) == 64
    weights = load_weights(run / "best")
    blocks = {k.split(".")[2] for k in weights if k.startswith("visual_top.blocks.")}
    assert blocks == {"0", "1"} and "visual_top.head.weight" in weights and "text_top.layers.0.attention.self.query.weight" in weights
    original = bench.visual_backbone.net._blocks[14].state_dict()
    assert any(not torch.equal(weights[f"visual_top.blocks.0.{k}"], v) for k, v in original.items() if v.is_floating_point())  # it trained
    assert torch.equal(weights["visual_top.blocks.0._bn0.running_mean"], original["_bn0.running_mean"])  # statistics did not
    groups = load_optimizer_state(run / "last", "adam")["param_groups"]
    assert [round(g["lr"] / groups[0]["lr"], 6) for g in groups] == [1.0, 0.1]  # heads at lr, backbone tops at backbone_lr

    model = load_trained(run, bench)
    assert model.method.visual_top is not None and model.method.visual_top.first_block == 14
    result = evaluate_model(model, bench)
    assert set(result["groups"]) == {"en", "zh"}
    assert all(0.0 <= g["SumR"] <= 600.0 and g["n_images"] == 6 for g in result["groups"].values())
    # served like any model: an uploaded picture goes through the frozen lower blocks, then the model's own top
    from ccr_core.encoding import pooled_image_features

    test_items = bundle.items_in("test")
    from ccr_core.backbones.vision import load_rgb

    images = torch.stack([bench.visual_backbone.preprocess(load_rgb(bundle.image_path(it))) for it in test_items])
    with torch.no_grad():
        served = model.method.encode_visual(pooled_image_features(model.method, bench.visual_backbone, images))
    cached = model.on(bench).encode_items(test_items)
    cosines = served @ cached.T  # (6, 6), unit vectors
    assert bool((cosines.diagonal() > 0.999).all()) and cosines.argmax(dim=1).tolist() == list(range(len(test_items)))
    # and the dashboard loads it like any checkpoint: gallery embeddings and an uploaded picture agree
    import shutil

    from ccr_core.dashboard.world import load_world

    shutil.copytree(run / "best", tmp_path / "checkpoints" / "floor-ft")
    world_ = load_world(bundle.root, tmp_path / "checkpoints", root / "ws")
    entry = world_.model("floor-ft")
    assert entry.trained.method.visual_top is not None
    assert np.allclose(entry.image_emb, model.on(bench).encode_items(world_.gallery).numpy(), atol=1e-5)
    upload = world_.encode_image_file(bundle.image_path(world_.gallery[0]), [entry])["floor-ft"]
    cosines = entry.image_emb @ upload  # unit vectors
    assert cosines[0] > 0.999 and int(np.argmax(cosines)) == 0
    # a frozen-backbone model is unchanged by all this: its visual features are the cache's
    assert torch.equal(pooled_image_features(build_floor(), bench.visual_backbone, images[:2]), bench.visual_backbone(images[:2]))


def build_floor():
    from ccr_core.methods import build_method

    return build_method("floor", None, text_dim=32, visual_dim=1280)


def test_video_bundles_and_bad_block_counts_are_refused_clearly(tmp_path, monkeypatch, capsys):
    from ccr_core import cli

    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))  # empty: nothing may be computed before the refusal
    common = ["--method", "floor", "--out", str(tmp_path / "run"), "--quiet", "text_backbone=tiny-text", "batch_size=2"]
    video = make_tiny_bundle(tmp_path / "v", n_images=6, n_videos=3)
    assert cli.main(["train", "--data", str(video), *common, "trainable_image_blocks=2"]) == 2
    assert "video item(s)" in capsys.readouterr().err
    images = make_tiny_bundle(tmp_path / "i", n_images=6)
    assert cli.main(["train", "--data", str(images), *common, "trainable_image_blocks=40"]) == 2
    assert "trainable_image_blocks must be in 1..16" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(images), *common, "trainable_image_blocks=-1"]) == 2
    assert "trainable_image_blocks must be in 1..16" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "ws" / "features").exists()


def test_a_dashboard_on_a_fresh_workspace_computes_only_its_gallerys_feature_maps(world, tmp_path):
    """A fine-tuned model served from a workspace without the full map cache (the Flickr8k-ML world on a fresh
    machine): the world computes the test gallery's maps alone, in a cache of its own, and embeds the gallery as
    the full cache would; once the background pass makes the training caches, that subset is not used for training."""
    root, bundle, bench = world
    from ccr_core.dashboard.world import load_world
    from ccr_core.training.inference import load_trained

    cfg = TrainConfig(method="floor", data=str(bundle.root), trainable_image_blocks=2, epochs=1, lr=1e-3, **SMALL)
    train(cfg, tmp_path / "run", progress=False, bench=bench)
    shipped = tmp_path / "checkpoints" / "floor-ft"
    import shutil

    shutil.copytree(tmp_path / "run" / "best", shipped)
    fresh = tmp_path / "fresh-ws"
    world_ = load_world(bundle.root, tmp_path / "checkpoints", fresh)
    built = sorted(p.name for p in (fresh / "feature_maps" / bundle.name).iterdir() if p.is_dir())
    assert len(built) == 1 and built[0].endswith("-test-split"), built  # no full cache: the gallery's maps only
    subset = load_feature_maps(fresh / "feature_maps" / bundle.name / built[0])
    assert subset.meta["ids"] == [it.id for it in world_.gallery] and len(world_.gallery) < len(bundle.items)
    assert subset.maps.shape[0] == 1 and not subset.meta["flips"]  # no mirrors: serving needs none
    with pytest.raises(FeatureMapCacheError, match="no mirrored maps"):
        subset.rows([world_.gallery[0].id], flips=True)
    entry = world_.model("floor-ft")
    expected = load_trained(shipped, bench).encode_items(world_.gallery).numpy()  # through the full cache
    assert np.allclose(entry.image_emb, expected, atol=1e-5)
    world_.finish_training_caches()
    for wb in world_.workbenches():
        assert wb.map_items is None and all(not str(m.root).endswith("-test-split") for m in wb.maps.values())
