"""Gradio glue shared by the tab builders (``build_tab`` in each tab module): handlers that turn bad
input into a warning instead of an error page, the field of a select event, and :class:`Page`, what
one page's tabs share (the world, the model pickers a finished training run refreshes).

Gradio is imported inside the functions only, so ``import ccr_core.dashboard`` (and the whole core)
works without it; only ``app.py`` calls the builders."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from ccr_core.dashboard.world import InputError, World, uncertainty_models

log = logging.getLogger("ccr.app")

SEARCH_CHOICES = 50  # choices a server-side search dropdown shows at a time (the page never holds them all)


def guarded(n_outputs: int, status_at: int = 0, on_error: dict | None = None):
    """Decorate a handler: an :class:`InputError` (or any crash) becomes a warning toast and a
    ``⚠ message`` in output ``status_at``; the other outputs are left as they are, except those
    ``on_error`` gives a value for (output index -> value: results that must not stay under the error)."""
    import gradio as gr

    def decorator(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except InputError as exc:
                message = str(exc)
                gr.Warning(message)
            except Exception as exc:  # noqa: BLE001 -- logged with its traceback; the user gets one line
                log.exception("%s failed", fn.__name__)
                message = f"Something went wrong ({type(exc).__name__}: {str(exc)[:200]}). The server log has the details."
                gr.Warning(message)
            out = [gr.skip()] * n_outputs
            for index, value in (on_error or {}).items():
                out[index] = value
            out[status_at] = f"⚠ {message}"
            return out[0] if n_outputs == 1 else tuple(out)

        return wrapper

    return decorator


def takes_event(fn):
    """Mark a handler's ``evt`` parameter as Gradio event data. The tab modules use postponed
    annotations (``from __future__ import annotations``) and import gradio only inside the builder,
    so Gradio could not resolve a written ``evt: gr.EventData`` and would not pass the event."""
    import gradio as gr

    target = fn
    while target is not None:
        target.__annotations__ = {**getattr(target, "__annotations__", {}), "evt": gr.EventData}
        target = getattr(target, "__wrapped__", None)
    return fn


def takes_request(fn):
    """Mark a handler's ``request`` parameter as the Gradio request (for its browser session), as
    :func:`takes_event` does for ``evt``."""
    import gradio as gr

    target = fn
    while target is not None:
        target.__annotations__ = {**getattr(target, "__annotations__", {}), "request": gr.Request}
        target = getattr(target, "__wrapped__", None)
    return fn


def session_of(request) -> str:
    """The browser session a request comes from (each page load, each API client is one); "" without one."""
    return str(getattr(request, "session_hash", None) or "")


def selected(evt, key: str):
    """A field of a select event's data; a call without a selection (e.g. from a script) is a user error.

    Handlers are annotated with gr.EventData, not gr.SelectData, whose constructor fails on a call
    that carries no event data before the handler could answer."""
    data = getattr(evt, "_data", None) or {}
    if data.get(key) is None:
        raise InputError("Click an entry to pick it (this event needs a selection).")
    return data[key]


@dataclass
class Page:
    """What the tabs of one page share: the world and the components other tabs update."""

    world: World
    model_pickers: list = field(default_factory=list)  # components whose choices are the world's models
    uncertainty_pickers: list = field(default_factory=list)  # components whose choices are the UML models
    components: dict = field(default_factory=dict)  # named components one tab hands to another
    choosers: dict = field(default_factory=dict)  # id(picker) -> function giving its choices, where not every model
    loaders: list = field(default_factory=list)  # (function, outputs) run at every page load: live values, never build-time ones
    lazies: list = field(default_factory=list)  # (component, function) filled at page load (see lazy)
    header: object = None  # the page header (app.py), refreshed when a session's run finishes
    header_text: object = None  # session -> the header's Markdown

    def lazy(self, component, fn) -> None:
        """Give ``component`` its value (or choices: ``fn`` may return an update) at page load instead of in the
        page config: long choice lists, a long text and a drawn figure would otherwise be most of the JSON the
        page must load before it draws anything (the config stays under 200 KB)."""
        self.lazies.append((component, fn))

    def lazy_loader(self):
        """(function, outputs) that fills every :meth:`lazy` component in one page-load event."""
        components = [c for c, _ in self.lazies]
        fns = [fn for _, fn in self.lazies]

        def fill():
            out = [fn() for fn in fns]
            return out[0] if len(out) == 1 else tuple(out)

        return fill, components
    instance_links: list = field(default_factory=list)  # (event trigger, inputs, item_of, api name): what opens the Instance tab

    def link_instance(self, trigger, inputs: list, item_of, api_name: str | None = None) -> None:
        """Open the Instance tab on ``trigger`` (e.g. ``gallery.select``): ``item_of(*input values, evt=...)``
        gives the item id (or (item id, caption id to mark)); the Instance tab wires it once it is built."""
        self.instance_links.append((trigger, list(inputs), item_of, api_name))

    def on_load(self, fn, outputs: list) -> None:
        """Run ``fn()`` at every page load into ``outputs`` (status lines, timers: what must be as of now)."""
        self.loaders.append((fn, outputs))

    def model_choice_updates(self, request=None) -> list:
        """Updates that give every model picker the world's current models (after a training run); the
        Search pickers (:meth:`hide_variants`) also list the requesting session's private models."""
        import gradio as gr

        names = self.world.model_names()
        uml = uncertainty_models(self.world)
        session = session_of(request) or None
        return ([gr.update(choices=self.choosers[id(p)](session) if id(p) in self.choosers else names) for p in self.model_pickers]
                + [gr.update(choices=uml) for _ in self.uncertainty_pickers])

    def session_header(self, request=None):
        """The page header for the requesting browser session (its private models counted)."""
        return self.header_text(session_of(request) or None) if self.header_text else ""

    def hide_variants(self, picker, toggle, main_names: list[str]) -> None:
        """Show ``picker`` with the main methods (and published Experiment runs) until ``toggle`` is ticked,
        then with every model; page loads and published runs keep to the same rule."""
        import gradio as gr

        def default_choices(session: str | None = None) -> list[str]:
            return [m.name for m in self.world.model_list(session) if m.name in main_names or not m.shipped]

        @takes_request
        def toggled(show, chosen, request=None):
            session = session_of(request) or None
            listed = self.world.model_names(session) if show else default_choices(session)
            return gr.update(choices=listed, value=[n for n in (chosen or []) if n in listed] or listed[: len(main_names)])

        self.model_pickers.append(picker)
        self.choosers[id(picker)] = default_choices
        toggle.change(toggled, [toggle, picker], picker, api_visibility="private")

    @property
    def choice_targets(self) -> list:
        return [*self.model_pickers, *self.uncertainty_pickers]


# Per-component API schemas in Gradio's page config: the browser never reads them (its API page and
# gradio_client read /info, which the server builds from its own copy of the config), yet they are
# most of the page: a Gallery carries ~9 KB of them, so twelve result galleries alone weigh 110 KB.
PAGE_CONFIG_API_KEYS = ("api_info", "api_info_as_input", "api_info_as_output", "example_inputs")


class SlimPageConfig:
    """ASGI middleware: drops :data:`PAGE_CONFIG_API_KEYS` from the components of the ``/config``
    JSON the page loads (``launch(app_kwargs={"middleware": [Middleware(SlimPageConfig)]})``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") != "GET" or not scope.get("path", "").endswith("/config"):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                await send_slim(b"".join(body))
                return
            await send(message)

        async def send_slim(raw: bytes):
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            is_json = any(k.lower() == b"content-type" and b"json" in v for k, v in headers)
            encoded = any(k.lower() == b"content-encoding" for k, _ in headers)
            if start.get("status") == 200 and is_json and not encoded:
                raw = slim_config_bytes(raw)
            headers.append((b"content-length", str(len(raw)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": raw})

        await self.app(scope, receive, capture)


def builtin_component_types() -> frozenset[str]:
    """The ``type`` names of Gradio's own components and layouts (what the page resolves by name)."""
    import gradio as gr
    from gradio.blocks import Block

    names = set()
    for name in dir(gr):
        cls = getattr(gr, name)
        if isinstance(cls, type) and issubclass(cls, Block):
            names.add(cls.__name__.lower())
            own = cls.__dict__.get("get_block_name")  # a layout that names itself otherwise (Tab -> "tabitem")
            if own is not None:
                names.add(own(cls))
    return frozenset(names)


def slim_config_bytes(raw: bytes) -> bytes:
    """The page config JSON without the per-component API schemas, and without the class hash of Gradio's own
    components (the page loads a built-in component by its type name and needs the hash only for custom
    components: about 90 bytes a component). Unchanged if it is not such a config."""
    import json

    try:
        config = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(config, dict) or not isinstance(config.get("components"), list):
        return raw
    builtin = builtin_component_types()
    for component in config["components"]:
        if isinstance(component, dict):
            for key in PAGE_CONFIG_API_KEYS:
                component.pop(key, None)
            if component.get("type") in builtin:
                component.pop("component_class_id", None)
    return json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode()
