"""A run's learning curve: validation SumR of every language every ``eval_every`` optimiser steps (and at the run's
end), so that a reader can see whether a method was still learning when its budget ran out.

A point is taken without changing the run: the random states (Python, NumPy, torch) are saved before the validation
pass and restored after it, and the method is put back in training mode, so a run with curve points trains on the same
batches with the same dropout masks as one without (tests/test_training.py checks the weights are equal).

SumR here is the validation split's R@1+R@5+R@10 in both directions (text->image and image->text), per language, on
its native or human-translated captions where it has some, else its machine translations; ``target_sumr`` is the mean
over the non-English languages, ``en_sumr`` English's.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from ccr_core.data.bundle import source_matches
from ccr_core.encoding import encode_captions, encode_items
from ccr_core.metrics import retrieval_report

VALIDATION_SOURCES = ("human", "generated", "human-translation")  # what validation scores, before machine translations


def curve_point(method, bench, step: int) -> dict:
    """One point of the curve at ``step``: ``{"step", "target_sumr", "en_sumr", "sumr": {lang: SumR}}``."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    was_training = method.training
    method.eval()
    try:
        sumr = _validation_sumr(method, bench)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        method.train(was_training)
    targets = [v for lang, v in sumr.items() if lang != "en"]
    return {"step": int(step), "target_sumr": float(np.mean(targets)) if targets else None,
            "en_sumr": sumr.get("en"), "sumr": sumr}


def _validation_sumr(method, bench) -> dict[str, float]:
    items = bench.bundle.items_in("val")
    position = {it.id: i for i, it in enumerate(items)}
    with torch.no_grad():
        images = encode_items(method, bench, items)  # (N, E), once for every language
        sumr = {}
        for lang in bench.bundle.languages:
            caps = [c for c in bench.bundle.captions_in("val", lang) if c.item in position]
            chosen = [c for c in caps if source_matches(c.source, VALIDATION_SOURCES)] or [c for c in caps if source_matches(c.source, ("mt:",))]
            if not chosen:
                continue
            c2i = np.array([position[c.item] for c in chosen])
            gallery = np.unique(c2i)  # the items captioned in this language
            sim = (encode_captions(method, bench, chosen, lang) @ images[torch.as_tensor(gallery)].T).numpy()  # (M, N_lang)
            sumr[lang] = float(retrieval_report(sim, np.searchsorted(gallery, c2i))["SumR"])
    return sumr


def due(step: int, eval_every: int, max_steps: int) -> bool:
    """Whether the curve takes a point after optimiser step ``step`` (every ``eval_every`` steps and at ``max_steps``)."""
    return eval_every > 0 and (step % eval_every == 0 or (max_steps > 0 and step == max_steps))
