"""Japanese captions: modifiers before the noun (size, then colour), the located thing marked with が
and the place with に ("小さい青い星の左に大きい赤い丸があります"), counts with the general counter
つ after the noun ("赤い丸が二つあります") or as "二つの赤い丸", and で for where an action happens.
"""
from __future__ import annotations

from . import en
from .base import UNTRANSLATED, WRONG_SENSE, Entity, Message, converse, finish

NOUNS = {
    "circle": "丸", "square": "四角", "triangle": "三角", "star": "星", "heart": "ハート", "cross": "十字",
    "ring": "輪", "hexagon": "六角形", "diamond": "ひし形",
}
# MT picking the wrong sense: town square, celebrity, ringtone, crossroads, the heart organ.
WRONG_SENSE_SHAPES = {"square": "広場", "star": "スター", "ring": "着信音", "cross": "交差点", "heart": "心臓"}
COLOURS = {  # attributive forms
    "red": "赤い", "orange": "オレンジ色の", "yellow": "黄色い", "green": "緑の", "blue": "青い", "light_blue": "水色の",
    "purple": "紫の", "pink": "ピンクの", "brown": "茶色の", "white": "白い", "black": "黒い",
}
WRONG_SENSE_COLOURS = {"light_blue": "軽い青い"}  # light in weight
SIZES = {"small": "小さい", "large": "大きい"}
COUNTS = {2: "二つ", 3: "三つ", 4: "四つ"}
RELATIONS = {"left_of": "左", "right_of": "右", "above": "上", "below": "下"}
REGIONS = {"left": "左側", "right": "右側", "top": "上の方", "bottom": "下の方", "centre": "真ん中"}
BACKGROUNDS = {  # where something is (+に), where something happens
    "white": ("白い背景", "白い背景の上で"), "grey": ("灰色の背景", "灰色の背景の上で"), "black": ("黒い背景", "黒い背景の上で"),
    "stripes": ("しま模様の背景", "しま模様の背景の上で"), "grass": ("草の上", "草の上で"), "sky": ("空", "空で"),
    "sea": ("海の上", "海の上で"),
}
MOTIONS = {  # predicate, attributive form
    "left": ("左に動いています", "左に動いている"), "right": ("右に動いています", "右に動いている"),
    "up": ("上に動いています", "上に動いている"), "down": ("下に動いています", "下に動いている"),
    "grow": ("大きくなっています", "大きくなっていく"), "shrink": ("小さくなっています", "小さくなっていく"),
    "rotate": ("回っています", "回っている"), "bounce": ("跳ねています", "跳ねている"),
}


def bare_phrase(entity: Entity) -> str:
    """Modifiers and noun without a count: "大きい赤い丸"."""
    noun = WRONG_SENSE_SHAPES[entity.shape] if entity.shape_sense == WRONG_SENSE and entity.shape in WRONG_SENSE_SHAPES else NOUNS[entity.shape]
    if entity.shape_sense == UNTRANSLATED:
        noun = en.untranslated_shape(entity)
    colour = None
    if entity.colour:
        if entity.colour_sense == UNTRANSLATED:
            colour = en.untranslated_colour(entity)
        elif entity.colour_sense == WRONG_SENSE and entity.colour in WRONG_SENSE_COLOURS:
            colour = WRONG_SENSE_COLOURS[entity.colour]
        else:
            colour = COLOURS[entity.colour]
    size = SIZES[entity.size] if entity.size else None
    words = [noun, colour, size] if entity.odd_order else [size, colour, noun]  # odd: literal MT order
    return "".join(w for w in words if w)


def noun_phrase(entity: Entity) -> str:
    """"大きい赤い丸", "二つの小さい赤い丸"."""
    bare = bare_phrase(entity)
    return f"{COUNTS[entity.count]}の{bare}" if entity.count > 1 else bare


def subject(entity: Entity) -> str:
    """The thing that is somewhere, count floating after が: "赤い丸が二つ" / "赤い丸が"."""
    bare = bare_phrase(entity)
    return f"{bare}が{COUNTS[entity.count]}" if entity.count > 1 else f"{bare}が"


def realise(m: Message) -> str:
    a = noun_phrase(m.subject)
    t = m.template
    if m.layout == "video":
        predicate, attributive = MOTIONS[m.motion]
        if t == "np":
            return finish(f"{attributive}{a}", False)
        if t == "background":
            return finish(f"{BACKGROUNDS[m.background][1]}{a}が{predicate}", True, "。")
        return finish(f"{a}が{predicate}", True, "。")
    place = BACKGROUNDS[m.background][0]
    if t == "background":
        if m.other is None:
            return finish(f"{place}に{subject(m.subject)}あります", True, "。")
        return finish(f"{place}に{a}と{noun_phrase(m.other)}があります", True, "。")
    if m.layout == "single":
        region = REGIONS[m.region]
        if t == "np":
            return finish(f"画面の{region}にある{a}", False)
        if t == "position_first":
            return finish(f"画面の{region}に{a}があります", True, "。")
        return finish(f"{a}が{region}にあります", True, "。")
    if m.layout == "group":
        if t == "sentence":
            return finish(f"{subject(m.subject)}あります", True, "。")
        return finish(a, False)
    b = noun_phrase(m.other)
    where = f"{b}の{RELATIONS[m.relation]}"
    if t == "np":
        return finish(f"{where}にある{a}", False)
    if t == "next_to":
        return finish(f"{a}と{b}が並んでいます", True, "。")
    if t == "relation_first":
        return finish(f"{where}に{subject(m.subject)}あります", True, "。")
    if t == "converse":
        new_subject, inverse, other = converse(m)
        return finish(f"{noun_phrase(other)}の{RELATIONS[inverse]}には{noun_phrase(new_subject)}があります", True, "。")
    if m.subject.count > 1:
        return finish(f"{subject(m.subject)}、{where}にあります", True, "。")
    return finish(f"{a}が{where}にあります", True, "。")


COLOUR_FORMS = {c: (w,) for c, w in COLOURS.items()}
SHAPE_FORMS = {s: (w,) for s, w in NOUNS.items()}
SIZE_FORMS = {s: (w,) for s, w in SIZES.items()}
BACKGROUND_FORMS = {b: forms for b, forms in BACKGROUNDS.items()}
