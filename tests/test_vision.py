"""Visual backbones: the shim, real ImageNet EfficientNet-Lite0 weights, open_clip towers, tiny CNN."""
import json
import re
from collections import defaultdict

import numpy as np
import pytest
import torch
from PIL import Image

import ccr_core
from ccr_core import _compat
from ccr_core.backbones import VISUAL_BACKBONES
from ccr_core.backbones.vision import (
    EfficientNetLite0, OpenCLIPVisual, TinyVisual, imagenet_class_names, load_rgb, load_visual_backbone,
)

DOG_CLASSES = range(151, 269)  # ImageNet indices 151..268 are dog breeds


def test_torchvision_imports_after_shim():
    import open_clip  # noqa: F401
    import timm  # noqa: F401
    import torchvision
    from torchvision import transforms
    from transformers import BertModel  # noqa: F401

    assert transforms.Resize(8)(Image.new("RGB", (16, 16))).size == (8, 8)
    # The shim is needed exactly when torchvision's compiled ops cannot load next to this torch.
    assert _compat.shim_active == (not torchvision.extension._has_ops())


def test_shim_is_noop_when_torchvision_already_imported():
    assert _compat.ensure_torchvision_importable() == _compat.shim_active


def test_registry_lists_backbones():
    assert {"efficientnet-lite0", "tiny-visual", "open_clip"} <= set(VISUAL_BACKBONES.list())
    with pytest.raises(KeyError, match="already registered"):
        VISUAL_BACKBONES.register("tiny-visual")(lambda: None)
    with pytest.raises(KeyError, match="unknown visual backbone 'nope'"):
        load_visual_backbone("nope")


@pytest.fixture(scope="module")
def effnet():
    return EfficientNetLite0()


def test_efficientnet_labels_flickr8k_dogs_as_dogs(effnet, shared_data):
    captions = defaultdict(list)
    for line in (shared_data / "flickr8kcn/data/flickr8kenc.caption.txt").read_text(encoding="utf-8").splitlines():
        key, text = line.split(" ", 1)
        captions[key.split("#")[0]].append(text.lower())
    # Photos on which all five annotators wrote "dog": the network should see a dog breed.
    dogs = sorted(k for k, v in captions.items() if all(re.search(r"\bdogs?\b", t) for t in v))[:12]
    batch = torch.stack([effnet.preprocess(load_rgb(shared_data / "flickr8k/images" / k)) for k in dogs])
    top1 = effnet.classify(batch).argmax(-1).tolist()
    names = imagenet_class_names()
    hits = [names[c] for c in top1 if c in DOG_CLASSES]
    assert len(hits) >= 9, f"only {len(hits)}/12 dog photos got a dog class: {[names[c] for c in top1]}"


def test_efficientnet_features(effnet, shared_data):
    photo = load_rgb(next((shared_data / "flickr8k/images").glob("*.jpg")))
    x = effnet.preprocess(photo)
    assert x.shape == (3, 224, 224) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    feats = effnet(x[None])
    assert feats.shape == (1, 1280) and torch.isfinite(feats).all()
    ident = effnet.identity()
    assert ident["name"] == "efficientnet-lite0" and len(ident["weights_sha256"]) == 64
    assert not any(p.requires_grad for p in effnet.parameters())


def test_preprocess_does_not_assume_a_size(effnet):
    for size in [(640, 480), (100, 300), (224, 224)]:
        assert effnet.preprocess(Image.new("RGB", size, "red")).shape == (3, 224, 224)


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "L", "I;16"])
def test_load_rgb_handles_odd_modes(tmp_path, mode):
    img = Image.new("RGB", (20, 10), (200, 30, 40))
    img = img.convert(mode) if mode != "I;16" else Image.fromarray((np.arange(200, dtype=np.uint16) * 300).reshape(10, 20))
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (20, 10)


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def test_open_clip_tiny_config_and_local_checkpoint(tmp_path):
    config = tmp_path / "ccr-tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    random_tower = OpenCLIPVisual("ccr-tiny-clip", None, config_file=config)
    assert random_tower.dim == 16 and random_tower.image_size == 32
    ckpt = tmp_path / "tiny.pt"
    import open_clip

    model = open_clip.create_model("ccr-tiny-clip")
    torch.save(model.state_dict(), ckpt)
    loaded = load_visual_backbone(f"open_clip:ccr-tiny-clip@{ckpt}")
    image = Image.new("RGB", (50, 40), "blue")
    ref = model.visual.eval()(loaded.preprocess(image)[None])
    assert torch.allclose(loaded.encode_pil([image]), ref, atol=1e-6)
    assert loaded.identity()["weights_sha256"] != random_tower.identity()["weights_sha256"]


def test_tiny_visual_is_deterministic():
    a, b, c = TinyVisual(seed=0), TinyVisual(seed=0), TinyVisual(seed=1)
    assert a.weights_hash() == b.weights_hash() != c.weights_hash()
    out = a.encode_pil([Image.new("RGB", (10, 10), "red"), Image.new("RGB", (10, 10), "green")])
    assert out.shape == (2, 64)
