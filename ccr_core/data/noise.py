"""Controlled noise for any bundle: swap target-language training captions between items ("noisy
correspondence") and, optionally, scramble words as a crude MT error, with ground-truth labels.

Following the usual protocol (docs/methods.md, section 8), for each target language a fraction ``rate`` of
the training items get the caption(s) of another random training item of the same kind in that
language. Images are never copied: a written noisy bundle points back at the original media.
"""
from __future__ import annotations

import os
import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ccr_core.data.bundle import Bundle, Caption, Manifest, save_bundle

CLEAN, NOISY_CORRESPONDENCE, WORD_NOISE = "clean", "noisy-correspondence", "mt:word-noise"
SOURCE_LANGUAGE = "en"
# A back-translation that follows the demo-world id convention travels with its MT caption.
BACK_TRANSLATION_SUFFIX = "#bt"


def _is_target(caption: Caption, langs: set[str]) -> bool:
    return caption.split == "train" and caption.lang in langs and not caption.source.startswith("back-translation")


def scramble_words(text: str, rng: random.Random) -> str:
    """Shuffle (within three neighbours), drop or duplicate words, language-agnostically: words are
    split on spaces, or are single characters in a text without spaces (Chinese, Japanese). A final
    full stop or question mark stays last."""
    body, tail = (text[:-1], text[-1]) if text[-1:] in ".。!?！？" else (text, "")
    spaced = " " in body.strip()
    tokens = body.split() if spaced else list(body)
    if len(tokens) < 2:
        return body + body[-1:] + tail  # too short to scramble: a doubled last character still differs
    for _ in range(10):
        op = rng.choice(("shuffle", "drop", "duplicate"))
        out = list(tokens)
        if op == "shuffle":
            start = rng.randrange(len(out) - 1)
            window = out[start:start + 3]
            rng.shuffle(window)
            out[start:start + 3] = window
        elif op == "drop" and len(out) > 2:
            del out[rng.randrange(len(out))]
        else:
            k = rng.randrange(len(out))
            out.insert(k, out[k])
        if out != tokens:
            return (" " if spaced else "").join(out) + tail
    return body + body[-1:] + tail


def inject_noise(
    bundle: Bundle,
    rate: float,
    seed: int = 0,
    langs: Sequence[str] | None = None,
    corrupt_words: bool = False,
) -> tuple[list[Caption], dict[str, str]]:
    """Noisy copies of a bundle's captions and labels.

    Args:
        bundle: a loaded bundle; its existing noise labels are kept where nothing changes.
        rate: fraction of training items per target language whose captions in that language are
            replaced by another random training item's (same kind: image or video).
        seed: makes the choice of items and donors reproducible.
        langs: target languages (default: every non-English language with training captions).
        corrupt_words: also scramble the words of a further fraction ``rate`` of the remaining
            items' target captions (label ``mt:word-noise``).

    Returns:
        (captions in the bundle's order, labels for every target-language training caption);
        replaced captions are labelled ``noisy-correspondence``; a back-translation with id
        ``<caption id>#bt`` is replaced by the donor's back-translation too.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    rng = random.Random(f"inject-noise/{seed}")
    if langs is None:
        langs = sorted({c.lang for c in bundle.captions if c.split == "train" and c.lang != SOURCE_LANGUAGE})
    captions = list(bundle.captions)
    position = {c.id: i for i, c in enumerate(captions)}
    original = {c.id: c for c in bundle.captions}
    noise = dict(bundle.noise)
    kind_of = {item.id: item.kind for item in bundle.items}
    for lang in langs:
        by_item: dict[str, list[Caption]] = defaultdict(list)
        for c in bundle.captions:
            if _is_target(c, {lang}):
                by_item[c.item].append(c)
        items = list(by_item)
        pools = defaultdict(list)
        for item in items:
            pools[kind_of[item]].append(item)
        chosen = set(rng.sample(items, round(rate * len(items))))
        for item in items:
            if item not in chosen:
                continue
            pool = pools[kind_of[item]]
            if len(pool) < 2:
                continue
            donor = pool[rng.randrange(len(pool) - 1)]
            if donor == item:
                donor = pool[-1]  # a draw from the pool without this item
            theirs = by_item[donor]
            for k, own in enumerate(by_item[item]):
                source = theirs[k % len(theirs)]
                captions[position[own.id]] = replace(own, text=source.text)
                noise[own.id] = NOISY_CORRESPONDENCE
                own_bt, their_bt = own.id + BACK_TRANSLATION_SUFFIX, source.id + BACK_TRANSLATION_SUFFIX
                if own_bt in position and their_bt in original:
                    captions[position[own_bt]] = replace(original[own_bt], text=original[their_bt].text)
        if corrupt_words:
            rest = [item for item in items if item not in chosen]
            for item in rng.sample(rest, min(len(rest), round(rate * len(items)))):
                for own in by_item[item]:
                    captions[position[own.id]] = replace(own, text=scramble_words(own.text, rng))
                    noise[own.id] = WORD_NOISE
        for item in items:
            for own in by_item[item]:
                noise.setdefault(own.id, CLEAN)
    return captions, noise


def noisy_bundle(bundle: Bundle, rate: float, seed: int = 0) -> Bundle:
    """The bundle in memory with noise injected into its training captions (:func:`inject_noise`): same
    root, manifest and items, so every cache of the clean bundle serves it."""
    captions, noise = inject_noise(bundle, rate, seed=seed)
    return Bundle(bundle.root, bundle.manifest, bundle.items, captions, noise)


def write_noisy_bundle(
    bundle: Bundle,
    out_dir: str | os.PathLike,
    rate: float,
    seed: int = 0,
    langs: Sequence[str] | None = None,
    corrupt_words: bool = False,
) -> Path:
    """Write a noisy copy of ``bundle`` to ``out_dir``; its image_root points back at the original
    media (a relative path), so no image is copied. See :func:`inject_noise` for the arguments."""
    captions, noise = inject_noise(bundle, rate, seed=seed, langs=langs, corrupt_words=corrupt_words)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_root = os.path.relpath(bundle.image_root.resolve(), out_dir.resolve())
    source = bundle.manifest
    manifest = Manifest(
        name=f"{source.name}-noisy",
        version=source.version,
        licence=source.licence,
        description=f"{source.description} Noise injected: rate {rate}, seed {seed}.".strip(),
        languages=list(source.languages),
        image_root=image_root,
        extra={
            "noise_injection": {
                "source_bundle": source.name, "source_root": str(bundle.root.resolve()), "rate": rate, "seed": seed,
                "langs": list(langs) if langs is not None else None, "corrupt_words": corrupt_words,
            },
            "source_extra": source.extra,
        },
    )
    return save_bundle(out_dir, manifest, bundle.items, captions, noise)
