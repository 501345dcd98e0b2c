"""German captions: articles and adjective endings agree with the noun's gender, number and case.

Cases used: nominative (subjects), accusative ("man sieht einen großen roten Kreis") and dative
(after "links neben", "über", "unter", "neben"). After "ein" adjectives take the mixed declension
("ein großer roter Kreis", "einem großen roten Kreis"); after a numeral the strong one ("zwei rote
Kreise", "zwei roten Kreisen"). "lila" and "rosa" are indeclinable.
"""
from __future__ import annotations

from . import en
from .base import UNTRANSLATED, WRONG_SENSE, Entity, Message, capitalise, converse, finish

# gender, singular (nominative = accusative), dative singular, plural (nom. = acc.), dative plural
NOUNS = {
    "circle": ("m", "Kreis", "Kreis", "Kreise", "Kreisen"),
    "square": ("n", "Quadrat", "Quadrat", "Quadrate", "Quadraten"),
    "triangle": ("n", "Dreieck", "Dreieck", "Dreiecke", "Dreiecken"),
    "star": ("m", "Stern", "Stern", "Sterne", "Sternen"),
    "heart": ("n", "Herz", "Herzen", "Herzen", "Herzen"),  # irregular: dem Herzen
    "cross": ("n", "Kreuz", "Kreuz", "Kreuze", "Kreuzen"),
    "ring": ("m", "Ring", "Ring", "Ringe", "Ringen"),
    "hexagon": ("n", "Sechseck", "Sechseck", "Sechsecke", "Sechsecken"),
    "diamond": ("f", "Raute", "Raute", "Rauten", "Rauten"),
}
# MT picking the wrong sense of the English word: town square, celebrity, phone call, road crossing.
WRONG_SENSE_SHAPES = {
    "square": ("m", "Platz", "Platz", "Plätze", "Plätzen"),
    "star": ("m", "Star", "Star", "Stars", "Stars"),
    "ring": ("m", "Anruf", "Anruf", "Anrufe", "Anrufen"),
    "cross": ("f", "Kreuzung", "Kreuzung", "Kreuzungen", "Kreuzungen"),
}
COLOURS = {
    "red": "rot", "orange": "orangefarben", "yellow": "gelb", "green": "grün", "blue": "blau",
    "light_blue": "hellblau", "purple": "lila", "pink": "rosa", "brown": "braun", "white": "weiß", "black": "schwarz",
}
INDECLINABLE = {"lila", "rosa"}
WRONG_SENSE_COLOURS = {"light_blue": ("leicht", "blau")}  # "light" as in not heavy: ein leichter blauer Kreis
SIZES = {"small": "klein", "large": "groß"}
NUMBERS = {2: "zwei", 3: "drei", 4: "vier"}
CASES = ("nom", "acc", "dat")
STRONG = {
    "m": {"nom": "er", "acc": "en", "dat": "em"}, "f": {"nom": "e", "acc": "e", "dat": "er"},
    "n": {"nom": "es", "acc": "es", "dat": "em"}, "pl": {"nom": "e", "acc": "e", "dat": "en"},
}
MIXED = {  # after ein / eine
    "m": {"nom": "er", "acc": "en", "dat": "en"}, "f": {"nom": "e", "acc": "e", "dat": "en"},
    "n": {"nom": "es", "acc": "es", "dat": "en"},
}
INDEFINITE = {
    "m": {"nom": "ein", "acc": "einen", "dat": "einem"}, "f": {"nom": "eine", "acc": "eine", "dat": "einer"},
    "n": {"nom": "ein", "acc": "ein", "dat": "einem"},
}
RELATIVE_PRONOUN = {"m": "der", "f": "die", "n": "das"}
RELATIONS = {"left_of": "links neben", "right_of": "rechts neben", "above": "über", "below": "unter"}  # + dative
REGIONS = {"left": "links im Bild", "right": "rechts im Bild", "top": "oben im Bild", "bottom": "unten im Bild", "centre": "in der Bildmitte"}
BACKGROUNDS = {
    "white": "auf weißem Hintergrund", "grey": "auf grauem Hintergrund", "black": "auf schwarzem Hintergrund",
    "stripes": "auf gestreiftem Hintergrund", "grass": "auf der Wiese", "sky": "am Himmel", "sea": "auf dem Meer",
}
MOTIONS = {  # finite verb, reflexive "sich", complement
    "left": ("bewegt", True, "nach links"), "right": ("bewegt", True, "nach rechts"),
    "up": ("bewegt", True, "nach oben"), "down": ("bewegt", True, "nach unten"),
    "grow": ("wird", False, "größer"), "shrink": ("wird", False, "kleiner"),
    "rotate": ("dreht", True, ""), "bounce": ("hüpft", False, "auf und ab"),
}


def _noun(entity: Entity, case: str) -> tuple[str, str]:
    """(gender, word) of the head noun in a case."""
    table = WRONG_SENSE_SHAPES if entity.shape_sense == WRONG_SENSE and entity.shape in WRONG_SENSE_SHAPES else NOUNS
    gender, sg, dat_sg, pl, dat_pl = table[entity.shape]
    if entity.shape_sense == UNTRANSLATED:
        return gender, en.untranslated_shape(entity)
    if entity.count > 1:
        return gender, dat_pl if case == "dat" else pl
    return gender, dat_sg if case == "dat" else sg


def _adjective_stems(entity: Entity) -> list[tuple[str, bool]]:
    """(stem, declinable) of each adjective, size before colour."""
    stems = []
    if entity.size:
        stems.append((SIZES[entity.size], True))
    if entity.colour:
        if entity.colour_sense == UNTRANSLATED:
            stems.append((en.untranslated_colour(entity), False))
        elif entity.colour_sense == WRONG_SENSE and entity.colour in WRONG_SENSE_COLOURS:
            stems.extend((s, True) for s in WRONG_SENSE_COLOURS[entity.colour])
        else:
            stem = COLOURS[entity.colour]
            stems.append((stem, stem not in INDECLINABLE))
    return stems


def noun_phrase(entity: Entity, case: str = "nom") -> str:
    """"ein großer roter Kreis" (nom.), "einen großen roten Kreis" (acc.), "zwei roten Kreisen" (dat.)."""
    gender, noun = _noun(entity, case)
    if entity.count > 1:
        determiner, endings = NUMBERS[entity.count], STRONG["pl"]
    else:
        determiner, endings = INDEFINITE[gender][case], MIXED[gender]
    stems = _adjective_stems(entity)
    if entity.odd_order and stems:  # literal MT: the last adjective trails the noun, uninflected
        pre = [s + endings[case] if ok else s for s, ok in stems[:-1]]
        return " ".join([determiner] + pre + [noun, stems[-1][0]])
    adjectives = [s + endings[case] if ok else s for s, ok in stems]
    return " ".join([determiner] + adjectives + [noun])


def realise(m: Message) -> str:
    a = noun_phrase(m.subject)
    t = m.template
    plural = m.subject.count > 1
    if m.layout == "video":
        verb, reflexive, complement = MOTIONS[m.motion]
        sich = "sich" if reflexive else ""
        if t == "np":  # relative clause, verb last: "ein roter Kreis, der sich nach links bewegt"
            gender, _ = _noun(m.subject, "nom")
            clause = " ".join(w for w in (RELATIVE_PRONOUN[gender], sich, complement, verb) if w)
            return finish(f"{a}, {clause}", False)
        if t == "background":  # verb second: "Am Himmel bewegt sich ein roter Kreis nach links."
            words = (capitalise(BACKGROUNDS[m.background]), verb, sich, a, complement)
            return finish(" ".join(w for w in words if w), True)
        return finish(" ".join(w for w in (a, verb, sich, complement) if w), True)
    if t == "background":
        things = a if m.other is None else f"{a} und {noun_phrase(m.other)}"
        return finish(f"{things} {BACKGROUNDS[m.background]}", False)
    if m.layout == "single":
        region = REGIONS[m.region]
        if t == "np":
            return finish(f"{a} {region}", False)
        if t == "position_first":
            return finish(f"{region} sieht man {noun_phrase(m.subject, 'acc')}", True)
        return finish(f"{a} befindet sich {region}", True)
    if m.layout == "group":
        if t == "sentence":
            return finish(f"im Bild sieht man {noun_phrase(m.subject, 'acc')}", True)
        return finish(a, False)
    b_dat = noun_phrase(m.other, "dat")
    if t == "np":
        return finish(f"{a} {RELATIONS[m.relation]} {b_dat}", False)
    if t == "next_to":
        return finish(f"{a} neben {b_dat}", False)
    if t == "relation_first":
        return finish(f"{RELATIONS[m.relation]} {b_dat} {'sind' if plural else 'ist'} {a}", True)
    if t == "converse":
        subject, relation, other = converse(m)
        return finish(f"man sieht {noun_phrase(subject, 'acc')} {RELATIONS[relation]} {noun_phrase(other, 'dat')}", True)
    return finish(f"{a} {'befinden' if plural else 'befindet'} sich {RELATIONS[m.relation]} {b_dat}", True)


def _all_endings() -> set[str]:
    return {e for table in (STRONG, MIXED) for by_case in table.values() for e in by_case.values()}


COLOUR_FORMS = {
    c: (stem,) if stem in INDECLINABLE else (stem,) + tuple(sorted(stem + e for e in _all_endings()))
    for c, stem in COLOURS.items()
}
SHAPE_FORMS = {s: tuple(sorted({w.lower() for w in forms[1:]})) for s, forms in NOUNS.items()}
SIZE_FORMS = {s: (stem,) + tuple(sorted(stem + e for e in _all_endings())) for s, stem in SIZES.items()}
BACKGROUND_FORMS = {b: (p,) for b, p in BACKGROUNDS.items()}
