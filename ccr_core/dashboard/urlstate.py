"""Shareable state: the page URL carries the tab, the query, its language, the models and the instance
(``?tab=search&q=a+dog&lang=de&models=baseline,uml&instance=img3``); opening such a URL restores the view.
Parsing and serialising are plain functions (tested without Gradio); the page keeps its URL up to date
with :data:`URL_JS` and ``app.py`` restores the view at page load."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence
from urllib.parse import urlencode

MAX_Q = 2000  # characters of a query kept from a URL
KEYS = ("tab", "q", "lang", "models", "instance")


@dataclass
class ViewState:
    tab: str = ""
    q: str = ""
    lang: str = ""
    models: list[str] = field(default_factory=list)
    instance: str = ""
    notes: list[str] = field(default_factory=list)  # what was dropped, and why


def parse_state(params: Mapping[str, str], tabs: Sequence[str], languages: Sequence[str], models: Sequence[str],
                items: Mapping | set | None = None) -> ViewState:
    """The view a URL's query parameters ask for, keeping only what this page can show: a known tab, a
    language code (or ``auto``), known models, a known instance (``items``: ids, when given). Unknown
    values are dropped with a note, never an error: a shared link from another world still opens."""
    state = ViewState()
    tab = str(params.get("tab", "") or "").strip()
    if tab:
        if tab in tabs:
            state.tab = tab
        else:
            state.notes.append(f"unknown tab {tab!r}")
    state.q = str(params.get("q", "") or "").strip()[:MAX_Q]
    lang = str(params.get("lang", "") or "").strip()
    if lang:
        if lang == "auto" or lang in languages:
            state.lang = lang
        else:
            state.notes.append(f"unknown language {lang!r}")
    wanted = [m.strip() for m in str(params.get("models", "") or "").split(",") if m.strip()]
    state.models = [m for m in dict.fromkeys(wanted) if m in models]
    if len(state.models) < len(set(wanted)):
        state.notes.append("unknown models: " + ", ".join(m for m in wanted if m not in models))
    instance = str(params.get("instance", "") or "").strip()
    if instance:
        if items is None or instance in items:
            state.instance = instance
        else:
            state.notes.append(f"unknown instance {instance!r}")
    return state


def state_query(tab: str = "", q: str = "", lang: str = "", models: Sequence[str] = (), instance: str = "") -> str:
    """The query string (``?...``, or ``""`` for an empty state) of a view: the inverse of :func:`parse_state`."""
    pairs = [(k, v) for k, v in (("tab", tab), ("q", (q or "").strip()[:MAX_Q]), ("lang", lang), ("models", ",".join(models or ())),
                                 ("instance", instance)) if v]
    return "?" + urlencode(pairs) if pairs else ""


# Runs in the page: keeps the address bar's query in step with the view (history.replaceState, so no new
# history entries). The values are read from the page itself: the selected tab's id (TAB_IDS maps its
# label), the query box, the language menu (its code in parentheses), the ticked methods, the instance box.
URL_JS = """
() => {
  const TAB_IDS = %s;
  let lastInstance = new URLSearchParams(window.location.search).get('instance') || '';
  const val = (sel) => { const el = document.querySelector(sel); return el ? (el.value || '').trim() : ''; };
  const state = () => {
    const tabBtn = document.querySelector('button[role="tab"][aria-selected="true"]');
    const label = tabBtn ? tabBtn.textContent.trim() : '';
    const langText = val('#lang input');
    const m = langText.match(/\\(([^()]+)\\)\\s*$/);
    const lang = langText.startsWith('auto') || !langText ? '' : (m ? m[1] : '');
    const models = [...document.querySelectorAll('#methods input[type="checkbox"]')].filter(b => b.checked)
      .map(b => (b.closest('label') ? b.closest('label').textContent.trim() : '')).filter(Boolean);
    const p = new URLSearchParams();
    const tab = TAB_IDS[label] || '';
    if (tab) p.set('tab', tab);
    const q = val('#query textarea');
    if (q) p.set('q', q);
    if (lang) p.set('lang', lang);
    if (models.length) p.set('models', models.join(','));
    // a tab not on screen may not be in the page: keep the instance last seen (or the one the URL opened with)
    if (document.querySelector('#inst-id textarea, #inst-id input')) lastInstance = val('#inst-id textarea, #inst-id input');
    if (lastInstance) p.set('instance', lastInstance);
    return p.toString();
  };
  let restored = false;
  setTimeout(() => { restored = true; }, 4000);  // the URL a page was opened with stays until its view is restored
  setInterval(() => {
    if (!restored || !document.querySelector('#header')) return;
    const s = state();
    const now = window.location.search.replace(/^\\?/, '');
    if (s !== now) window.history.replaceState(null, '', window.location.pathname + (s ? '?' + s : ''));
  }, 700);
}
"""


def url_js(tab_labels: Mapping[str, str]) -> str:
    """:data:`URL_JS` with the page's tab labels -> ids."""
    import json

    return URL_JS % json.dumps(dict(tab_labels), ensure_ascii=False)


def request_params(request) -> dict:
    """The page URL's query parameters of a page-load request: its own, else those of the page it came
    from (the Referer header: Gradio's queue requests do not carry the page's query)."""
    from urllib.parse import parse_qsl, urlsplit

    params = {k: v for k, v in dict(getattr(request, "query_params", None) or {}).items() if k in KEYS}
    if not params:
        headers = getattr(request, "headers", None) or {}
        referer = headers.get("referer", "") if hasattr(headers, "get") else ""
        params = {k: v for k, v in parse_qsl(urlsplit(referer).query) if k in KEYS}
    return params


def wire_restore(world, page, demo) -> None:
    """At page load, restore the view the URL names (tab, query + search, language, models, instance).
    Needs the Search tab's and the Instance tab's components in ``page.components``."""
    import gradio as gr

    from ccr_core.dashboard.ui import takes_request

    search, inst, tabs = page.components.get("search"), page.components.get("instance"), page.components.get("tabs")
    if not (search and inst and tabs):
        return
    tab_ids = [b.id for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.id]
    search_outputs, inst_outputs = search["outputs"], inst["outputs"]

    @takes_request
    def restore(k, request=None):
        params = request_params(request)
        skip_all = [gr.skip()] * (5 + len(search_outputs) + len(inst_outputs))
        if not any(params.get(key) for key in KEYS):
            return tuple(skip_all)
        state = parse_state(params, tab_ids, ["auto", *world.query_languages], world.model_names(), world.gallery_pos)
        out = [gr.Tabs(selected=state.tab) if state.tab else gr.skip(), state.q or gr.skip(), state.lang or gr.skip(),
               state.models or gr.skip(), state.instance or gr.skip()]
        models = state.models or None
        if state.q:
            out += list(search["run"](state.q, state.lang or "auto", models or search["default_models"], k, None))
        else:
            out += [gr.skip()] * len(search_outputs)
        if state.instance:
            try:
                out += list(inst["render"](state.instance, models or inst["default_models"]))
            except Exception as exc:  # noqa: BLE001 -- a bad link still opens the page; the tab says why
                out += [f"⚠ {exc}", gr.skip(), gr.skip(), gr.skip()]
        else:
            out += [gr.skip()] * len(inst_outputs)
        return tuple(out)

    demo.load(restore, [search["k"]], [tabs, search["query"], search["lang"], search["methods"], inst["item"], *search_outputs, *inst_outputs],
              api_visibility="private")
