"""Language guessing, in one place: the language of a typed query among every language the text
encoder knows, not only the world's, and the display name of a language code.

``py3langid`` (a maintained fork of langid.py: character n-gram naive Bayes over 97 languages, NumPy
only) ranks the languages of :data:`ENCODER_LANGUAGES`; the world's languages and the widely used
ones of ``LANGUAGE_NAMES`` get a higher prior (a Russian query is Russian rather than Macedonian, a
Spanish one Spanish). Where that is still unsure -- a text of a word or two, ids, digits -- the
world's own caption guesser (:class:`LanguageGuesser`, trained on the world's captions) decides
among the world's languages. A text without letters (emoji, digits, punctuation) has no language:
:func:`has_letters` lets the search say so instead of a confident guess.
"""
from __future__ import annotations

import math
import threading
import unicodedata
from collections import Counter

from ccr_core.data.bundle import LANGUAGE_NAMES

# The languages of the multilingual e5 text encoder's pre-training corpus (XLM-R's CC-100 list), that
# langid also identifies: code -> English name. Any of them can be searched in.
ENCODER_LANGUAGES = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani", "be": "Belarusian",
    "bg": "Bulgarian", "bn": "Bengali", "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "fy": "Western Frisian", "ga": "Irish",
    "gd": "Scottish Gaelic", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa", "he": "Hebrew", "hi": "Hindi",
    "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian",
    "ja": "Japanese", "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean",
    "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian", "mg": "Malagasy",
    "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "my": "Burmese",
    "ne": "Nepali", "nl": "Dutch", "no": "Norwegian", "om": "Oromo", "or": "Odia", "pa": "Punjabi", "pl": "Polish",
    "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit", "si": "Sinhala",
    "sk": "Slovak", "sl": "Slovenian", "so": "Somali", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ug": "Uyghur",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "xh": "Xhosa", "zh": "Chinese",
}

PRIOR_WORLD = 6.0  # prior weight of a language the world has captions in
PRIOR_COMMON = 3.0  # of a widely used language (those LANGUAGE_NAMES names); every other language: 1
CONFIDENT = 0.4  # posterior the top language needs; below it the world's own guesser decides ...
PLAUSIBLE = 0.01  # ... unless langid finds its pick implausible (Cyrillic text in an English/Chinese world)

_identifier = None
_identifier_lock = threading.Lock()


def _langid():
    """py3langid's identifier over :data:`ENCODER_LANGUAGES`, loaded once (about a second)."""
    global _identifier
    with _identifier_lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            ident.set_languages([l for l in ENCODER_LANGUAGES if l in ident.nb_classes])
            _identifier = ident
        return _identifier


def language_ranking(text: str, world_languages=()) -> list[tuple[str, float]]:
    """(language, posterior) of every encoder language for ``text``, most likely first."""
    ident = _langid()
    world = set(world_languages)
    weighted = []
    for lang, p in ident.rank(text):
        prior = PRIOR_WORLD if lang in world else PRIOR_COMMON if lang in LANGUAGE_NAMES else 1.0
        weighted.append((str(lang), float(p) * prior))
    total = sum(w for _, w in weighted) or 1.0
    return sorted(((l, w / total) for l, w in weighted), key=lambda lw: -lw[1])


def detect_language(text: str, world_languages=(), fallback=None) -> str:
    """The language of ``text``: langid's (with the priors above) when it is sure, else ``fallback(text)``
    (the world's caption guesser) where langid finds that plausible, else langid's most likely one."""
    ranking = language_ranking(text[:500], world_languages)
    if not ranking:
        return fallback(text) if fallback is not None else "en"
    top, p = ranking[0]
    if p >= CONFIDENT or fallback is None:
        return top
    guess = fallback(text)
    return guess if dict(ranking).get(guess, 0.0) >= PLAUSIBLE else top


def known_language(code: str) -> bool:
    return code in ENCODER_LANGUAGES or code in LANGUAGE_NAMES


def language_name(code: str) -> str:
    """English name of a language code (the code itself when unknown)."""
    return LANGUAGE_NAMES.get(code) or ENCODER_LANGUAGES.get(code, code)


def has_letters(text: str) -> bool:
    """Whether ``text`` has a letter of any script (emoji, digits and punctuation alone have no language)."""
    return any(ch.isalpha() for ch in text)


# --------------------------------------------------------------------------------------------------
# the world's own guesser, for short texts langid is unsure about

_SCRIPT_LANGS = {"CJK": ("zh", "ja"), "HIRAGANA": ("ja",), "KATAKANA": ("ja",), "HANGUL": ("ko",), "CYRILLIC": ("ru", "uk", "bg"),
                 "ARABIC": ("ar", "fa", "ur"), "GREEK": ("el",), "DEVANAGARI": ("hi", "mr", "ne"), "THAI": ("th",), "HEBREW": ("he",)}


def _script(ch: str) -> str:
    try:
        return unicodedata.name(ch).split()[0]
    except ValueError:
        return "OTHER"


def _scripts(text: str) -> Counter:
    return Counter(_script(ch) for ch in text if ch.isalpha())


class LanguageGuesser:
    """Naive Bayes over character 1-3-grams learned from the world's own captions, restricted first
    by writing system (kana means Japanese, Han without kana Chinese, ...). Only the world's languages
    are candidates, so it is right on the captions the models were trained for."""

    def __init__(self, texts_by_lang: dict[str, list[str]]):
        self.langs = sorted(texts_by_lang)
        self.counts: dict[str, Counter] = {}
        self.totals: dict[str, int] = {}
        self.scripts: dict[str, Counter] = {}
        for lang, texts in texts_by_lang.items():
            grams: Counter = Counter()
            scripts: Counter = Counter()
            for text in texts:
                grams.update(self._grams(text))
                scripts.update(_scripts(text))
            self.counts[lang], self.totals[lang], self.scripts[lang] = grams, sum(grams.values()), scripts
        self.vocab = len(set().union(*self.counts.values())) if self.counts else 1

    @staticmethod
    def _grams(text: str) -> list[str]:
        t = f" {text.lower()} "
        return [t[i : i + n] for n in (1, 2, 3) for i in range(len(t) - n + 1)]

    def guess(self, text: str) -> str:
        if not self.langs:
            return "en"
        candidates = list(self.langs)
        scripts = _scripts(text)
        if scripts:
            main = "KATAKANA" if (scripts["HIRAGANA"] + scripts["KATAKANA"]) and "ja" in self.langs else scripts.most_common(1)[0][0]
            by_profile = [l for l in candidates if self.scripts[l] and self.scripts[l].most_common(1)[0][0] == main]
            by_table = [l for l in _SCRIPT_LANGS.get(main, ()) if l in candidates]
            candidates = by_profile or by_table or candidates
        grams = self._grams(text[:500])
        best, best_score = candidates[0], -math.inf
        for lang in candidates:
            counts, total = self.counts[lang], self.totals[lang] + self.vocab
            score = sum(math.log((counts.get(g, 0) + 1) / total) for g in grams)
            if score > best_score:
                best, best_score = lang, score
        return best
