"""The test-caption picker's server-side search: captions found by words of their text or their id, one
page of matches at a time, so the page never holds a world's thousands of captions."""
from __future__ import annotations

from ccr_core.dashboard.errors import InputError
from ccr_core.dashboard.world import World
from ccr_core.data.bundle import Caption


def caption_label(c: Caption) -> str:
    return f"[{c.lang}] {c.text}  ·  {c.id}"


def caption_choices(world: World, lang: str | None = None, limit: int = 50) -> list[tuple[str, str]]:
    """(label, caption id) of the first ``limit`` test captions in ``lang`` (all languages for None/"all")."""
    return find_captions(world, "", lang, limit)


def find_captions(world: World, text: str | None, lang: str | None = None, limit: int = 50) -> list[tuple[str, str]]:
    """(label, caption id) of up to ``limit`` test captions in ``lang`` whose text or id contains ``text``
    (case-insensitive; every word of it, in any order), exact id matches first: the server-side search
    behind the caption picker, so the page never holds thousands of choices."""
    words = (text or "").strip().casefold().split()
    pool = world.test_captions_in(lang)
    if not words:
        return [(caption_label(c), c.id) for c in pool[:limit]]
    exact = [c for c in pool if c.id.casefold() == " ".join(words)]
    out = list(exact)
    for c in pool:
        if len(out) >= limit:
            break
        haystack = f"{c.text} {c.id}".casefold()
        if c not in exact and all(w in haystack for w in words):
            out.append(c)
    return [(caption_label(c), c.id) for c in out[:limit]]


def caption_by_id(world: World, caption_id: str | None) -> Caption:
    """The test caption with this id; a typed text that is not an id picks its first match."""
    pos = world.caption_pos.get(caption_id or "")
    if pos is None:
        matches = find_captions(world, caption_id, None, 1) if (caption_id or "").strip() else []
        if not matches:
            raise InputError("Choose a test caption from the list (type a few words or an id to find one).")
        pos = world.caption_pos[matches[0][1]]
    return world.captions[pos]
