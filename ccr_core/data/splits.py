"""Which split each image of an import goes to: a split file's names, or a reproducible seeded draw."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Mapping, Sequence

from ccr_core.data import formats
from ccr_core.data.bundle import SPLITS
from ccr_core.data.formats import FormatError

# Split names upstream files use -> ours (Karpathy's restval is training data).
SPLIT_ALIASES = {"train": "train", "restval": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


def read_split_file(split_file: str | os.PathLike | Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """Image name/id -> split, from ``{split: list file}`` or one file of ``<image> <split>`` lines."""
    out: dict[str, str] = {}
    if isinstance(split_file, Mapping):
        for split, list_path in split_file.items():
            if split not in SPLITS:
                raise ValueError(f"split_file: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
            for name in formats.read_image_list(list_path):
                out[name] = split
        return out
    path = Path(split_file)
    for lineno, line in enumerate(formats.read_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in SPLIT_ALIASES:
            raise FormatError(f"{path}:{lineno}: expected '<image> <split>' with split train, val or test, got {line!r}")
        out[parts[0]] = SPLIT_ALIASES[parts[1]]
    return out


def seeded_split(ids: Sequence[str], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, str]:
    """Assign whole images to train/val/test in the given proportions, reproducibly.

    >>> from collections import Counter
    >>> sorted(Counter(seeded_split([str(i) for i in range(10)]).values()).items())
    [('test', 1), ('train', 8), ('val', 1)]
    """
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers (train, val, test), got {ratios!r}")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    total = sum(ratios)
    n_train = round(len(order) * ratios[0] / total)
    n_val = round(len(order) * ratios[1] / total)
    return {
        image: "train" if i < n_train else "val" if i < n_train + n_val else "test" for i, image in enumerate(order)
    }
