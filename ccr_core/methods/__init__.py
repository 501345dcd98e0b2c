"""The CCR methods, one file each, registered by name in ``METHODS``; ``build_method(name, config)``
creates one. Importing this package registers every method."""
from ccr_core.methods.base import METHODS, CCRMethod, MethodConfig, TextBatch, build_method
from ccr_core.methods import baseline, cl2cm, floor, nrccr, one_to_k, uml  # noqa: F401  (register the methods)

__all__ = ["METHODS", "CCRMethod", "MethodConfig", "TextBatch", "build_method"]
