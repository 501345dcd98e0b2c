"""CCR Lab dashboard: Gradio wiring only; every view's logic lives in ``ccr_core.dashboard``.

    python app.py                                  # the demo world, checkpoints/demo-world/
    python app.py --world flickr8k-ml              # a built bundle (name or folder), checkpoints/<world>/
    python app.py --checkpoints DIR --workspace DIR --port 7860 --host 127.0.0.1

Binds 127.0.0.1 by default, never makes a share link, sends no analytics, and serves files only from
the world's thumbnail and export folders.
"""
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import functools
import logging
import sys
import threading
from pathlib import Path

log = logging.getLogger("ccr.app")
MAX_SLOTS = 12  # result columns in the Search tab (shipped models + room for trained ones)
MAX_UPLOAD = "25mb"  # uploads above this are refused by Gradio itself (HTTP 413) before reaching a handler
CSS = """
.ccr-header h1 {margin-bottom: 0.1em}
.ccr-header p {color: var(--body-text-color-subdued); margin-top: 0}
body, .gradio-container {font-family: "Inter", "Noto Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", sans-serif}
.ccr-gallery .caption-label {font-size: 0.8em}
"""
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CCR Lab research dashboard")
    p.add_argument("--world", default="demo-world", help="a built bundle: name in <workspace>/bundles/ or a folder (default demo-world)")
    p.add_argument("--checkpoints", default=None, help="folder of checkpoint folders (default checkpoints/<world>)")
    p.add_argument("--workspace", default=None, help="built bundles, caches, projections (default $CCR_WORKSPACE or ./workspace)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--no-warm", action="store_true", help="do not precompute the default projections in the background")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# error handling: bad input -> a warning toast and a status message, never an exception page


def guarded(n_outputs: int, status_at: int = 0):
    import gradio as gr

    from ccr_core.dashboard import InputError

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
            out[status_at] = f"⚠ {message}"
            return out[0] if n_outputs == 1 else tuple(out)

        return wrapper

    return decorator


def selected(evt, key: str):
    """A field of a select event's data; a call without a selection (e.g. from a script) is a user error.

    Handlers are annotated with gr.EventData, not gr.SelectData, whose constructor fails on a call
    that carries no event data before the handler could answer."""
    from ccr_core.dashboard import InputError

    data = getattr(evt, "_data", None) or {}
    if data.get(key) is None:
        raise InputError("Click an entry to pick it (this event needs a selection).")
    return data[key]


# --------------------------------------------------------------------------------------------------
# the app


def build_app(world):
    import gradio as gr

    from ccr_core.dashboard import about, audit, consistency, experiment, languages, leaderboard, projection, search
    from ccr_core.dashboard.world import language_name
    from ccr_core.methods import METHODS

    names = world.model_names()
    slots = min(MAX_SLOTS, len(names) + 3)
    lang_choices = [("auto-detect", "auto")] + [(f"{language_name(l)} ({l})", l) for l in world.languages]
    uml_names = audit.uncertainty_models(world)
    groups = leaderboard.groups(world)
    second = names[1] if len(names) > 1 else names[0]
    jobs = experiment.experiments(world)

    def gallery_updates(result):
        ups = [gr.update(visible=False, value=None) for _ in range(slots)]
        for i, m in enumerate(result.methods[:slots]):
            ups[i] = gr.update(visible=True, value=m.gallery(), label=m.title)
        return ups

    def model_choice_updates():
        now = world.model_names()
        return [gr.update(choices=now) for _ in range(4)] + [gr.update(choices=audit.uncertainty_models(world))]

    with gr.Blocks(title=f"CCR Lab · {world.name}", analytics_enabled=False) as demo:
        gr.Markdown(f"# CCR Lab · {world.name}\nFind images from captions in {', '.join(language_name(l) for l in world.languages)} — "
                    f"and captions from images — and compare {len(names)} cross-lingual retrieval models side by side.",
                    elem_classes="ccr-header")
        with gr.Tabs():
            # ---------------------------------------------------------------- 1. search
            with gr.Tab("Search", id="search"):
                with gr.Row():
                    with gr.Column(scale=3):
                        query = gr.Textbox(label="Query (any language)", placeholder="Describe a picture…", lines=2, elem_id="query")
                        with gr.Row():
                            lang = gr.Dropdown(lang_choices, value="auto", label="Language", scale=1)
                            k = gr.Number(value=8, precision=0, label=f"Results per method (1–{search.MAX_K})", scale=1, elem_id="k")
                        methods = gr.CheckboxGroup(names, value=names[:slots], label="Methods", elem_id="methods")
                        search_btn = gr.Button("Search", variant="primary", elem_id="search-btn")
                    with gr.Column(scale=2):
                        gr.Markdown("**…or pick a test caption** (its image is then marked ✓ with its rank per method)")
                        browse_lang = gr.Dropdown([("all languages", "all")] + lang_choices[1:], value="all", label="Captions in")
                        caption = gr.Dropdown(search.caption_choices(world, "all"), value=None, label="Test caption", filterable=True, allow_custom_value=True, elem_id="caption-pick")
                        gr.Examples([[t, l] for t, l in world.example_queries()], inputs=[query, lang], label="Example queries in every language")
                caption_id = gr.State(None)
                slot_items = gr.State([[] for _ in range(slots)])
                status = gr.Markdown(elem_id="search-status")
                summary = gr.Dataframe(headers=["method", "ground-truth rank", "top-1 image", "top-1 score", "UML uncertainty"], label="Per method", interactive=False, elem_id="search-summary")
                galleries = []
                for row_start in range(0, slots, 4):
                    with gr.Row(equal_height=False):
                        for i in range(row_start, min(slots, row_start + 4)):
                            galleries.append(gr.Gallery(label=f"slot {i}", visible=False, columns=2, height=520, object_fit="contain",
                                                        allow_preview=False, elem_classes="ccr-gallery", elem_id=f"gallery-{i}"))
                gr.Markdown("### Image → text\nClick any result above, or upload a picture: the closest captions in every language, per method.")
                with gr.Row():
                    with gr.Column(scale=1):
                        # A File, not an Image: our own check answers an unreadable upload with a clear message.
                        i2t_image = gr.File(type="filepath", label="Upload a picture (JPEG, PNG, WebP, GIF)", height=120, elem_id="i2t-upload")
                        i2t_item = gr.Textbox(label="…or a test image id (clicking a result fills it)", elem_id="i2t-item")
                        i2t_k = gr.Number(value=3, precision=0, label="Captions per language (1–20)")
                        i2t_btn = gr.Button("Closest captions", elem_id="i2t-btn")
                    with gr.Column(scale=3):
                        with gr.Row():
                            i2t_preview = gr.Image(label="Query picture", interactive=False, height=160, scale=1, buttons=[])
                            i2t_status = gr.Markdown(elem_id="i2t-status")
                        i2t_table = gr.Dataframe(headers=["method", "language", "rank", "score", "caption", "own caption", "source", "image"], interactive=False, wrap=True, elem_id="i2t-table")

                search_outputs = [status, summary, slot_items, *galleries]

                @guarded(len(search_outputs))
                def do_search(q, language, chosen, top_k, cap_id):
                    result = search.text_search(world, q, language, chosen, top_k, cap_id)
                    return (result.status(), result.summary_table(), [[h.item_id for h in m.hits] for m in result.methods[:slots]]
                            + [[] for _ in range(slots - len(result.methods[:slots]))], *gallery_updates(result))

                gr.on([search_btn.click, query.submit], do_search, [query, lang, methods, k, caption_id], search_outputs, api_name="search")

                @guarded(3 + len(search_outputs), status_at=3)
                def pick_caption(cap_id, chosen, top_k):
                    cap = search.caption_by_id(world, cap_id)
                    return (cap.text, cap.lang, cap.id, *do_search(cap.text, cap.lang, chosen, top_k, cap.id))

                caption.input(pick_caption, [caption, methods, k], [query, lang, caption_id, *search_outputs], api_name="pick_caption")
                browse_lang.change(lambda l: gr.update(choices=search.caption_choices(world, l), value=None), browse_lang, caption, api_name="caption_list")

                i2t_outputs = [i2t_status, i2t_preview, i2t_table]

                @guarded(len(i2t_outputs))
                def do_image_to_text(item, image, chosen, top_k):
                    result = search.image_to_text(world, item, image, chosen, top_k)
                    return result.status(), result.thumb, result.table()

                gr.on([i2t_btn.click, i2t_image.upload], do_image_to_text, [i2t_item, i2t_image, methods, i2t_k], i2t_outputs, api_name="image_to_text")

                def make_pick(slot):
                    @guarded(2 + len(i2t_outputs), status_at=2)
                    def pick_result(items, chosen, top_k, evt: gr.EventData):
                        index = selected(evt, "index")
                        item = items[slot][index[0] if isinstance(index, (list, tuple)) else index]
                        return (item, None, *do_image_to_text(item, None, chosen, top_k))

                    return pick_result

                for i, gal in enumerate(galleries):
                    gal.select(make_pick(i), [slot_items, methods, i2t_k], [i2t_item, i2t_image, *i2t_outputs], api_name=f"pick_result_{i}")

            # ---------------------------------------------------------------- 2. many languages
            with gr.Tab("Many languages", id="languages"):
                gr.Markdown("Type **the same description in several languages** (or pick a test instance to fill them in). For each method: "
                            "where does each language put the intended image, and how far apart are those ranks? The spread (σ) is the MRV of "
                            "your own instance: 0 means every language agrees.")
                with gr.Row():
                    ml_instance = gr.Dropdown([("(none: use each method's top-1 for the English text)", "")] + languages.instance_choices(world),
                                              value="", label="Intended image (test instance)", filterable=True, allow_custom_value=True, scale=3, elem_id="ml-instance")
                    ml_methods = gr.CheckboxGroup(names, value=names, label="Methods", scale=3)
                with gr.Row():
                    ml_texts = [gr.Textbox(label=f"{language_name(l)} ({l})", lines=2, elem_id=f"ml-text-{l}") for l in world.languages]
                ml_btn = gr.Button("Compare languages", variant="primary", elem_id="ml-btn")
                ml_status = gr.Markdown(elem_id="ml-status")
                ml_plot = gr.Plot(label="Ranks per language", elem_id="ml-plot")
                ml_table = gr.Dataframe(interactive=False, label="Ranks, spread and agreement", elem_id="ml-table")

                @guarded(len(ml_texts) + 1, status_at=len(ml_texts))
                def fill_instance(item):
                    texts = languages.instance_texts(world, item)
                    return (*[texts[l] for l in world.languages], f"Filled in the captions of `{item}`." if item else "Cleared.")

                ml_instance.input(fill_instance, ml_instance, [*ml_texts, ml_status], api_name="instance_texts")

                @guarded(3)
                def do_many(item, chosen, *texts):
                    result = languages.many_languages(world, dict(zip(world.languages, texts)), item, chosen)
                    return result.status(), result.figure(), result.table()

                ml_btn.click(do_many, [ml_instance, ml_methods, *ml_texts], [ml_status, ml_plot, ml_table], api_name="many_languages")

            # ---------------------------------------------------------------- 3. consistency
            with gr.Tab("Consistency", id="consistency") as cons_tab:
                gr.Markdown("**MRV** (mean rank variance): for each test image with a caption in every language, the spread (σ) of the ranks "
                            "the languages give it; MRV is the mean over images. Lower is more consistent.")
                with gr.Row():
                    direction = gr.Radio([("text → image", "t2i"), ("image → text", "i2t")], value="t2i", label="Direction")
                    cons_model = gr.Dropdown(names, value=names[0], label="Model for the 'most inconsistent' list", allow_custom_value=True)
                cons_status = gr.Markdown()
                cons_summary = gr.Dataframe(interactive=False, label="MRV per model", elem_id="cons-summary")
                with gr.Row():
                    cons_hist = gr.Plot(label="Rank spread per instance", elem_id="cons-hist")
                    cons_worst = gr.Dataframe(interactive=False, label="Most inconsistent instances (click a row)", elem_id="cons-worst")
                cons_instance = gr.Dropdown(consistency.instance_choices(world), label="Instance", filterable=True, allow_custom_value=True, elem_id="cons-instance")
                inst_status = gr.Markdown()
                with gr.Row():
                    inst_caps = gr.Dataframe(interactive=False, wrap=True, label="Its captions")
                    inst_heat = gr.Plot(label="Ranks: language × method", elem_id="cons-heat")

                @guarded(4)
                def do_consistency(dirn, model):
                    return ("", consistency.mrv_summary(world), consistency.spread_histogram(world, None, dirn),
                            consistency.inconsistent_instances(world, model, dirn))

                cons_outputs = [cons_status, cons_summary, cons_hist, cons_worst]
                gr.on([cons_tab.select, direction.change, cons_model.change], do_consistency, [direction, cons_model], cons_outputs, api_name="consistency")

                @guarded(3, status_at=2)
                def do_instance(item, dirn):
                    caps, fig, text = consistency.instance_detail(world, item, None, dirn)
                    return caps, fig, text

                gr.on([cons_instance.input], do_instance, [cons_instance, direction], [inst_caps, inst_heat, inst_status], api_name="consistency_instance")

                @guarded(4, status_at=3)
                def pick_worst(dirn, evt: gr.EventData):
                    item = selected(evt, "row_value")[0]
                    return (item, *do_instance(item, dirn))

                cons_worst.select(pick_worst, [direction], [cons_instance, inst_caps, inst_heat, inst_status], api_name="consistency_pick")

            # ---------------------------------------------------------------- 4. audit
            with gr.Tab("Uncertainty audit", id="audit") as audit_tab:
                gr.Markdown("UML estimates how uncertain each training pair is (image, English caption, machine-translated caption): "
                            "its uncertainty u = B/S, and how little of its evidence sits on the pair's own image and caption "
                            "(mismatch 1 − p̂). Where the world knows which pairs are noisy, see how well each finds them.")
                audit_model = gr.Dropdown(uml_names, value=uml_names[0] if uml_names else None, label="Model", allow_custom_value=True)
                audit_status = gr.Markdown(elem_id="audit-status")
                with gr.Row():
                    audit_hist = gr.Plot(label="Uncertainty distribution", elem_id="audit-hist")
                    audit_curves = gr.Plot(label="ROC and precision–recall", elem_id="audit-curves")
                audit_prec = gr.Dataframe(interactive=False, label="Precision at k (the top-k pairs of the list below)")
                gr.Markdown("**Training pairs most likely mismatched** (by 1 − p̂ where the model has it, else by u)")
                with gr.Row():
                    page_start = gr.Number(value=0, precision=0, label="Start at (0 = most likely mismatched)", minimum=0)
                    page_size = gr.Slider(1, 100, value=12, step=1, label="Pairs per page")
                    prev_btn, next_btn = gr.Button("◀ Previous"), gr.Button("Next ▶")
                page_status = gr.Markdown()
                pair_gallery = gr.Gallery(columns=6, height=360, allow_preview=True, label="Pairs", object_fit="contain")
                pair_table = gr.Dataframe(interactive=False, wrap=True, label="Pairs")

                @guarded(5 + 3)
                def do_audit(model, start, size):
                    view = audit.audit(world, model)
                    return (view.status, view.histogram, view.curves, view.precision, *do_page(model, start, size))

                @guarded(4, status_at=3)
                def do_page(model, start, size):
                    gallery, table, text = audit.uncertain_pairs(world, model, start, size)
                    return int(start or 0), gallery, table, text

                page_outputs = [page_start, pair_gallery, pair_table, page_status]
                gr.on([audit_tab.select, audit_model.change], do_audit, [audit_model, page_start, page_size],
                      [audit_status, audit_hist, audit_curves, audit_prec, *page_outputs], api_name="audit")
                gr.on([page_start.submit, page_size.release], do_page, [audit_model, page_start, page_size], page_outputs, api_name="audit_page")
                prev_btn.click(lambda m, s, n: do_page(m, max(0, int(s or 0) - int(n)), n), [audit_model, page_start, page_size], page_outputs, api_name="audit_prev")
                next_btn.click(lambda m, s, n: do_page(m, int(s or 0) + int(n), n), [audit_model, page_start, page_size], page_outputs, api_name="audit_next")

            # ---------------------------------------------------------------- 5. projection
            with gr.Tab("Embedding space", id="projection"):
                gr.Markdown("Images (■) and their captions (●, one colour per language) in one 2-D map per model. Well-aligned models put an "
                            "image's captions in every language next to it. Maps are cached; new parameters are computed in the background.")
                with gr.Row():
                    proj_a = gr.Dropdown(names, value=names[0], label="Left model", allow_custom_value=True)
                    proj_b = gr.Dropdown(names, value=second, label="Right model", allow_custom_value=True)
                    proj_langs = gr.CheckboxGroup([(language_name(l), l) for l in world.languages], value=world.languages, label="Caption languages")
                with gr.Row():
                    proj_algo = gr.Radio(list(projection.ALGORITHMS), value="UMAP", label="Method", elem_id="proj-algo")
                    proj_sample = gr.Slider(*projection.LIMITS["sample"], value=min(projection.DEFAULTS["sample"], len(world.gallery)), step=10, label="Images sampled")
                    proj_nn = gr.Slider(*projection.LIMITS["n_neighbors"], value=15, step=1, label="UMAP n_neighbors")
                    proj_md = gr.Slider(0.0, 1.0, value=0.1, step=0.05, label="UMAP min_dist")
                    proj_lines = gr.Checkbox(value=False, label="Join each image to its captions")
                proj_btn = gr.Button("Draw", variant="primary", elem_id="proj-btn")
                proj_status = gr.Markdown(elem_id="proj-status")
                with gr.Row():
                    plot_a = gr.Plot(label="Left", elem_id="proj-a")
                    plot_b = gr.Plot(label="Right", elem_id="proj-b")

                @guarded(3)
                def do_projection(a, b, langs, algo, sample, nn, md, lines, progress=gr.Progress()):
                    pa = projection.project(world, a, langs, algo, sample, nn, md, progress=lambda f, d: progress(f / 2, desc=d))
                    pb = projection.project(world, b, langs, algo, sample, nn, md, progress=lambda f, d: progress(0.5 + f / 2, desc=d))
                    text = f"{pa.model}: {pa.source} in {pa.seconds:.1f} s · {pb.model}: {pb.source} in {pb.seconds:.1f} s"
                    return text, projection.figure(pa, lines), projection.figure(pb, lines)

                proj_btn.click(do_projection, [proj_a, proj_b, proj_langs, proj_algo, proj_sample, proj_nn, proj_md, proj_lines],
                               [proj_status, plot_a, plot_b], api_name="projection", concurrency_id="projection", concurrency_limit=1)

            # ---------------------------------------------------------------- 6. leaderboard
            with gr.Tab("Leaderboard", id="leaderboard") as lb_tab:
                with gr.Row():
                    lb_sort = gr.Dropdown(leaderboard.COLUMNS, value="SumR", label="Sort by")
                    lb_metric = gr.Dropdown(list(leaderboard.METRICS), value="SumR", label="Chart metric")
                    lb_groups = gr.CheckboxGroup(groups, value=groups, label="Query groups (language / caption source)")
                lb_status = gr.Markdown()
                lb_table = gr.Dataframe(interactive=False, label="Results (click a header to sort)", elem_id="lb-table")
                with gr.Row():
                    lb_bars = gr.Plot(label="Recall", elem_id="lb-bars")
                    lb_mrv = gr.Plot(label="MRV", elem_id="lb-mrv")
                with gr.Row():
                    lb_csv = gr.DownloadButton("Download CSV", elem_id="lb-csv")
                    lb_json = gr.DownloadButton("Download JSON", elem_id="lb-json")

                @guarded(6)
                def do_leaderboard(sort_by, metric, chosen):
                    df = leaderboard.leaderboard_table(world, sort_by, chosen or None)
                    bars, mrv = leaderboard.leaderboard_figures(df, metric)
                    csv_path, json_path = leaderboard.export(world, df)
                    text = f"{df['model'].nunique()} models × {df['group'].nunique()} query groups, test split of **{world.name}**."
                    return text, df, bars, mrv, str(csv_path), str(json_path)

                gr.on([lb_tab.select, lb_sort.change, lb_metric.change, lb_groups.change], do_leaderboard, [lb_sort, lb_metric, lb_groups],
                      [lb_status, lb_table, lb_bars, lb_mrv, lb_csv, lb_json], api_name="leaderboard")

            # ---------------------------------------------------------------- 7. experiment
            with gr.Tab("Experiment", id="experiment"):
                gr.Markdown("Train a method on this world for a few hundred steps, optionally with injected noisy correspondence, and watch "
                            "the loss. The new model then appears next to the shipped ones in every tab (for every user of this server).")
                with gr.Row():
                    ex_method = gr.Dropdown(METHODS.list(), value="uml" if "uml" in METHODS else METHODS.list()[0], label="Method", allow_custom_value=True)
                    ex_noise = gr.Slider(0.0, 0.8, value=0.2, step=0.05, label="Noise rate (share of swapped translations)")
                    ex_steps = gr.Slider(experiment.STEP_LIMITS[0], 1000, value=200, step=5, label="Steps")
                with gr.Row():
                    ex_start = gr.Button("Start training", variant="primary", elem_id="ex-start")
                    ex_stop = gr.Button("Stop", elem_id="ex-stop")
                ex_job = gr.Textbox(label="Run id", interactive=False, elem_id="ex-job")
                ex_status = gr.Markdown(elem_id="ex-status")
                ex_progress = gr.HTML()
                ex_plot = gr.Plot(label="Loss", elem_id="ex-plot")
                timer = gr.Timer(1.0, active=False)

                @guarded(5, status_at=1)
                def train_start(method, noise, steps):
                    job = jobs.start(method, noise, steps)
                    return job.id, job.status_markdown(), job.progress_html(), job.loss_figure(), gr.Timer(active=True)

                ex_start.click(train_start, [ex_method, ex_noise, ex_steps], [ex_job, ex_status, ex_progress, ex_plot, timer], api_name="train_start")

                choice_targets = [methods, ml_methods, proj_a, proj_b, audit_model]

                @guarded(4 + len(choice_targets))
                def train_status(job_id):
                    job = jobs.get(job_id)
                    ups = model_choice_updates() if not job.active else [gr.skip()] * len(choice_targets)
                    return (job.status_markdown(), job.progress_html(), job.loss_figure(), gr.Timer(active=job.active), *ups)

                status_outputs = [ex_status, ex_progress, ex_plot, timer, *choice_targets]
                timer.tick(train_status, ex_job, status_outputs, api_name="train_status")

                @guarded(1)
                def train_stop(job_id):
                    return jobs.stop(job_id).status_markdown() + "\n\nStopping after the current step…"

                ex_stop.click(train_stop, ex_job, ex_status, api_name="train_stop")


            # ---------------------------------------------------------------- 8. about
            with gr.Tab("About", id="about"):
                gr.Markdown(about.about_markdown(world), latex_delimiters=LATEX, elem_id="about")

        # A page opened after a training run finished lists the new model too.
        demo.load(model_choice_updates, None, choice_targets, api_name="refresh_models")
    return demo


def warm_up(world) -> None:
    """Precompute what the first visitor of each tab would otherwise wait for (background thread)."""
    from ccr_core.dashboard import consistency, projection

    try:
        consistency.mrv_summary(world)
        for name in world.model_names():
            projection.project(world, name, world.languages, **{k: v for k, v in projection.DEFAULTS.items() if k != "sample"},
                               sample=min(projection.DEFAULTS["sample"], len(world.gallery)))
    except Exception:  # noqa: BLE001 -- warming is an optimisation; the tabs compute on demand anyway
        log.exception("warm-up failed")


def launch(demo, world, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    import gradio as gr

    demo.queue(default_concurrency_limit=4)
    return demo.launch(server_name=host, server_port=port, share=False, allowed_paths=world.served_dirs(), show_error=False, max_file_size=MAX_UPLOAD,
                       prevent_thread_lock=not block, quiet=not block, footer_links=["api"], theme=gr.themes.Soft(), css=CSS)


def open_world(args):
    """Load the world named on the command line and the numbers the Leaderboard shows."""
    from ccr_core.dashboard import leaderboard
    from ccr_core.dashboard.world import load_world, resolve_world
    from ccr_core.paths import CHECKPOINTS_DIR, workspace_dir

    workspace = Path(args.workspace).expanduser() if args.workspace else workspace_dir()
    bundle_root = resolve_world(args.world, workspace)
    checkpoints = Path(args.checkpoints).expanduser() if args.checkpoints else CHECKPOINTS_DIR / Path(args.world).name
    world = load_world(bundle_root, checkpoints, workspace, progress=True)
    leaderboard.all_results(world)
    return world


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from ccr_core.dashboard import WorldNotBuilt

    try:
        world = open_world(args)
    except WorldNotBuilt as exc:
        print(f"ccr dashboard: {exc}", file=sys.stderr)
        return 2
    log.info("world loaded in %.1f s: %s", world.load_seconds, world.describe())
    demo = build_app(world)
    if not args.no_warm:
        threading.Thread(target=warm_up, args=(world,), name="ccr-warm-up", daemon=True).start()
    launch(demo, world, args.host, args.port, block=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
