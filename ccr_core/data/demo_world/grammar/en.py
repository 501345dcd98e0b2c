"""English captions (native, and back-translations of the simulated MT).

Also the source words an untranslated-word MT error leaves in a target-language caption.
"""
from __future__ import annotations

from .base import WRONG_SENSE, Entity, Message, converse, finish

SHAPES = {
    "circle": ("circle", "circles"), "square": ("square", "squares"), "triangle": ("triangle", "triangles"),
    "star": ("star", "stars"), "heart": ("heart", "hearts"), "cross": ("cross", "crosses"),
    "ring": ("ring", "rings"), "hexagon": ("hexagon", "hexagons"), "diamond": ("diamond", "diamonds"),
}
COLOURS = {
    "red": "red", "orange": "orange", "yellow": "yellow", "green": "green", "blue": "blue",
    "light_blue": "light blue", "purple": "purple", "pink": "pink", "brown": "brown", "white": "white", "black": "black",
}
SIZES = {"small": "small", "large": "large"}
NUMBERS = {2: "two", 3: "three", 4: "four"}
# What a back-translation says where the MT chose the wrong sense of an ambiguous English word.
WRONG_SENSE_SHAPES = {
    "square": ("plaza", "plazas"), "star": ("celebrity", "celebrities"), "ring": ("phone call", "phone calls"),
    "cross": ("crossroads", "crossroads"), "heart": ("heart", "hearts"),
}
WRONG_SENSE_COLOURS = {"light_blue": "lightweight blue"}
REGIONS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom", "centre": "in the middle"}
RELATIONS = {"left_of": "to the left of", "right_of": "to the right of", "above": "above", "below": "below"}
BACKGROUNDS = {
    "white": "on a white background", "grey": "on a grey background", "black": "on a black background",
    "stripes": "on a striped background", "grass": "on the grass", "sky": "in the sky", "sea": "on the sea",
}
MOTIONS = {  # (finite verb phrase, -ing form)
    "left": ("moves to the left", "moving to the left"), "right": ("moves to the right", "moving to the right"),
    "up": ("moves up", "moving up"), "down": ("moves down", "moving down"),
    "grow": ("grows", "growing"), "shrink": ("shrinks", "shrinking"),
    "rotate": ("spins", "spinning"), "bounce": ("bounces up and down", "bouncing up and down"),
}


def shape_word(entity: Entity) -> str:
    table = WRONG_SENSE_SHAPES if entity.shape_sense == WRONG_SENSE and entity.shape in WRONG_SENSE_SHAPES else SHAPES
    singular, plural = table[entity.shape]
    return plural if entity.count > 1 else singular


def colour_word(entity: Entity) -> str | None:
    if entity.colour is None:
        return None
    if entity.colour_sense == WRONG_SENSE and entity.colour in WRONG_SENSE_COLOURS:
        return WRONG_SENSE_COLOURS[entity.colour]
    return COLOURS[entity.colour]


def noun_phrase(entity: Entity) -> str:
    """"a large red circle", "an orange star", "two small blue squares"."""
    adjectives = [w for w in (SIZES.get(entity.size), colour_word(entity)) if w]
    noun = shape_word(entity)
    words = [noun] + adjectives if entity.odd_order else adjectives + [noun]
    if entity.count > 1:
        return " ".join([NUMBERS[entity.count]] + words)
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article] + words)


def _be(entity: Entity) -> str:
    return "are" if entity.count > 1 else "is"


def realise(m: Message) -> str:
    a = noun_phrase(m.subject)
    t = m.template
    if m.layout == "video":
        finite, ing = MOTIONS[m.motion]
        if t == "np":
            return finish(f"{a} {ing}", False)
        if t == "background":
            return finish(f"{BACKGROUNDS[m.background]}, {a} {finite}", True)
        return finish(f"{a} {finite}", True)
    if t == "background":
        things = a if m.other is None else f"{a} and {noun_phrase(m.other)}"
        return finish(f"{things} {BACKGROUNDS[m.background]}", False)
    if m.layout == "single":
        region = REGIONS[m.region]
        if t == "np":
            return finish(f"{a} {region}", False)
        if t == "position_first":
            return finish(f"{region} there is {a}", True)
        return finish(f"{a} is {region}", True)
    if m.layout == "group":
        if t == "sentence":
            return finish(f"there {_be(m.subject)} {a}", True)
        return finish(a, False)
    b = noun_phrase(m.other)
    if t == "np":
        return finish(f"{a} {RELATIONS[m.relation]} {b}", False)
    if t == "next_to":
        return finish(f"{a} next to {b}", False)
    if t == "relation_first":
        return finish(f"{RELATIONS[m.relation]} {b} there {_be(m.subject)} {a}", True)
    if t == "converse":
        subject, relation, other = converse(m)
        return finish(f"there {_be(subject)} {noun_phrase(subject)} {RELATIONS[relation]} {noun_phrase(other)}", True)
    return finish(f"{a} {_be(m.subject)} {RELATIONS[m.relation]} {b}", True)


def untranslated_shape(entity: Entity) -> str:
    """The English noun an MT system left untranslated."""
    return SHAPES[entity.shape][1 if entity.count > 1 else 0]


def untranslated_colour(entity: Entity) -> str:
    return COLOURS[entity.colour]


# Every surface form, for checking captions against scenes (lower case; multi-word forms included).
COLOUR_FORMS = {c: (w,) for c, w in COLOURS.items()}
SHAPE_FORMS = {s: forms for s, forms in SHAPES.items()}
SIZE_FORMS = {s: (w,) for s, w in SIZES.items()}
BACKGROUND_FORMS = {b: (p,) for b, p in BACKGROUNDS.items()}
