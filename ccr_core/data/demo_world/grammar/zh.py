"""Chinese captions: numeral + measure word + modifiers + noun, locative phrases "在 B 的左边",
existentials "B 的左边有 A", and 两 (not 二) before a measure word.

Two natural modifier orders alternate with the message's variant: "一个大的红色圆形" and
"一个红色的大圆".
"""
from __future__ import annotations

from . import en
from .base import UNTRANSLATED, WRONG_SENSE, Entity, Message, converse, finish

NOUNS = {  # full noun, short form used after 大/小, measure word
    "circle": ("圆形", "圆", "个"), "square": ("正方形", "正方形", "个"), "triangle": ("三角形", "三角形", "个"),
    "star": ("星星", "星星", "颗"), "heart": ("爱心", "爱心", "颗"), "cross": ("十字", "十字", "个"),
    "ring": ("圆环", "圆环", "个"), "hexagon": ("六边形", "六边形", "个"), "diamond": ("菱形", "菱形", "个"),
}
# MT picking the wrong sense: town square, celebrity, ringtone, crossroads, the heart organ.
WRONG_SENSE_SHAPES = {
    "square": ("广场", "广场", "个"), "star": ("明星", "明星", "个"), "ring": ("铃声", "铃声", "个"),
    "cross": ("十字路口", "十字路口", "个"), "heart": ("心脏", "心脏", "颗"),
}
COLOURS = {
    "red": "红色", "orange": "橙色", "yellow": "黄色", "green": "绿色", "blue": "蓝色", "light_blue": "浅蓝色",
    "purple": "紫色", "pink": "粉色", "brown": "棕色", "white": "白色", "black": "黑色",
}
WRONG_SENSE_COLOURS = {"light_blue": "轻蓝色"}  # 轻 = light in weight
SIZES = {"small": "小", "large": "大"}
NUMBERS = {1: "一", 2: "两", 3: "三", 4: "四"}
RELATIONS = {"left_of": "左边", "right_of": "右边", "above": "上面", "below": "下面"}
REGIONS = {"left": "左边", "right": "右边", "top": "上方", "bottom": "下方", "centre": "中间"}
BACKGROUNDS = {
    "white": "白色背景上", "grey": "灰色背景上", "black": "黑色背景上", "stripes": "条纹背景上",
    "grass": "草地上", "sky": "天空中", "sea": "海面上",
}
MOTIONS = {  # predicate, attributive form
    "left": ("向左移动", "向左移动的"), "right": ("向右移动", "向右移动的"),
    "up": ("向上移动", "向上移动的"), "down": ("向下移动", "向下移动的"),
    "grow": ("逐渐变大", "逐渐变大的"), "shrink": ("逐渐变小", "逐渐变小的"),
    "rotate": ("在旋转", "旋转着的"), "bounce": ("在上下跳动", "上下跳动的"),
}


def _words(entity: Entity) -> tuple[str, str, str, str | None, str | None]:
    """(full noun, short noun, measure word, colour, size) as this caption says them."""
    table = WRONG_SENSE_SHAPES if entity.shape_sense == WRONG_SENSE and entity.shape in WRONG_SENSE_SHAPES else NOUNS
    full, short, measure = table[entity.shape]
    if entity.shape_sense == UNTRANSLATED:
        full = short = en.untranslated_shape(entity)
    colour = None
    if entity.colour:
        if entity.colour_sense == UNTRANSLATED:
            colour = en.untranslated_colour(entity)
        elif entity.colour_sense == WRONG_SENSE and entity.colour in WRONG_SENSE_COLOURS:
            colour = WRONG_SENSE_COLOURS[entity.colour]
        else:
            colour = COLOURS[entity.colour]
    size = SIZES[entity.size] if entity.size else None
    return full, short, measure, colour, size


def noun_phrase(entity: Entity, variant: int = 0) -> str:
    """"一个大的红色圆形" (variant 0) or "一个红色的大圆" (variant 1); "两颗蓝色的星星"."""
    full, short, measure, colour, size = _words(entity)
    if entity.odd_order:  # literal MT: noun first, modifiers trailing
        body = full + (colour or "") + (size or "")
    elif variant % 2 == 0:  # 大的红色圆形 / 红色的圆形 / 大的圆形
        if size:
            body = f"{size}的{colour or ''}{full}"
        else:
            body = f"{colour}的{full}" if colour else full
    else:  # 红色的大圆 / 红色的圆 / 大圆
        tail = f"{size}{short}" if size else (short if colour else full)
        body = f"{colour}的{tail}" if colour else tail
    return NUMBERS[entity.count] + measure + body


def compact_phrase(entity: Entity, numeral: bool = True) -> str:
    """Modifiers without 的, for a noun inside a longer modifier: "蓝色小星星" ("两个红色小圆")."""
    full, short, measure, colour, size = _words(entity)
    body = (colour or "") + (f"{size}{short}" if size else full)
    return NUMBERS[entity.count] + measure + body if numeral or entity.count > 1 else body


def _attributive(entity: Entity, motion: str) -> str:
    """"一个向左移动的红色圆形": the motion as a modifier before the compact noun phrase."""
    _, _, measure, _, _ = _words(entity)
    return NUMBERS[entity.count] + measure + MOTIONS[motion][1] + compact_phrase(entity, numeral=False)


def realise(m: Message) -> str:
    v = m.variant
    a = noun_phrase(m.subject, v)
    t = m.template
    if m.layout == "video":
        if t == "np":
            return finish(_attributive(m.subject, m.motion), False)
        if t == "background":
            return finish(f"{BACKGROUNDS[m.background]}，{a}{MOTIONS[m.motion][0]}", True, "。")
        return finish(f"{a}{MOTIONS[m.motion][0]}", True, "。")
    if t == "background":
        things = a if m.other is None else f"{a}和{noun_phrase(m.other, v)}"
        return finish(f"{BACKGROUNDS[m.background]}有{things}", True, "。")
    if m.layout == "single":
        region = REGIONS[m.region]
        if t == "np":
            return finish(f"画面{region}的{a}", False)
        if t == "position_first":
            return finish(f"画面{region}有{a}", True, "。")
        return finish(f"{a}在画面{region}", True, "。")
    if m.layout == "group":
        if t == "sentence":
            return finish(f"画面中有{a}", True, "。")
        return finish(a, False)
    b = noun_phrase(m.other, v)
    relation = RELATIONS[m.relation]
    if t == "np":  # "蓝色小星星左边的一个红色的大圆"
        return finish(f"{compact_phrase(m.other, numeral=False)}{relation}的{a}", False)
    if t == "next_to":
        return finish(f"{a}在{b}旁边", True, "。")
    if t == "relation_first":
        return finish(f"{b}的{relation}有{a}", True, "。")
    if t == "converse":
        subject, inverse, other = converse(m)
        return finish(f"{noun_phrase(subject, v)}位于{noun_phrase(other, v)}的{RELATIONS[inverse]}", True, "。")
    return finish(f"{a}在{b}的{relation}", True, "。")


COLOUR_FORMS = {c: (w,) for c, w in COLOURS.items()}
SHAPE_FORMS = {s: tuple(sorted({full, short})) for s, (full, short, _) in NOUNS.items()}
SIZE_FORMS = {s: (w,) for s, w in SIZES.items()}
BACKGROUND_FORMS = {b: (p,) for b, p in BACKGROUNDS.items()}
