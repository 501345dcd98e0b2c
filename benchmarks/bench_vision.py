"""EfficientNet-Lite0: cold-load time and feature-extraction throughput (images/s) on real photos,
for the extraction path (``ccr_core.features``: the next batch decoded in a worker thread while the
backbone runs in ONNX Runtime), the same path in PyTorch (channels_last, ``CCR_RUNTIME=torch``) and
the plain path before both (NCHW eager, decode then forward)."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch

from benchmarks.common import Result, best_of
from ccr_core.paths import shared_data_dir

N_PHOTOS, BATCH = 128, 64  # the extraction's default batch size


def _old_preprocess(backbone, image):
    """``VisualBackbone.preprocess`` as it was: normalised by broadcasting over the permuted tensor
    (the same numbers as now, bit for bit; ~60 images/s of it on this machine)."""
    image = backbone.resize_crop(image)  # unchanged; only the normalisation below differs
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, S, S)
    return (x - torch.tensor(backbone.mean).view(3, 1, 1)) / torch.tensor(backbone.std).view(3, 1, 1)


def run() -> list[Result]:
    start = time.perf_counter()
    from ccr_core.backbones.vision import EfficientNetLite0, load_rgb
    from ccr_core import features

    model = EfficientNetLite0()
    cold = time.perf_counter() - start
    photos = sorted((shared_data_dir() / "flickr8k" / "images").glob("*.jpg"))[:N_PHOTOS]
    if photos:
        source = "Flickr8k photos (JPEG decode + preprocess + forward)"
    else:
        import tempfile

        from PIL import Image

        source = "synthetic 224 px JPEGs (mirror missing)"
        folder = tempfile.mkdtemp()
        photos = []
        for i in range(N_PHOTOS):
            photos.append(f"{folder}/{i}.jpg")
            Image.new("RGB", (224, 224), (i, 100, 200)).save(photos[-1])
    batches = [photos[b : b + BATCH] for b in range(0, len(photos), BATCH)]
    plain_net = copy.deepcopy(model.net).to(memory_format=torch.contiguous_format)

    def plain():  # the path before: decode + the old preprocess, then an NCHW eager forward, one after the other
        with torch.no_grad():
            for paths in batches:
                plain_net.extract_features(torch.stack([_old_preprocess(model, load_rgb(p)) for p in paths])).mean(dim=(2, 3))

    def extraction():  # what extract_features does per batch
        prefetcher = features._Prefetcher(model)
        features._prefetch.current = prefetcher
        try:
            prefetcher.submit(batches[0])
            for k, paths in enumerate(batches):
                if k + 1 < len(batches):
                    prefetcher.submit(batches[k + 1])
                features._encode_paths(model, paths)
        finally:
            features._prefetch.current = None
            prefetcher.close()

    def in_torch():  # the same, with the ONNX runtime off
        with runtime.only_pytorch():
            extraction()

    import os

    from ccr_core.backbones import runtime

    os.environ.pop(runtime.RUNTIME_ENV, None)
    uses_onnx = model.prepare_runtime()  # export + probe check, outside the timing (ccr prepare-models does it)
    plain_s, torch_s, fast_s = [], [], []
    for _ in range(2):  # interleaved, best of 2: all three see the same load on a shared machine
        plain_s.append(best_of(plain, repeats=1))
        torch_s.append(best_of(in_torch, repeats=1))
        fast_s.append(best_of(extraction, repeats=1))
    plain_rate, torch_rate, fast_rate = (len(photos) / min(t) for t in (plain_s, torch_s, fast_s))
    load = os.getloadavg()[0]  # the machine is shared: other jobs' load during the run, for reading the numbers
    note = f"{len(photos)} {source}, batch {BATCH}, {torch.get_num_threads()} threads, best of 2 interleaved, load average {load:.1f} at the end"
    engine = f"ONNX Runtime {runtime.version()}" if uses_onnx else "PyTorch (ONNX Runtime unavailable)"
    return [
        Result("EfficientNet-Lite0 cold load (import + weights)", cold, "s", note="first load in this process"),
        Result("EfficientNet-Lite0 extraction, the path before (old preprocess, NCHW eager, decode then forward)", plain_rate, "images/s", note=note),
        Result("EfficientNet-Lite0 extraction in PyTorch (NumPy preprocess, channels_last, decode in a worker; CCR_RUNTIME=torch)", torch_rate, "images/s",
               note=f"{torch_rate / plain_rate:.2f}x the plain path; {note}"),
        Result(f"EfficientNet-Lite0 extraction as shipped ({engine}, decode in a worker)", fast_rate, "images/s", ">= 50 images/s",
               fast_rate >= 50, note=f"{fast_rate / torch_rate:.2f}x PyTorch, {fast_rate / plain_rate:.2f}x the plain path; {note}"),
    ]
