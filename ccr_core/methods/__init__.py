"""The CCR methods, one file each, registered by name in ``METHODS``; ``build_method(name, config)``
creates one. Importing this package registers every method: the built-ins, then the plugins.

A plugin is a method in another package, registered like the built-ins (``@METHODS.register("name")`` on a
:class:`CCRMethod` subclass). It is found through the entry-point group ``ccr_lab.methods`` of an installed
distribution (``[project.entry-points."ccr_lab.methods"] name = "package.module"`` in its pyproject.toml), or by
module name in ``CCR_PLUGINS=mod1,mod2`` or ``ccr --plugin mod``. ``examples/ccr_sigmoid`` is a worked example;
``ccr_core.testing.check_method(name)`` runs the registry's checks on one method.
"""
import importlib
import os
import pkgutil
import warnings

from ccr_core.methods.base import (METHODS, PLUGIN_GROUP, CCRMethod, MethodConfig, TextBatch, build_method, main_methods,
                                   method_label, method_with_role, methods_with, ordered_methods)
from ccr_core.registry import PluginError


def _import_built_ins() -> None:
    """Import every module of this package, so each built-in method registers itself: a new method is one file here."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_built_ins()

# The order methods are shown in every table and chart, from each built-in's ``display_order``: the floor (the
# reference), the contrastive baseline, then the field's methods by publication year; a method registered later
# (a plugin) follows, alphabetically.
DISPLAY_ORDER = tuple(ordered_methods(plugins=False))
REFERENCE = method_with_role("reference")  # the floor: the simplest model, which every method must beat
BASELINE = method_with_role("baseline")  # what the methods are compared against
DEFAULT_METHOD = BASELINE  # what ``ccr train`` trains when no method is named

PLUGIN_ENV = "CCR_PLUGINS"  # comma-separated modules to import as plugins, in every process (Ray workers too)


def method_sort_key(name: str) -> tuple[int, str]:
    """Sort key of a method name (``"uml"``, ``"uml-noise0.4"``, ``"uml-ft"`` sort by their method) in :data:`DISPLAY_ORDER`."""
    base = name.split("+", 1)[0].split("@", 1)[0]
    for suffix in ("-noise", "-ft"):
        if suffix in base and base.split(suffix, 1)[0] in DISPLAY_ORDER:
            base = base.split(suffix, 1)[0]
    return (DISPLAY_ORDER.index(base) if base in DISPLAY_ORDER else len(DISPLAY_ORDER), name)


def plugin_modules() -> list[str]:
    """The modules named in ``CCR_PLUGINS``."""
    return [m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()]


def load_plugins(modules=(), strict: bool = True) -> list[str]:
    """Import plugin modules (``--plugin``) and every ``ccr_lab.methods`` entry point not imported yet; return the
    method names they registered. ``strict``: a plugin that fails raises :class:`PluginError` naming it."""
    return METHODS.load_plugins(modules, strict=strict)


def _load_startup_plugins() -> None:
    """Entry points and ``CCR_PLUGINS`` at import: a broken plugin is a warning naming it (and the error
    of ``METHODS.get`` for its method), never an import error of ccr_core."""
    before = dict(METHODS.plugin_errors)
    METHODS.load_plugins(plugin_modules(), strict=False)
    for plugin, why in METHODS.plugin_errors.items():
        if before.get(plugin) != why:
            warnings.warn(f"CCR Lab: method plugin {plugin} failed to load, its methods are unavailable: {why}", stacklevel=2)


_load_startup_plugins()

__all__ = ["METHODS", "BASELINE", "DEFAULT_METHOD", "DISPLAY_ORDER", "REFERENCE", "PLUGIN_ENV", "PLUGIN_GROUP", "CCRMethod", "MethodConfig", "PluginError", "TextBatch",
           "build_method", "load_plugins", "main_methods", "method_label", "method_sort_key", "method_with_role", "methods_with", "ordered_methods",
           "plugin_modules"]
