"""The CCR methods, one file each, registered by name in ``METHODS``; ``build_method(name, config)``
creates one. Importing this package registers every method."""
from ccr_core.methods.base import METHODS, CCRMethod, MethodConfig, TextBatch, build_method
from ccr_core.methods import baseline, cl2cm, floor, nrccr, one_to_k, uml  # noqa: F401  (register the methods)

# The order methods are shown in every table and chart: the floor (the reference), the contrastive baseline, then
# the field's methods by publication year; a method registered later (a plugin) follows, alphabetically.
DISPLAY_ORDER = ("floor", "baseline", "baseline-en", "nrccr", "cl2cm", "uml", "one_to_k")


def method_sort_key(name: str) -> tuple[int, str]:
    """Sort key of a method name (``"uml"``, ``"uml-noise0.4"``, ``"uml-ft"`` sort by their method) in :data:`DISPLAY_ORDER`."""
    base = name.split("+", 1)[0].split("@", 1)[0]
    for suffix in ("-noise", "-ft"):
        if suffix in base and base.split(suffix, 1)[0] in DISPLAY_ORDER:
            base = base.split(suffix, 1)[0]
    return (DISPLAY_ORDER.index(base) if base in DISPLAY_ORDER else len(DISPLAY_ORDER), name)


__all__ = ["METHODS", "DISPLAY_ORDER", "CCRMethod", "MethodConfig", "TextBatch", "build_method", "method_sort_key"]
