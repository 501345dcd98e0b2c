"""A tiny name → factory registry (the timm / open_clip pattern) used for methods and backbones, with plugins:
factories registered from outside the package, by an installed distribution's entry point or by a module named
at run time (``--plugin``, an environment variable)."""
from __future__ import annotations

import fnmatch
import importlib
import sys
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")
_HOME = __name__.split(".")[0]  # the package whose factories are built-ins


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered (a ValueError too: command lines report it in one line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PluginError(ValueError):
    """A plugin that could not be loaded; the message names the plugin and the cause."""


class Registry(Generic[T]):
    """Maps names to factories; registering a name twice is an error, not a silent override.

    ``plugin_group`` is the entry-point group (``importlib.metadata``) whose entries :meth:`load_plugins`
    imports: an entry's name is the name it registers, its value a module that registers it or the factory itself.
    """

    def __init__(self, kind: str, plugin_group: str | None = None):
        self.kind = kind
        self.plugin_group = plugin_group
        self._entries: dict[str, Callable[..., T]] = {}
        self._plugin_of: dict[str, str] = {}  # registered name -> the plugin that registered it
        self._loaded: set[str] = set()  # plugins imported (entry-point values, module names)
        self.plugin_errors: dict[str, str] = {}  # plugin -> why it failed to load

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._entries:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            broken = "".join(f"; plugin {p} failed to load ({why})" for p, why in sorted(self.plugin_errors.items()))
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}{broken}") from None

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str = "*", plugins: bool = True) -> list[str]:
        """Registered names matching ``pattern``; ``plugins=False``: only the built-ins."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern) and (plugins or self.plugin_of(n) is None))

    def plugin_of(self, name: str) -> str | None:
        """The plugin that registered ``name``: its entry point or module; None for a built-in (defined in ccr_core)."""
        if name in self._plugin_of:
            return self._plugin_of[name]
        module = getattr(self._entries[name], "__module__", "") or ""
        return None if module.split(".")[0] == _HOME else module

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------------------------------------
    # plugins
    # ------------------------------------------------------------------------------------------------
    def load_plugins(self, modules: Iterable[str] = (), entry_points: bool = True, strict: bool = False) -> list[str]:
        """Import the plugins of :attr:`plugin_group` (when ``entry_points``) and the named ``modules``; return the
        names they registered. Each plugin is imported once per process. A plugin that fails (an import error, a
        name registered twice, an entry point that registers nothing under its name) registers nothing: with
        ``strict`` a :class:`PluginError` naming it is raised, otherwise the cause is kept in :attr:`plugin_errors`
        (and named by :meth:`get` when its method is asked for), so one broken plugin does not break every command."""
        added: list[str] = []
        if entry_points and self.plugin_group:
            from importlib.metadata import entry_points as find_entry_points

            seen = set()
            for ep in find_entry_points(group=self.plugin_group):
                if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
                    continue
                seen.add((ep.name, ep.value))
                dist = getattr(ep.dist, "name", None)
                label = f"{ep.name} = {ep.value}" + (f" ({dist})" if dist else "")
                if _initializing(ep.module):  # importing ccr_core from its own top: it registers itself when done
                    continue
                added += self._load_one(label, ep.value, lambda ep=ep: ep.load(), ep.name, strict)
        for module in modules:
            module = module.strip()
            if module and not _initializing(module):
                added += self._load_one(module, module, lambda module=module: importlib.import_module(module), None, strict)
        return added

    def _load_one(self, label: str, key: str, load: Callable[[], object], expected: str | None, strict: bool) -> list[str]:
        if key in self._loaded:
            return []
        before = set(self._entries)
        try:
            obj = load()
            if expected is not None and not isinstance(obj, type(sys)) and expected not in self._entries:
                self.register(expected)(obj)  # the entry point names a factory, not a module that registers one
            if expected is not None and expected not in self._entries:
                raise PluginError(f"it was imported but registered no {self.kind} named {expected!r} "
                                  f"(registered: {', '.join(sorted(set(self._entries) - before)) or 'nothing'})")
        except Exception as exc:  # noqa: BLE001 -- any failure of third-party code is reported, not raised into every command
            for name in set(self._entries) - before:  # nothing half-registered stays
                del self._entries[name]
            why = (f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginError) else str(exc)) + _where(exc)
            if strict:
                raise PluginError(f"{self.kind} plugin {label} failed to load: {why}") from exc
            self.plugin_errors[label] = why
            return []
        self._loaded.add(key)
        self.plugin_errors.pop(label, None)
        added = sorted(set(self._entries) - before)
        for name in added:
            self._plugin_of[name] = label
        return added


def _where(exc: BaseException) -> str:
    """" (at FILE, line N)": where in the plugin's own code ``exc`` was raised (a syntax error: where the parser
    stopped), skipping the import machinery and this module; "" when no such frame is known (a missing module)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f" (at {exc.filename}, line {exc.lineno})"
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen") and "importlib" not in f.filename and f.filename != __file__]
    return f" (at {frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def _initializing(module: str) -> bool:
    """Whether ``module`` is being imported right now (a plugin that imports the registry's package first)."""
    spec = getattr(sys.modules.get(module), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))
