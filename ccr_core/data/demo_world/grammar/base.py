"""What a caption says, independent of language: the message every realiser turns into words.

A :class:`Message` is a view of a scene (which objects, which attributes, which relation) plus a
template name that picks the phrasing. Machine-translation errors are changes to a message (a flipped
relation, a dropped colour) or flags on an entity (a wrong word sense, an untranslated word, a literal
word order), so the same structure drives the target text and its back-translation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

# How a word of an entity is translated: normally, in a wrong sense (an MT error), or left in English.
NORMAL, WRONG_SENSE, UNTRANSLATED = "", "wrong", "untranslated"

INVERSE_RELATION = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
HORIZONTAL = {"left_of", "right_of"}
# Templates per layout. Every language realises every one of them (a simulated MT keeps the
# template of its English source, as a literal translation keeps the sentence's structure).
TEMPLATES = {
    "single": ("np", "sentence", "position_first", "background"),
    "pair": ("np", "sentence", "relation_first", "converse", "next_to", "background"),
    "group": ("np", "sentence", "background"),
    "video": ("sentence", "np", "background"),
}
SENTENCE_TEMPLATES = {"sentence", "position_first", "relation_first", "converse"}


@dataclass(frozen=True)
class Entity:
    """One object, or ``count`` identical objects, as a caption mentions them."""

    shape: str
    colour: str | None  # None: colour not mentioned
    size: str | None  # None: size not mentioned
    count: int = 1
    shape_sense: str = NORMAL
    colour_sense: str = NORMAL
    odd_order: bool = False  # MT error: adjectives in a literal, unnatural position


@dataclass(frozen=True)
class Message:
    layout: str  # single | pair | group | video (group_pair scenes are "pair" with a plural subject)
    template: str
    subject: Entity
    other: Entity | None = None
    relation: str | None = None  # subject relative to other
    region: str | None = None
    motion: str | None = None
    background: str = "white"
    variant: int = 0  # picks among small phrasing alternatives (e.g. Chinese modifier order)


def templates_for(layout: str, relation: str | None = None) -> tuple[str, ...]:
    """Templates that fit a scene layout; "next to" only says something true of left/right pairs."""
    kind = "pair" if layout == "group_pair" else layout
    names = TEMPLATES[kind]
    if kind == "pair" and relation not in HORIZONTAL:
        names = tuple(t for t in names if t != "next_to")
    return names


def converse(message: Message) -> tuple[Entity, str, Entity]:
    """(subject, relation, other) said the other way round: A left of B -> B right of A."""
    return message.other, INVERSE_RELATION[message.relation], message.subject


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def finish(text: str, sentence: bool, full_stop: str = ".") -> str:
    """Capitalise a caption and end a full sentence with a full stop (noun phrases get none)."""
    text = capitalise(text)
    return text + full_stop if sentence else text


def for_back_translation(message: Message) -> Message:
    """What an English back-translation of an MT caption says: the MT's content, with its word order
    repaired and untranslated English words understood, but a wrong word sense kept."""

    def fix(entity: Entity | None) -> Entity | None:
        if entity is None:
            return None
        return replace(
            entity,
            odd_order=False,
            shape_sense=NORMAL if entity.shape_sense == UNTRANSLATED else entity.shape_sense,
            colour_sense=NORMAL if entity.colour_sense == UNTRANSLATED else entity.colour_sense,
        )

    return replace(message, subject=fix(message.subject), other=fix(message.other))
