"""French captions: determiners and adjectives agree in gender and number with the noun.

Size adjectives (petit, grand) precede the noun and colours follow it ("une grande étoile rouge");
"orange", "marron" and compound colours ("bleu clair") are invariable; "de" elides before "un/une"
("à gauche d'une petite étoile bleue").
"""
from __future__ import annotations

from . import en
from .base import UNTRANSLATED, WRONG_SENSE, Entity, Message, converse, finish

NOUNS = {  # gender, singular, plural
    "circle": ("m", "cercle", "cercles"), "square": ("m", "carré", "carrés"), "triangle": ("m", "triangle", "triangles"),
    "star": ("f", "étoile", "étoiles"), "heart": ("m", "cœur", "cœurs"), "cross": ("f", "croix", "croix"),
    "ring": ("m", "anneau", "anneaux"), "hexagon": ("m", "hexagone", "hexagones"), "diamond": ("m", "losange", "losanges"),
}
# MT picking the wrong sense: town square, celebrity, ringtone, road crossing.
WRONG_SENSE_SHAPES = {
    "square": ("f", "place", "places"), "star": ("f", "vedette", "vedettes"),
    "ring": ("f", "sonnerie", "sonneries"), "cross": ("m", "croisement", "croisements"),
}


def _regular(masc: str, fem: str | None = None) -> tuple[str, str, str, str]:
    fem = fem or masc + "e"
    return masc, fem, masc if masc.endswith("s") else masc + "s", fem + "s"


def _invariable(word: str) -> tuple[str, str, str, str]:
    return word, word, word, word


COLOURS = {  # masculine singular, feminine singular, masculine plural, feminine plural
    "red": _regular("rouge", "rouge"), "orange": _invariable("orange"), "yellow": _regular("jaune", "jaune"),
    "green": _regular("vert"), "blue": _regular("bleu"), "light_blue": _invariable("bleu clair"),
    "purple": _regular("violet", "violette"), "pink": _regular("rose", "rose"), "brown": _invariable("marron"),
    "white": _regular("blanc", "blanche"), "black": _regular("noir"),
}
# "light" as in not heavy: both words agree ("une étoile bleue légère").
WRONG_SENSE_COLOURS = {"light_blue": (_regular("bleu"), _regular("léger", "légère"))}
SIZES = {"small": _regular("petit"), "large": _regular("grand")}
NUMBERS = {2: "deux", 3: "trois", 4: "quatre"}
RELATIONS = {"left_of": "à gauche", "right_of": "à droite", "above": "au-dessus", "below": "en dessous"}  # + de
REGIONS = {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas", "centre": "au centre"}
BACKGROUNDS = {
    "white": "sur fond blanc", "grey": "sur fond gris", "black": "sur fond noir", "stripes": "sur fond rayé",
    "grass": "sur l'herbe", "sky": "dans le ciel", "sea": "sur la mer",
}
MOTIONS = {
    "left": "se déplace vers la gauche", "right": "se déplace vers la droite",
    "up": "se déplace vers le haut", "down": "se déplace vers le bas",
    "grow": "grandit", "shrink": "rétrécit", "rotate": "tourne sur {self}-même", "bounce": "rebondit",
}


def _agree(forms: tuple[str, str, str, str], gender: str, plural: bool) -> str:
    return forms[(1 if gender == "f" else 0) + (2 if plural else 0)]


def _noun(entity: Entity) -> tuple[str, str]:
    table = WRONG_SENSE_SHAPES if entity.shape_sense == WRONG_SENSE and entity.shape in WRONG_SENSE_SHAPES else NOUNS
    gender, sg, pl = table[entity.shape]
    if entity.shape_sense == UNTRANSLATED:
        return gender, en.untranslated_shape(entity)
    return gender, pl if entity.count > 1 else sg


def noun_phrase(entity: Entity) -> str:
    """"un petit carré vert", "une grande étoile rouge", "deux petits cercles orange"."""
    gender, noun = _noun(entity)
    plural = entity.count > 1
    determiner = NUMBERS[entity.count] if plural else ("une" if gender == "f" else "un")
    size = _agree(SIZES[entity.size], gender, plural) if entity.size else None
    colour = None
    if entity.colour:
        if entity.colour_sense == UNTRANSLATED:
            colour = en.untranslated_colour(entity)
        elif entity.colour_sense == WRONG_SENSE and entity.colour in WRONG_SENSE_COLOURS:
            colour = " ".join(_agree(f, gender, plural) for f in WRONG_SENSE_COLOURS[entity.colour])
        else:
            colour = _agree(COLOURS[entity.colour], gender, plural)
    if entity.odd_order and colour:  # literal MT keeps the English order: "un grand rouge cercle"
        words = [determiner, size, colour, noun]
    elif entity.odd_order and size:
        words = [determiner, noun, size]
    else:
        words = [determiner, size, noun, colour]
    return " ".join(w for w in words if w)


def of(entity: Entity) -> str:
    """"de" + noun phrase, elided before un/une: "d'une petite étoile", "de deux cercles"."""
    phrase = noun_phrase(entity)
    return "d'" + phrase if phrase.startswith("un") else "de " + phrase


def realise(m: Message) -> str:
    a = noun_phrase(m.subject)
    t = m.template
    plural = m.subject.count > 1
    if m.layout == "video":
        gender, _ = _noun(m.subject)
        verb = MOTIONS[m.motion].format(self="elle" if gender == "f" else "lui")
        if t == "np":
            return finish(f"{a} qui {verb}", False)
        if t == "background":
            return finish(f"{BACKGROUNDS[m.background]}, {a} {verb}", True)
        return finish(f"{a} {verb}", True)
    if t == "background":
        things = a if m.other is None else f"{a} et {noun_phrase(m.other)}"
        return finish(f"{things} {BACKGROUNDS[m.background]}", False)
    if m.layout == "single":
        region = REGIONS[m.region]
        if t == "np":
            return finish(f"{a} {region}", False)
        if t == "position_first":
            return finish(f"{region} de l'image, il y a {a}", True)
        return finish(f"{a} se trouve {region} de l'image", True)
    if m.layout == "group":
        if t == "sentence":
            return finish(f"il y a {a}", True)
        return finish(a, False)
    where = f"{RELATIONS[m.relation]} {of(m.other)}"
    if t == "np":
        return finish(f"{a} {where}", False)
    if t == "next_to":
        return finish(f"{a} à côté {of(m.other)}", False)
    if t == "relation_first":  # stylistic inversion: "À gauche d'une étoile se trouve un cercle."
        return finish(f"{where} {'se trouvent' if plural else 'se trouve'} {a}", True)
    if t == "converse":
        subject, relation, other = converse(m)
        return finish(f"il y a {noun_phrase(subject)} {RELATIONS[relation]} {of(other)}", True)
    return finish(f"{a} {'se trouvent' if plural else 'se trouve'} {where}", True)


COLOUR_FORMS = {c: tuple(sorted(set(forms))) for c, forms in COLOURS.items()}
SHAPE_FORMS = {s: tuple(sorted({sg, pl})) for s, (_, sg, pl) in NOUNS.items()}
SIZE_FORMS = {s: tuple(sorted(set(forms))) for s, forms in SIZES.items()}
BACKGROUND_FORMS = {b: (p,) for b, p in BACKGROUNDS.items()}
