"""CCR Lab dashboard: assembles the tabs and launches. Each tab is one module of ``ccr_core.dashboard``:
its logic (plain functions, tested without Gradio) and its ``build_tab`` (layout and wiring).

    python app.py                                  # the demo world, checkpoints/demo-world/
    python app.py --world flickr8k-ml              # a built bundle (name or folder), checkpoints/<world>/
    python app.py --checkpoints DIR --workspace DIR --port 7860 --host 127.0.0.1
    python app.py --plugin my_methods              # a module that registers methods (as CCR_PLUGINS=my_methods)

Binds 127.0.0.1 by default, never makes a share link, sends no analytics, and serves files only from
the world's thumbnail and export folders.
"""
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("ccr.app")
MAX_UPLOAD = "25mb"  # uploads above this are refused by Gradio itself (HTTP 413) before reaching a handler
# Fonts: Noto Sans covers Latin (Extended: Czech, Turkish, ...), Greek and Cyrillic; the CJK faces come
# after it, so a Latin letter with a mark ("Muž") never falls back to a CJK font's Latin glyphs.
FONTS = ["Noto Sans", "DejaVu Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "sans-serif"]
MONO_FONTS = ["Noto Sans Mono", "DejaVu Sans Mono", "monospace"]
FONT_STACK = ", ".join(f'"{f}"' if " " in f else f for f in FONTS)
CSS = f"""
.ccr-header h1 {{margin-bottom: 0.1em}}
.ccr-header p {{color: var(--body-text-color-subdued); margin-top: 0}}
body, .gradio-container {{font-family: {FONT_STACK}}}
.gradio-container code, .gradio-container pre {{font-family: {", ".join(f'"{f}"' if " " in f else f for f in MONO_FONTS)}}}
/* Result cards: the whole picture (a square box, object-fit contain), and under it -- never over it -- the rank,
   the score and the English caption; hovering a card shows the captions in every language. */
.ccr-gallery .grid-container {{grid-template-rows: none; grid-auto-rows: auto; align-items: start;
  grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr))}}
.ccr-gallery .thumbnail-item {{aspect-ratio: auto; height: auto; display: flex; flex-direction: column; overflow: visible}}
.ccr-gallery .thumbnail-item > img {{width: 100%; height: auto; aspect-ratio: 1 / 1; object-fit: contain; flex: none}}
.ccr-gallery .caption-label {{position: static; max-width: 100%; width: 100%; box-sizing: border-box; border: none; border-top: 1px solid var(--border-color-primary);
  border-radius: 0; opacity: 1 !important; font-size: 0.78em; line-height: 1.25; white-space: pre-line; overflow: hidden; text-overflow: clip;
  display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3; overflow-wrap: anywhere}}
.ccr-gallery .thumbnail-item:hover {{z-index: 5}}
.ccr-gallery .thumbnail-item:hover .caption-label {{-webkit-line-clamp: unset; display: block; position: absolute; top: 100%; left: 0;
  background: var(--background-fill-primary); box-shadow: var(--shadow-drop-lg); border: 1px solid var(--border-color-primary); z-index: 6}}
.ccr-gallery-title p {{margin: 0; font-size: 0.95em}}
/* Every tab's name fits on one row at 1024 px (Gradio moves the ones that do not into a "..." menu). */
.tab-wrapper button {{padding: 0 9px}}
/* Start here: pictures at their natural size, never upscaled or cropped; the step's own picture framed. */
.ccr-lesson-figures {{display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start}}
.ccr-lesson-figure {{margin: 0; max-width: 220px}}
.ccr-lesson-row-break {{flex-basis: 100%; height: 0}}
.ccr-lesson-figure img {{display: block; max-width: 100%; width: auto; height: auto; border: 3px solid transparent}}
.ccr-lesson-target img {{border-color: #f5c518}}
.ccr-lesson-figure figcaption {{font-size: 0.85em; line-height: 1.25; margin-top: 2px}}
/* Presenter mode: large type, one step per screen. */
body.ccr-presenter #header, body.ccr-presenter #lesson-intro, body.ccr-presenter #lesson-words {{display: none}}
body.ccr-presenter #lesson-step {{min-height: 100vh}}
body.ccr-presenter #lesson-text, body.ccr-presenter #lesson-text p, body.ccr-presenter #lesson-text li {{font-size: 24px; line-height: 1.45}}
body.ccr-presenter #lesson-text h3 {{font-size: 1.5em}}
body.ccr-presenter #lesson-table {{font-size: 1.3em}}
body.ccr-presenter .ccr-lesson-figure {{max-width: 320px}}
body.ccr-presenter .ccr-lesson-figure figcaption {{font-size: 1.2em}}
#examples button {{white-space: nowrap; overflow: hidden; text-overflow: ellipsis; display: block}}
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CCR Lab research dashboard")
    p.add_argument("--world", default="demo-world", help="a built bundle: name in <workspace>/bundles/ or a folder (default demo-world)")
    p.add_argument("--checkpoints", default=None, help="folder of checkpoint folders (default checkpoints/<world>)")
    p.add_argument("--workspace", default=None, help="built bundles, caches, projections (default $CCR_WORKSPACE or ./workspace)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="a module that registers methods (repeatable), loaded before the checkpoints; as CCR_PLUGINS=mod1,mod2")
    p.add_argument("--no-warm", action="store_true", help="do not precompute the default projections in the background")
    return p.parse_args(argv)


# The tabs, in page order; each builder lays out its tab and wires it to its own module's functions.
# Experiment comes after every tab with a model picker: a finished run refreshes those pickers.
# The Instance tab comes after every tab that opens it (they register with ``page.link_instance``).
TABS = ("lesson", "search", "languages", "consistency", "audit", "projection", "finder", "instance", "leaderboard", "experiment", "about")


def build_app(world):
    import importlib

    import gradio as gr

    from ccr_core.dashboard.ui import Page, takes_request

    page = Page(world)
    with gr.Blocks(title=f"CCR Lab · {world.name}", analytics_enabled=False) as demo:
        # Filled at each page load for that browser session (its private models count), and again when its run finishes.
        page.header = gr.Markdown(header_markdown(world), elem_classes="ccr-header", elem_id="header")
        page.header_text = lambda session=None: header_markdown(world, session)
        with gr.Tabs(selected="search") as tabs:  # "Start here" sits first for teaching; a visitor lands on Search
            page.components["tabs"] = tabs
            for tab in TABS:
                importlib.import_module(f"ccr_core.dashboard.{tab}").build_tab(world, page)
        # A page opened after a training run finished lists the new model too.
        demo.load(takes_request(lambda request=None: page.model_choice_updates(request)), None, page.choice_targets, api_name="refresh_models")
        demo.load(takes_request(lambda request=None: page.session_header(request)), None, page.header, api_visibility="private")
        for fn, outputs in page.loaders:
            demo.load(fn, None, outputs, api_visibility="private")
        if page.lazies:
            fill, outputs = page.lazy_loader()
            demo.load(fill, None, outputs, api_visibility="private", show_progress="hidden")
        from ccr_core.dashboard.urlstate import wire_restore

        wire_restore(world, page, demo)  # a URL's ?tab=&q=&lang=&models=&instance= restores that view
    demo.ccr_tab_labels = {b.label: b.id for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.id}
    return demo


def header_markdown(world, session: str | None = None) -> str:
    """The page header, with the number of models as it is now for that browser session (published Experiment
    runs and the session's own private ones count), and any checkpoint that was skipped, with why."""
    from ccr_core.dashboard.world import language_name

    n = len(world.model_names(session))
    private = n - len(world.model_names())
    text = (f"# CCR Lab · {world.name}\nFind images from captions in {', '.join(language_name(l) for l in world.languages)} "
            f"(or about 90 other languages), captions from images, and compare **{n} models**"
            + (f" ({private} of them private to you)" if private else "") + ".")
    return text + "".join(f"\n\n⚠ {why}" for why in world.skipped)


def warm_up(world) -> None:
    """Precompute what the first visitor of each tab would otherwise wait for (background thread)."""
    from ccr_core.dashboard import consistency, projection

    try:
        world.captions_ready.wait()  # both need the test captions' embeddings
        consistency.mrv_summary(world)
        opening = projection.default_models(world)  # the maps the tab opens with first
        for name in [*opening, *(n for n in world.model_names() if n not in opening)]:
            projection.project(world, name, world.languages, **projection.default_params(world))
        projection.warm_umap_cache()  # numba's on-disk cache, once per machine: later starts' first live UMAP is faster
    except Exception:  # noqa: BLE001 -- warming is an optimisation; the tabs compute on demand anyway
        log.exception("warm-up failed")


def finish_background(world) -> None:
    """After the page is up (background thread): the test captions' text states and embeddings first
    (image -> text, Consistency, maps), then the training-pair caches (audit, experiment); logs each."""
    from ccr_core.dashboard import leaderboard

    start = time.perf_counter()
    try:
        if world.pending_captions:
            world.finish_caption_caches(progress=True)
            log.info("test captions ready (%.0f s in the background)", time.perf_counter() - start)
        else:
            log.info("test captions ready (cached before the start)")  # the line benchmarks/bench_first_open waits for
        leaderboard.all_results(world)  # models without shipped metrics are evaluated now
    except Exception:  # noqa: BLE001 -- the tabs that need captions show the error; search keeps working
        log.exception("encoding the test captions failed")
        return
    try:
        start = time.perf_counter()
        if world.pending_training:
            world.finish_training_caches(progress=True)
            log.info("training pairs ready (%.0f s in the background)", time.perf_counter() - start)
        else:
            log.info("training pairs ready (cached before the start)")
    except Exception:  # noqa: BLE001 -- the audit and experiment tabs show the error; search keeps working
        log.exception("preparing the training pairs failed")
        return
    warm_audit(world)


def warm_audit(world) -> None:
    """Each uncertainty model's scores of every training pair (the Audit tab and lesson step 4 open with them), computed
    once in the background instead of on the first visitor's click; a no-op where shipped scores serve them."""
    from ccr_core.dashboard import audit

    for name in audit.uncertainty_models(world):
        try:
            audit.pair_uncertainty(world, world.model(name))
        except Exception:  # noqa: BLE001 -- warming is an optimisation; the Audit tab computes (and reports) on demand
            log.exception("warming the audit of %s failed", name)


def launch(demo, world, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    import gradio as gr
    from starlette.middleware import Middleware

    from ccr_core.dashboard.instance import INSTANCE_CSS
    from ccr_core.dashboard.projection import PAGE_JS
    from ccr_core.dashboard.ui import SlimPageConfig
    from ccr_core.dashboard.urlstate import url_js

    page_js = f"() => {{ ({PAGE_JS.strip()})(); ({url_js(getattr(demo, 'ccr_tab_labels', {})).strip()})(); }}"

    demo.queue(default_concurrency_limit=4)
    return demo.launch(server_name=host, server_port=port, share=False, allowed_paths=world.served_dirs(), show_error=False, max_file_size=MAX_UPLOAD,
                       prevent_thread_lock=not block, quiet=not block, footer_links=["api"], theme=gr.themes.Soft(font=FONTS, font_mono=MONO_FONTS), css=CSS + INSTANCE_CSS, js=page_js,
                       app_kwargs={"middleware": [Middleware(SlimPageConfig)]})


def open_world(args):
    """Load the world named on the command line and the numbers the Leaderboard shows."""
    from ccr_core.dashboard import leaderboard
    from ccr_core.dashboard.world import load_world, resolve_world
    from ccr_core.paths import CHECKPOINTS_DIR, workspace_dir

    workspace = Path(args.workspace).expanduser() if args.workspace else workspace_dir()
    bundle_root = resolve_world(args.world, workspace)
    checkpoints = Path(args.checkpoints).expanduser() if args.checkpoints else CHECKPOINTS_DIR / Path(args.world).name
    world = load_world(bundle_root, checkpoints, workspace, progress=True, defer_captions=True)
    leaderboard.all_results(world)
    return world


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from ccr_core.dashboard import WorldNotBuilt
    from ccr_core.methods import PluginError, load_plugins

    try:
        load_plugins(args.plugin)  # before the checkpoints: their methods must be registered
    except PluginError as exc:
        print(f"ccr dashboard: {exc}", file=sys.stderr)
        return 2

    try:
        world = open_world(args)
    except WorldNotBuilt as exc:
        print(f"ccr dashboard: {exc}", file=sys.stderr)
        return 2
    log.info("world loaded in %.1f s: %s", world.load_seconds, world.describe())
    # The gallery is ready; the captions, then the training pairs, follow (each logs when it is ready, at once when a
    # prepared world has nothing left: benchmarks/bench_first_open waits for those lines), then the audit's scores.
    threading.Thread(target=finish_background, args=(world,), name="ccr-background", daemon=True).start()
    demo = build_app(world)
    if not args.no_warm:
        threading.Thread(target=warm_up, args=(world,), name="ccr-warm-up", daemon=True).start()
    launch(demo, world, args.host, args.port, block=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
