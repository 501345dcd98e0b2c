"""Simulated machine translation of English demo-world captions, with labelled errors.

A "translation" realises the English caption's message in the target language, after (at a given
rate) one realistic error has been put into the message: a wrong word sense, a dropped attribute, a
flipped relation, an untranslated English word, or a literal word order. The back-translation into
English realises the same, possibly corrupted, message, so meaning errors carry over to it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .grammar import WRONG_SENSE_COLOURS, WRONG_SENSE_SHAPES, realise
from .grammar.base import UNTRANSLATED, WRONG_SENSE, Entity, Message, for_back_translation

CLEAN = "clean"
NOISY_CORRESPONDENCE = "noisy-correspondence"
ERROR_LABELS = ("mt:wrong-sense", "mt:dropped-attribute", "mt:flipped-relation", "mt:untranslated", "mt:word-order")
NOISE_LABELS = (CLEAN,) + ERROR_LABELS + (NOISY_CORRESPONDENCE,)
FLIPS = {
    "left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above",
    "left": "right", "right": "left", "top": "bottom", "bottom": "top", "up": "down", "down": "up",
    "grow": "shrink", "shrink": "grow",
}
SYSTEM = "sim"  # sources are "mt:sim" and "back-translation:sim"


@dataclass(frozen=True)
class Translation:
    text: str
    back_translation: str
    label: str  # clean or one of ERROR_LABELS
    detail: str  # what was changed, e.g. "relation left_of -> right_of"


def _entities(message: Message) -> list[tuple[str, Entity]]:
    return [("subject", message.subject)] + ([("other", message.other)] if message.other is not None else [])


def _with(message: Message, slot: str, entity: Entity) -> Message:
    return replace(message, **{slot: entity})


def candidate_errors(label: str, message: Message, lang: str) -> list[tuple[Message, str]]:
    """Every way of putting one error of kind ``label`` into ``message`` for language ``lang``."""
    out = []
    for slot, e in _entities(message):
        if label == "mt:wrong-sense":
            if e.shape in WRONG_SENSE_SHAPES[lang]:
                out.append((_with(message, slot, replace(e, shape_sense=WRONG_SENSE)), f"{slot} shape {e.shape}: wrong sense"))
            if e.colour in WRONG_SENSE_COLOURS[lang]:
                out.append((_with(message, slot, replace(e, colour_sense=WRONG_SENSE)), f"{slot} colour {e.colour}: wrong sense"))
        elif label == "mt:dropped-attribute":
            if e.colour is not None:
                out.append((_with(message, slot, replace(e, colour=None)), f"{slot} colour {e.colour} dropped"))
            if e.size is not None:
                out.append((_with(message, slot, replace(e, size=None)), f"{slot} size {e.size} dropped"))
        elif label == "mt:untranslated":
            out.append((_with(message, slot, replace(e, shape_sense=UNTRANSLATED)), f"{slot} shape {e.shape} left in English"))
            if e.colour is not None:
                out.append((_with(message, slot, replace(e, colour_sense=UNTRANSLATED)), f"{slot} colour {e.colour} left in English"))
        elif label == "mt:word-order":
            out.append((_with(message, slot, replace(e, odd_order=True)), f"{slot}: literal word order"))
    if label == "mt:flipped-relation":
        for field in ("relation", "region", "motion"):
            value = getattr(message, field)
            if value in FLIPS:
                out.append((replace(message, **{field: FLIPS[value]}), f"{field} {value} -> {FLIPS[value]}"))
    return out


def corrupt(message: Message, lang: str, rng: random.Random) -> tuple[Message, str, str]:
    """Put one visible error into ``message``: (new message, label, detail); kinds are tried in random
    order and an error that would leave the text unchanged (e.g. a flipped relation in a template
    that does not state it) is skipped. Returns the message unchanged with label ``clean`` if none fits."""
    clean_text = realise(lang, message)
    labels = list(ERROR_LABELS)
    rng.shuffle(labels)
    for label in labels:
        options = candidate_errors(label, message, lang)
        rng.shuffle(options)
        for corrupted, detail in options:
            if realise(lang, corrupted) != clean_text:
                return corrupted, label, detail
    return message, CLEAN, ""


def translate(message: Message, lang: str, error_rate: float, rng: random.Random) -> Translation:
    """Simulated MT of an English caption's message into ``lang`` and its back-translation."""
    label, detail = CLEAN, ""
    if rng.random() < error_rate:
        message, label, detail = corrupt(message, lang, rng)
    return Translation(realise(lang, message), realise("en", for_back_translation(message)), label, detail)
