"""EfficientNet-Lite0: cold-load time and feature-extraction throughput (images/s) on real photos."""
from __future__ import annotations

import time

import torch

from benchmarks.common import Result, best_of
from ccr_core.paths import shared_data_dir


def run() -> list[Result]:
    start = time.perf_counter()
    from ccr_core.backbones.vision import EfficientNetLite0, load_rgb

    model = EfficientNetLite0()
    cold = time.perf_counter() - start
    photos = sorted((shared_data_dir() / "flickr8k" / "images").glob("*.jpg"))[:128]
    if photos:
        source = "Flickr8k photos (JPEG decode + preprocess + forward)"
        load = lambda: [load_rgb(p) for p in photos]  # noqa: E731
    else:
        from PIL import Image

        source = "synthetic 224 px images (mirror missing)"
        load = lambda: [Image.new("RGB", (224, 224), (i, 100, 200)) for i in range(128)]  # noqa: E731

    def extract():
        images = load()
        with torch.no_grad():
            for b in range(0, len(images), 32):
                model(torch.stack([model.preprocess(im) for im in images[b : b + 32]]))

    seconds = best_of(extract, repeats=2)
    return [
        Result("EfficientNet-Lite0 cold load (import + weights)", cold, "s", note="first load in this process"),
        Result("EfficientNet-Lite0 feature extraction, batch 32", 128 / seconds, "images/s", note=f"128 {source}, {torch.get_num_threads()} threads, best of 2"),
    ]
