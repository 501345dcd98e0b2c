"""The two errors the dashboard shows to people: bad input, and a world that is not built yet."""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input (empty query, unknown method, unreadable image ...): the message is for the user."""


class WorldNotBuilt(RuntimeError):
    """The world's bundle or checkpoints are missing; the message says which command builds them."""
