"""What a benchmark module returns: a list of :class:`Result` rows, one per measured quantity."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Result:
    name: str            # what was measured, e.g. "e5 text encoder, batch 64"
    value: float         # the measured number
    unit: str            # "sentences/s", "s", "ms", "MiB" ...
    target: str = ""     # the target as text, e.g. "<= 2 s"; empty when there is none
    met: bool | None = None  # None when there is no target
    note: str = ""       # how it was measured (sizes, repeats)


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls (the least disturbed by a shared, noisy machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
