"""Training examples and batches in the CCR setting: an image, an English caption, its machine
translations into the target languages and, where they exist, their back-translations.

Alignment uses each caption's ``ref`` (the caption it translates); where a bundle has no refs (e.g.
independent human translations), any target caption of the same item is used. Items that lack one
of the wanted target languages are grouped apart: every batch holds only items that share the same
set of languages, so each language's ``TextBatch`` is complete (``targets`` lists them).
"""
from __future__ import annotations

import random
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from ccr_core.data.bundle import Bundle, Caption, source_matches
from ccr_core.features import FeatureCache
from ccr_core.training.text_cache import TextStateCache

SOURCE_KINDS = ("human", "generated")  # what counts as an original English caption


@dataclass
class TrainExample:
    item_id: str
    source: str  # English caption id
    targets: dict[str, list[str]]  # lang -> candidate target caption ids (translations of `source` first)
    backs: dict[str, str] = field(default_factory=dict)  # target caption id -> its back-translation id

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))


def training_examples(
    bundle: Bundle,
    split: str = "train",
    target_langs: Sequence[str] | None = None,
    target_sources: Sequence[str] = ("mt:", "human-translation"),
    kind: str | None = None,
) -> list[TrainExample]:
    """One example per original English caption of ``split`` (optionally only image or video items)."""
    caps = [c for c in bundle.captions if c.split == split and (kind is None or bundle.item(c.item).kind == kind)]
    if target_langs is None:
        target_langs = sorted({c.lang for c in caps if c.lang != "en" and source_matches(c.source, target_sources)})
    by_ref: dict[str, list[Caption]] = defaultdict(list)
    by_item_lang: dict[tuple[str, str], list[str]] = defaultdict(list)
    backs: dict[str, str] = {}
    for c in caps:
        if c.source.startswith("back-translation:") and c.ref:
            backs[c.ref] = c.id
        elif c.lang in target_langs and source_matches(c.source, target_sources):
            if c.ref:
                by_ref[c.ref].append(c)
            by_item_lang[(c.item, c.lang)].append(c.id)
    examples = []
    for c in caps:
        if c.lang != "en" or c.source not in SOURCE_KINDS:
            continue
        targets: dict[str, list[str]] = {}
        for lang in target_langs:
            direct = [t.id for t in by_ref.get(c.id, []) if t.lang == lang]
            candidates = direct or by_item_lang.get((c.item, lang), [])
            if candidates:
                targets[lang] = candidates
        ex_backs = {t: backs[t] for ts in targets.values() for t in ts if t in backs}
        examples.append(TrainExample(c.item, c.id, targets, ex_backs))
    return examples


@dataclass
class BatchSource:
    """Turns examples into method batches from the feature and text-state caches."""

    examples: list[TrainExample]
    features: FeatureCache
    texts: TextStateCache
    bundle: Bundle
    maps: object = None  # a FeatureMapCache: batches then carry "visual_maps" instead of pooled "visual"

    def __post_init__(self):
        self.text_of = {c.id: c.text for c in self.bundle.captions}

    def text_batch(self, caption_ids: Sequence[str]):
        return self.texts.batch([self.text_of[c] for c in caption_ids])

    def groups(self) -> dict[tuple[tuple[str, ...], str], list[int]]:
        """Example indices grouped by (target language set, item kind)."""
        out: dict[tuple[tuple[str, ...], str], list[int]] = defaultdict(list)
        for i, ex in enumerate(self.examples):
            out[(ex.languages, self.bundle.item(ex.item_id).kind)].append(i)
        return out

    def epoch_batches(self, batch_size: int, seed: int, drop_last: bool = True) -> list[list[int]]:
        """A shuffled list of batches (lists of example indices) for one epoch; deterministic in ``seed``."""
        rng = random.Random(seed)
        batches = []
        groups = self.groups()
        for key in sorted(groups):
            idx = list(groups[key])
            rng.shuffle(idx)
            for chunk in _batches_without_repeated_items(idx, [self.examples[i].item_id for i in idx], batch_size):
                if len(chunk) == batch_size or (not drop_last and len(chunk) > 1):
                    batches.append(chunk)
        rng.shuffle(batches)
        return batches

    def make_batch(self, indices: Sequence[int], seed: int, targets_per_batch: int = 0, flip: bool = True) -> dict:
        """One method batch. ``targets_per_batch`` > 0 keeps that many of the shared target languages,
        drawn at random per batch (each step then costs a fraction; over an epoch every language is seen).
        With feature maps, each image is mirrored with probability 1/2 when ``flip`` (training), never otherwise."""
        rng = random.Random(seed)
        exs = [self.examples[i] for i in indices]
        item_ids = [ex.item_id for ex in exs]
        batch: dict = {"item_ids": item_ids}
        kind = self.bundle.item(item_ids[0]).kind
        if self.maps is not None and kind == "image":
            flips = [flip and rng.random() < 0.5 for _ in item_ids]
            batch["visual_maps"] = torch.from_numpy(self.maps.rows(item_ids, flips))  # (B, C, H, W)
        else:
            batch["visual"] = torch.from_numpy(np.ascontiguousarray(self.features.rows(item_ids), dtype=np.float32))  # (B, Dv)
        if kind == "video":
            frames = [self.features.video_frames(i) for i in item_ids]
            t_max = max(f.shape[0] for f in frames)
            padded = np.zeros((len(frames), t_max, frames[0].shape[1]), dtype=np.float32)
            mask = np.zeros((len(frames), t_max), dtype=bool)
            for k, f in enumerate(frames):
                padded[k, : f.shape[0]], mask[k, : f.shape[0]] = f, True
            batch["frames"], batch["frame_mask"] = torch.from_numpy(padded), torch.from_numpy(mask)
        langs = list(exs[0].languages)
        if 0 < targets_per_batch < len(langs):
            langs = sorted(rng.sample(langs, targets_per_batch))
        batch["targets"] = langs
        batch["text"] = {"en": self.text_batch([ex.source for ex in exs])}
        chosen = {lang: [rng.choice(ex.targets[lang]) for ex in exs] for lang in langs}
        for lang in langs:
            batch["text"][lang] = self.text_batch(chosen[lang])
        back = {lang: self.text_batch([exs[k].backs[t] for k, t in enumerate(chosen[lang])])
                for lang in langs if all(t in exs[k].backs for k, t in enumerate(chosen[lang]))}
        if back:
            batch["back"] = back
        batch["caption_ids"] = chosen
        return batch


def _batches_without_repeated_items(indices: list[int], items: list[str], batch_size: int) -> Iterator[list[int]]:
    """Cut ``indices`` (in order) into batches in which no item appears twice -- two captions of one
    image in a batch would be false negatives for a contrastive loss. Skipped indices go first into
    the next batch."""
    pending = deque(zip(indices, items))
    while pending:
        batch, seen, skipped = [], set(), []
        while pending and len(batch) < batch_size:
            index, item = pending.popleft()
            (skipped if item in seen else batch).append((index, item))
            seen.add(item)
        pending.extendleft(reversed(skipped))
        yield [i for i, _ in batch]


def needed_captions(examples: Sequence[TrainExample]) -> list[str]:
    """Every caption these examples may put in a batch (what the text-state cache must hold)."""
    out = set()
    for ex in examples:
        out.add(ex.source)
        for ts in ex.targets.values():
            out.update(ts)
        out.update(ex.backs.values())
    return sorted(out)
