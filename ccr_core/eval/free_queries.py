"""Free-typed queries on the demo world: words and phrasings the caption generator never uses.

Each query names one object by colour and shape with synonyms outside the generator's vocabulary
("crimson disc", "un petit carré vert" in other word orders, "绯红色的圆盘", ...). A retrieved test
image is a hit when its scene (``scenes.jsonl``) holds an object of that colour and shape. We report
precision@10 per language next to the chance rate (the fraction of test images that hold such an
object), so "retrieves sensibly" is a number, not an impression.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# (language, query, colour, shape). Synonyms and phrasings deliberately outside the templates.
FREE_QUERIES: list[tuple[str, str, str, str]] = [
    ("en", "a crimson disc beside a star", "red", "circle"),
    ("en", "scarlet round dot", "red", "circle"),
    ("en", "an emerald box", "green", "square"),
    ("en", "golden love symbol", "yellow", "heart"),
    ("en", "violet six-sided shape", "purple", "hexagon"),
    ("en", "navy pyramid shape", "blue", "triangle"),
    ("de", "eine knallrote Scheibe", "red", "circle"),
    ("de", "ein smaragdgrüner Würfel", "green", "square"),
    ("de", "goldenes Liebessymbol", "yellow", "heart"),
    ("de", "ein violettes Sechseck irgendwo im Bild", "purple", "hexagon"),
    ("fr", "un petit carré vert", "green", "square"),
    ("fr", "un disque écarlate", "red", "circle"),
    ("fr", "un cœur doré", "yellow", "heart"),
    ("fr", "une pyramide bleu marine", "blue", "triangle"),
    ("cs", "šarlatový kotouč", "red", "circle"),
    ("cs", "smaragdová kostka", "green", "square"),
    ("cs", "zlaté srdíčko", "yellow", "heart"),
    ("cs", "fialový šestiúhelník někde na obrázku", "purple", "hexagon"),
    ("zh", "绯红色的圆盘", "red", "circle"),
    ("zh", "翠绿的方块", "green", "square"),
    ("zh", "金色的心形图案", "yellow", "heart"),
    ("zh", "深蓝色的三角", "blue", "triangle"),
    ("ja", "真紅の円盤", "red", "circle"),
    ("ja", "エメラルド色の箱", "green", "square"),
    ("ja", "金色のハートマーク", "yellow", "heart"),
    ("ja", "紺色の三角形", "blue", "triangle"),
]


@dataclass
class FreeQueryResult:
    lang: str
    query: str
    precision_at_10: float
    chance: float


def load_scenes(bundle_root: str | Path) -> dict[str, list[tuple[str, str]]]:
    """item id -> [(colour, shape), ...] of the objects drawn in it."""
    out = {}
    with open(Path(bundle_root) / "scenes.jsonl", encoding="utf-8") as handle:
        for line in handle:
            scene = json.loads(line)
            out[scene["item"]] = [(o["colour"], o["shape"]) for o in scene["objects"]]
    return out


def evaluate_free_queries(encode_query, image_emb: np.ndarray, item_ids: list[str], scenes: dict, k: int = 10) -> list[FreeQueryResult]:
    """``encode_query(text, lang) -> (E,)`` embedding; ``image_emb`` (N, E) of the test images ``item_ids``."""
    results = []
    for lang, query, colour, shape in FREE_QUERIES:
        q = np.asarray(encode_query(query, lang), dtype=np.float32)
        top = np.argsort(-(image_emb @ q), kind="stable")[:k]
        hits = [(colour, shape) in scenes[item_ids[i]] for i in top]
        chance = float(np.mean([(colour, shape) in scenes[i] for i in item_ids]))
        results.append(FreeQueryResult(lang, query, float(np.mean(hits)), chance))
    return results


def summarise(results: list[FreeQueryResult]) -> dict[str, dict[str, float]]:
    """Per language: mean precision@10 and mean chance rate."""
    langs = sorted({r.lang for r in results})
    return {lang: {"precision_at_10": float(np.mean([r.precision_at_10 for r in results if r.lang == lang])),
                   "chance": float(np.mean([r.chance for r in results if r.lang == lang]))} for lang in langs}
