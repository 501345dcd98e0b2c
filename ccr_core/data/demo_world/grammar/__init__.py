"""Caption realisers of the demo world, one module per language, and the words each one uses.

``realise(lang, message)`` turns a :class:`Message` into a caption. The vocabulary tables below list
every surface form a realiser writes for a colour, shape, size or background (all inflections, lower
case), so a caption can be checked against the scene it describes.
"""
from __future__ import annotations

from . import cs, de, en, fr, ja, zh
from .base import NORMAL, TEMPLATES, UNTRANSLATED, WRONG_SENSE, Entity, Message, for_back_translation, templates_for

LANGUAGES = ("en", "de", "fr", "cs", "zh", "ja")
TARGET_LANGUAGES = LANGUAGES[1:]
_MODULES = {"en": en, "de": de, "fr": fr, "cs": cs, "zh": zh, "ja": ja}
# Languages written without spaces between words (captions are matched as substrings there).
UNSPACED = frozenset({"zh", "ja"})

COLOUR_WORDS = {lang: m.COLOUR_FORMS for lang, m in _MODULES.items()}  # lang -> colour -> forms
SHAPE_WORDS = {lang: m.SHAPE_FORMS for lang, m in _MODULES.items()}  # lang -> shape -> forms
SIZE_WORDS = {lang: m.SIZE_FORMS for lang, m in _MODULES.items()}
BACKGROUND_WORDS = {lang: m.BACKGROUND_FORMS for lang, m in _MODULES.items()}
# The English words an MT system can mistranslate, per target language (shape or colour names).
WRONG_SENSE_SHAPES = {lang: frozenset(m.WRONG_SENSE_SHAPES) for lang, m in _MODULES.items() if lang != "en"}
WRONG_SENSE_COLOURS = {lang: frozenset(m.WRONG_SENSE_COLOURS) for lang, m in _MODULES.items() if lang != "en"}


def realise(lang: str, message: Message) -> str:
    """The caption of ``message`` in ``lang``."""
    return _MODULES[lang].realise(message)


__all__ = [
    "LANGUAGES", "TARGET_LANGUAGES", "UNSPACED", "COLOUR_WORDS", "SHAPE_WORDS", "SIZE_WORDS", "BACKGROUND_WORDS",
    "WRONG_SENSE_SHAPES", "WRONG_SENSE_COLOURS", "Entity", "Message", "TEMPLATES", "NORMAL", "WRONG_SENSE",
    "UNTRANSLATED", "realise", "templates_for", "for_back_translation",
]
