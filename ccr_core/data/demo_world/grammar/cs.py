"""Czech captions: nouns, adjectives and numerals decline for gender, number and case.

Cases used: nominative (subjects), accusative ("vidíme malou modrou hvězdu"), genitive (after
"vlevo od", "vpravo od", "vedle") and instrumental (after "nad", "pod"). All colour and size
adjectives are hard (-ý); "dva" has a feminine/neuter form "dvě"; 2-4 take the nominative plural
("dva červené kruhy") and a plural verb ("jsou").
"""
from __future__ import annotations

from . import en
from .base import UNTRANSLATED, WRONG_SENSE, Entity, Message, converse, finish

CASES = ("nom", "gen", "acc", "ins")


def _noun(gender: str, sg: str, pl: str) -> tuple[str, dict, dict]:
    return gender, dict(zip(CASES, sg.split())), dict(zip(CASES, pl.split()))


NOUNS = {  # gender; singular and plural in nominative, genitive, accusative, instrumental
    "circle": _noun("m", "kruh kruhu kruh kruhem", "kruhy kruhů kruhy kruhy"),
    "square": _noun("m", "čtverec čtverce čtverec čtvercem", "čtverce čtverců čtverce čtverci"),
    "triangle": _noun("m", "trojúhelník trojúhelníku trojúhelník trojúhelníkem", "trojúhelníky trojúhelníků trojúhelníky trojúhelníky"),
    "star": _noun("f", "hvězda hvězdy hvězdu hvězdou", "hvězdy hvězd hvězdy hvězdami"),
    "heart": _noun("n", "srdce srdce srdce srdcem", "srdce srdcí srdce srdci"),
    "cross": _noun("m", "kříž kříže kříž křížem", "kříže křížů kříže kříži"),
    "ring": _noun("m", "prstenec prstence prstenec prstencem", "prstence prstenců prstence prstenci"),
    "hexagon": _noun("m", "šestiúhelník šestiúhelníku šestiúhelník šestiúhelníkem", "šestiúhelníky šestiúhelníků šestiúhelníky šestiúhelníky"),
    "diamond": _noun("m", "kosočtverec kosočtverce kosočtverec kosočtvercem", "kosočtverce kosočtverců kosočtverce kosočtverci"),
}
# MT picking the wrong sense: town square, celebrity, ringing (of a phone), crossroads.
WRONG_SENSE_SHAPES = {
    "square": _noun("n", "náměstí náměstí náměstí náměstím", "náměstí náměstí náměstí náměstími"),
    "star": _noun("f", "celebrita celebrity celebritu celebritou", "celebrity celebrit celebrity celebritami"),
    "ring": _noun("n", "zvonění zvonění zvonění zvoněním", "zvonění zvonění zvonění zvoněními"),
    "cross": _noun("f", "křižovatka křižovatky křižovatku křižovatkou", "křižovatky křižovatek křižovatky křižovatkami"),
}
# Hard adjective endings (mladý); masculine here is always inanimate.
HARD_SINGULAR = {
    "m": {"nom": "ý", "gen": "ého", "acc": "ý", "ins": "ým"},
    "f": {"nom": "á", "gen": "é", "acc": "ou", "ins": "ou"},
    "n": {"nom": "é", "gen": "ého", "acc": "é", "ins": "ým"},
}
HARD_PLURAL = {
    "m": {"nom": "é", "gen": "ých", "acc": "é", "ins": "ými"},
    "f": {"nom": "é", "gen": "ých", "acc": "é", "ins": "ými"},
    "n": {"nom": "á", "gen": "ých", "acc": "á", "ins": "ými"},
}
COLOURS = {  # (invariable prefix, hard stem)
    "red": ("", "červen"), "orange": ("", "oranžov"), "yellow": ("", "žlut"), "green": ("", "zelen"),
    "blue": ("", "modr"), "light_blue": ("světle ", "modr"), "purple": ("", "fialov"), "pink": ("", "růžov"),
    "brown": ("", "hněd"), "white": ("", "bíl"), "black": ("", "čern"),
}
WRONG_SENSE_COLOURS = {"light_blue": ("lehk", "modr")}  # "light" as in not heavy: lehký modrý kruh
SIZES = {"small": "mal", "large": "velk"}
NUMERALS = {
    2: {"nom": {"m": "dva", "f": "dvě", "n": "dvě"}, "gen": "dvou", "ins": "dvěma"},
    3: {"nom": "tři", "gen": "tří", "ins": "třemi"},
    4: {"nom": "čtyři", "gen": "čtyř", "ins": "čtyřmi"},
}
RELATIONS = {"left_of": ("vlevo od", "gen"), "right_of": ("vpravo od", "gen"), "above": ("nad", "ins"), "below": ("pod", "ins")}
REGIONS = {"left": "vlevo", "right": "vpravo", "top": "nahoře", "bottom": "dole", "centre": "uprostřed"}
REGIONS_LONG = {
    "left": "v levé části obrázku", "right": "v pravé části obrázku", "top": "v horní části obrázku",
    "bottom": "v dolní části obrázku", "centre": "uprostřed obrázku",
}
BACKGROUNDS = {
    "white": "na bílém pozadí", "grey": "na šedém pozadí", "black": "na černém pozadí",
    "stripes": "na pruhovaném pozadí", "grass": "na trávě", "sky": "na obloze", "sea": "na moři",
}
MOTIONS = {  # reflexive "se", verb phrase
    "left": ("se", "pohybuje doleva"), "right": ("se", "pohybuje doprava"),
    "up": ("se", "pohybuje nahoru"), "down": ("se", "pohybuje dolů"),
    "grow": ("se", "zvětšuje"), "shrink": ("se", "zmenšuje"), "rotate": ("se", "otáčí"), "bounce": ("", "poskakuje"),
}
RELATIVE_PRONOUN = {"m": "který", "f": "která", "n": "které"}


def _numeral(count: int, gender: str, case: str) -> str:
    forms = NUMERALS[count]
    form = forms["nom" if case == "acc" else case]  # 2-4: accusative = nominative
    return form[gender] if isinstance(form, dict) else form


def _head(entity: Entity) -> tuple[str, dict, dict]:
    table = WRONG_SENSE_SHAPES if entity.shape_sense == WRONG_SENSE and entity.shape in WRONG_SENSE_SHAPES else NOUNS
    return table[entity.shape]


def noun_phrase(entity: Entity, case: str = "nom") -> str:
    """"velký červený kruh", "malé modré hvězdy" (gen.), "dvěma malými červenými kruhy" (ins.)."""
    gender, singular, plural_forms = _head(entity)
    plural = entity.count > 1
    noun = (plural_forms if plural else singular)[case]
    if entity.shape_sense == UNTRANSLATED:
        noun = en.untranslated_shape(entity)
    ending = (HARD_PLURAL if plural else HARD_SINGULAR)[gender][case]
    adjectives = []
    if entity.size:
        adjectives.append(SIZES[entity.size] + ending)
    if entity.colour:
        if entity.colour_sense == UNTRANSLATED:
            adjectives.append(en.untranslated_colour(entity))
        elif entity.colour_sense == WRONG_SENSE and entity.colour in WRONG_SENSE_COLOURS:
            adjectives.extend(stem + ending for stem in WRONG_SENSE_COLOURS[entity.colour])
        else:
            prefix, stem = COLOURS[entity.colour]
            adjectives.append(prefix + stem + ending)
    # literal MT: adjectives after the noun ("kruh velký červený")
    words = [noun] + adjectives if entity.odd_order else adjectives + [noun]
    if plural:
        words.insert(0, _numeral(entity.count, gender, case))
    return " ".join(words)


def _related(relation: str, entity: Entity) -> str:
    preposition, case = RELATIONS[relation]
    return f"{preposition} {noun_phrase(entity, case)}"


def realise(m: Message) -> str:
    a = noun_phrase(m.subject)
    t = m.template
    be = "jsou" if m.subject.count > 1 else "je"
    if m.layout == "video":
        se, verb = MOTIONS[m.motion]
        if t == "np":
            clause = " ".join(w for w in (RELATIVE_PRONOUN[_head(m.subject)[0]], se, verb) if w)
            return finish(f"{a}, {clause}", False)
        if t == "background":  # the clitic "se" stays in second position: "Na trávě se kruh otáčí."
            return finish(" ".join(w for w in (BACKGROUNDS[m.background], se, a, verb) if w), True)
        return finish(" ".join(w for w in (a, se, verb) if w), True)
    if t == "background":
        things = a if m.other is None else f"{a} a {noun_phrase(m.other)}"
        return finish(f"{things} {BACKGROUNDS[m.background]}", False)
    if m.layout == "single":
        if t == "np":
            return finish(f"{a} {REGIONS[m.region]}", False)
        if t == "position_first":
            return finish(f"{REGIONS_LONG[m.region]} {be} {a}", True)
        return finish(f"{a} {be} {REGIONS_LONG[m.region]}", True)
    if m.layout == "group":
        if t == "sentence":
            return finish(f"na obrázku {be} {a}", True)
        return finish(a, False)
    where = _related(m.relation, m.other)
    if t == "np":
        return finish(f"{a} {where}", False)
    if t == "next_to":
        return finish(f"{a} vedle {noun_phrase(m.other, 'gen')}", False)
    if t == "relation_first":
        return finish(f"{where} {be} {a}", True)
    if t == "converse":
        subject, relation, other = converse(m)
        return finish(f"na obrázku vidíme {noun_phrase(subject, 'acc')} {_related(relation, other)}", True)
    return finish(f"{a} {be} {where}", True)


def _all_forms(prefix: str, stem: str) -> tuple[str, ...]:
    endings = {e for table in (HARD_SINGULAR, HARD_PLURAL) for by_case in table.values() for e in by_case.values()}
    return tuple(sorted(prefix + stem + e for e in endings))


COLOUR_FORMS = {c: _all_forms(prefix, stem) for c, (prefix, stem) in COLOURS.items()}
SHAPE_FORMS = {s: tuple(sorted(set(sg.values()) | set(pl.values()))) for s, (_, sg, pl) in NOUNS.items()}
SIZE_FORMS = {s: _all_forms("", stem) for s, stem in SIZES.items()}
BACKGROUND_FORMS = {b: (p,) for b, p in BACKGROUNDS.items()}
