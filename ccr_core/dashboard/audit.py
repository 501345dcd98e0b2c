"""Uncertainty and noise audit tab (UML): the per-pair uncertainty of every (image, English, target)
training pair, from ``ccr_core.eval.detectors.every_training_pair_uncertainty`` (the same batches, so the same
scores as the noise AUROC in RESULTS.md), keeping pairs without a noise label too. Where labels exist:
ROC and precision-recall curves of every detector -- u, the DECL score UML trains with, and the trivial
ones (the plain baseline's 1 − cosine and per-pair loss) -- AUROC/AUPRC and precision at k; and a
browsable list of the most likely noisy pairs with thumbnail, caption, source and true label."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ccr_core.dashboard.colours import OKABE_ITO, chart_layout
from ccr_core.dashboard.world import InputError, ModelEntry, World, bundle_stamp, language_name, safe_name, uncertainty_models
from ccr_core.io import read_json, sha256_file
from ccr_core.methods import BASELINE
from ccr_core.paths import ASSETS_DIR
from ccr_core import metrics
from ccr_core.eval.detectors import every_training_pair_uncertainty

PAGE = 12




@dataclass
class PairScores:
    caption_ids: list[str]
    item_ids: list[str]
    langs: list[str]
    scores: np.ndarray  # (P,) uncertainty in (0, 1]
    labels: np.ndarray | None  # (P,) 1 = noisy, 0 = clean, -1 = unlabelled; None if no pair is labelled
    noise_names: list[str]  # the label text of each pair ("" if unlabelled)
    mismatch: np.ndarray | None = None  # (P,) the DECL score UML trains with (``UML.mismatch``), where the method has it
    # the trivial detectors beside it, each (P,) aligned with the pairs: the cosine and per-pair loss of the
    # world's plain baseline trained at the same noise rate (or, without one, of this model itself)
    trivial: dict[str, np.ndarray] | None = None

    @property
    def ranking(self) -> np.ndarray:
        """The score pairs are listed and precision@k is taken by: the mismatch score where there is one
        (it finds noisy pairs far better than u, see ``UML.mismatch``), else the uncertainty u."""
        return self.mismatch if self.mismatch is not None else self.scores

    @property
    def ranking_name(self) -> str:
        return "DECL score" if self.mismatch is not None else "uncertainty u"


SHIPPED_DIR = ASSETS_DIR / "audit"  # <world>/<model>-<checkpoint hash>.npz + manifest.json (see ship_scores)


def _labels(model: ModelEntry, caption_ids: list[str]) -> tuple[np.ndarray | None, list[str]]:
    noise = model.bench.bundle.noise
    names = [noise.get(c, "") for c in caption_ids]
    labels = np.array([-1 if not n else int(n != "clean") for n in names])
    return (labels if (labels >= 0).any() else None), names


def _trivial_source(world: World, model: ModelEntry) -> ModelEntry | None:
    return next((m for m in world.model_list() if m.method == BASELINE and m.noise == model.noise), None)


def shipped_scores(world: World, model: ModelEntry, root: Path | None = None) -> PairScores | None:
    """The model's per-pair scores shipped in ``assets/audit/<world>/`` (``ship_scores``), or None. Used only when
    the file's SHA-256, the checkpoint hash, the trivial detectors' baseline and the bundle all match: the same
    numbers the audit would compute, without the training pairs' text states (~10 minutes on a fresh workspace)."""
    folder = (root or SHIPPED_DIR) / world.name
    try:
        manifest = read_json(folder / "manifest.json")
    except (OSError, ValueError):
        return None
    entry = manifest.get("models", {}).get(model.name) if isinstance(manifest, dict) else None
    baseline = _trivial_source(world, model)
    if (not isinstance(entry, dict) or entry.get("checkpoint_sha256") != model.checkpoint_hash
            or manifest.get("bundle") != bundle_stamp(world)
            or entry.get("trivial_checkpoint_sha256") != (baseline.checkpoint_hash if baseline else None)):
        return None
    path = folder / entry["file"]
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        return None
    with np.load(path, allow_pickle=False) as z:
        caption_ids, item_ids, langs = z["caption_ids"].tolist(), z["item_ids"].tolist(), z["langs"].tolist()
        scores = z["scores"]
        mismatch = z["mismatch"] if "mismatch" in z.files else None
        trivial = {name: z[f"trivial_{k}"] for k, name in enumerate(entry.get("trivial", []))}
    labels, names = _labels(model, caption_ids)
    return PairScores(caption_ids, item_ids, langs, scores, labels, names, mismatch, trivial or None)


def ship_scores(world: World, root: Path | None = None) -> list[Path]:
    """Write every uncertainty model's per-pair scores into ``assets/audit/<world>/`` with a manifest
    (SHA-256 of each file, checkpoint hashes, the bundle's stamp). Needs the training pairs (built here)."""
    from ccr_core.io import atomic_path, write_json_atomic

    world.finish_training_caches(progress=True)
    folder = (root or SHIPPED_DIR) / world.name
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"kind": "ccr-audit-scores", "world": world.name, "bundle": bundle_stamp(world), "models": {}}
    written = []
    for name in uncertainty_models(world):
        model = world.model(name)
        ps = pair_uncertainty(world, model, use_shipped=False)
        file = f"{safe_name(name)}-{model.checkpoint_hash[:12]}.npz"
        arrays = {"caption_ids": np.array(ps.caption_ids), "item_ids": np.array(ps.item_ids), "langs": np.array(ps.langs),
                  "scores": ps.scores.astype(np.float32)}
        if ps.mismatch is not None:
            arrays["mismatch"] = ps.mismatch.astype(np.float32)
        trivial = list((ps.trivial or {}).keys())
        for k, key in enumerate(trivial):
            arrays[f"trivial_{k}"] = ps.trivial[key].astype(np.float32)
        with atomic_path(folder / file) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)
        baseline = _trivial_source(world, model)
        manifest["models"][name] = {"file": file, "sha256": sha256_file(folder / file), "checkpoint_sha256": model.checkpoint_hash,
                                    "trivial": trivial, "trivial_checkpoint_sha256": baseline.checkpoint_hash if baseline else None}
        written.append(folder / file)
    for stale in set(folder.glob("*.npz")) - set(written):
        stale.unlink()
    write_json_atomic(folder / "manifest.json", manifest)
    return written


def pair_uncertainty(world: World, model: ModelEntry, batch_size: int = 128, use_shipped: bool = True) -> PairScores:
    memo = world.memo.setdefault("pair_uncertainty", {})
    key = (model.name, model.checkpoint_hash)
    if key in memo and use_shipped:
        return memo[key]
    shipped = shipped_scores(world, model) if use_shipped else None
    if shipped is not None:  # a fresh workspace: the audit opens at once, before the training pairs are ready
        memo[key] = shipped
        return shipped
    world.require_training_pairs()  # the test split opens first; the training pairs follow in the background
    every = every_training_pair_uncertainty(model.trained, model.bench, batch_size)
    if every is None:
        raise InputError(f"{model.name} does not estimate uncertainty.")
    if not every["caption_ids"]:
        raise InputError("This world has no training pairs to audit.")
    labels, names = _labels(model, every["caption_ids"])
    result = PairScores(every["caption_ids"], every["item_ids"], every["langs"], every["scores"], labels, names,
                        every.get("mismatch"), trivial_detectors(world, model, every))
    memo[key] = result
    return result


def trivial_detectors(world: World, model: ModelEntry, every: dict) -> dict[str, np.ndarray]:
    """1 − cosine and the per-pair contrastive loss of each pair, from the world's baseline trained at the
    model's noise rate (same noisy pairs) where there is one, else from the model itself; named by source."""
    from ccr_core.eval.detectors import training_pair_scores

    def named(source: str, scores: dict, order=slice(None)) -> dict[str, np.ndarray]:
        return {f"{source} 1 − cosine (trivial)": scores["cosine"][order], f"{source} per-pair loss (trivial)": scores["pair_loss"][order]}

    baseline = _trivial_source(world, model)
    if baseline is not None:
        other = training_pair_scores(baseline.trained, baseline.bench)
        row = {key: k for k, key in enumerate(zip(other["caption_ids"], other["item_ids"], other["langs"]))}
        keys = list(zip(every["caption_ids"], every["item_ids"], every["langs"]))
        if all(key in row for key in keys):  # the same training pairs: align the baseline's scores to them
            return named(baseline.name, other["detectors"], np.array([row[key] for key in keys]))
    return named(f"{model.name}'s own", every["detectors"])


@dataclass
class AuditView:
    status: str
    histogram: object
    curves: object | None
    precision: pd.DataFrame
    scores: PairScores


def audit(world: World, model_name: str | None = None) -> AuditView:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = uncertainty_models(world)
    if not names:
        raise InputError("No model in this world estimates uncertainty (train UML in the Experiment tab).")
    model = world.model(model_name or names[0])
    if model.name not in names:
        raise InputError(f"{model.name} does not estimate uncertainty; choose one of: {', '.join(names)}.")
    ps = pair_uncertainty(world, model)
    labelled = ps.labels is not None and len(set(ps.labels[ps.labels >= 0].tolist())) == 2
    hist = go.Figure()
    if ps.labels is not None:
        for value, name, colour in ((0, "clean", OKABE_ITO["blue"]), (1, "noisy", OKABE_ITO["vermillion"])):
            sel = ps.scores[ps.labels == value]
            if sel.size:
                hist.add_trace(go.Histogram(x=sel, name=f"{name} ({sel.size})", opacity=0.65, marker_color=colour, nbinsx=40))
        if (ps.labels < 0).any():
            hist.add_trace(go.Histogram(x=ps.scores[ps.labels < 0], name="unlabelled", opacity=0.5, marker_color="#999", nbinsx=40))
    else:
        hist.add_trace(go.Histogram(x=ps.scores, name="all pairs", marker_color="#4C78A8", nbinsx=40))
    hist.update_layout(**chart_layout(barmode="overlay", height=380, xaxis_title="uncertainty u (higher = less sure)", yaxis_title="training pairs",
                                      title=f"Uncertainty of {len(ps.scores)} pairs ({model.label})"))
    curves, precision = None, pd.DataFrame(columns=["k", "precision@k (share noisy)", "noisy found", "random would find"])
    lines = [f"**{model.label}** — {len(ps.scores)} training pairs, mean uncertainty {ps.scores.mean():.3f}."]
    if labelled:
        mask = ps.labels >= 0
        y = ps.labels[mask]
        curves = make_subplots(rows=1, cols=2, subplot_titles=("ROC", "Precision–recall"))
        found = []
        scorers = [("UML u = B/S", ps.scores, OKABE_ITO["orange"])] + ([("UML DECL score (trains with)", ps.mismatch, OKABE_ITO["vermillion"])] if ps.mismatch is not None else [])
        scorers += [(name, values, colour) for (name, values), colour in zip((ps.trivial or {}).items(), (OKABE_ITO["blue"], OKABE_ITO["sky blue"]))]
        for name, values, colour in scorers:
            s = values[mask]
            fpr, tpr, _ = metrics.roc_curve(s, y)
            prec, rec, _ = metrics.pr_curve(s, y)
            auroc, auprc = metrics.auroc(s, y), metrics.auprc(s, y)
            found.append(f"{name}: AUROC **{auroc:.3f}**, AUPRC **{auprc:.3f}**")
            curves.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUROC {auroc:.3f})", line=dict(color=colour, width=3)), row=1, col=1)
            curves.add_trace(go.Scatter(x=rec, y=prec, mode="lines", name=f"{name} (AUPRC {auprc:.3f})", line=dict(color=colour, width=3), showlegend=False), row=1, col=2)
        s = ps.ranking[mask]
        curves.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(color="#aaa", dash="dash")), row=1, col=1)
        curves.add_trace(go.Scatter(x=[0, 1], y=[y.mean()] * 2, mode="lines", name="chance", line=dict(color="#aaa", dash="dash"), showlegend=False), row=1, col=2)
        curves.update_xaxes(title_text="false-positive rate", range=[0, 1], row=1, col=1)
        curves.update_yaxes(title_text="true-positive rate", range=[0, 1.02], row=1, col=1)
        curves.update_xaxes(title_text="recall of noisy pairs", range=[0, 1], row=1, col=2)
        curves.update_yaxes(title_text="precision", range=[0, 1.02], row=1, col=2)
        curves.update_layout(**chart_layout(height=420, legend=dict(orientation="h", y=-0.3)))
        ks = sorted({k for k in (10, 25, 50, 100, 250, 500, int(y.sum()), len(y)) if 0 < k <= len(y)})
        precision = pd.DataFrame([{"k": k, "ranked by": ps.ranking_name, "precision@k (share noisy)": round(metrics.precision_at_k(s, y, k), 3),
                                   "noisy found": int(round(metrics.precision_at_k(s, y, k) * k)), "random would find": round(k * float(y.mean()), 1)} for k in ks])
        lines.append(f"Noise labels on {mask.sum()} pairs ({100 * y.mean():.1f}% noisy; chance: AUROC 0.5, AUPRC {y.mean():.3f}) — "
                     + "; ".join(found) + ".")
        if ps.mismatch is not None:
            lines.append("u = B/S (the paper's uncertainty) measures how much evidence a pair's batch row holds in total; the DECL "
                         "score (what UML trains with) is how little of the pair's symmetric evidence sits on its own image or English "
                         "caption. The list below is ranked by it.")
        if ps.trivial and ps.mismatch is not None:
            own = metrics.auroc(ps.mismatch[mask], y)
            best_name, best = max(((n, metrics.auroc(v[mask], y)) for n, v in ps.trivial.items()), key=lambda kv: kv[1])
            lines.append(f"Against the trivial detector: the best of them ({best_name}) reaches AUROC {best:.3f}, UML's DECL score {own:.3f} — "
                         + ("**UML's detector is no better than the trivial one here.**" if own <= best + 0.005 else f"UML's is better by {own - best:.3f}."))
    else:
        lines.append("This world has no noise labels for these pairs, so only the distribution is shown.")
    return AuditView("\n\n".join(lines), hist, curves, precision, ps)


ALL = "all"


def noise_kinds(world: World, model_name: str | None = None) -> list[str]:
    """The noise labels of the model's training pairs, most frequent first ("clean" last)."""
    names = uncertainty_models(world)
    if not names:
        return []
    ps = pair_uncertainty(world, world.model(model_name or names[0]))
    counts = pd.Series([n for n in ps.noise_names if n]).value_counts()
    return sorted(counts.index, key=lambda k: (k == "clean", -counts[k]))


def detection_by_kind(ps: PairScores) -> pd.DataFrame:
    """Per noise kind: how many of its pairs are among the N pairs the ranking flags first, N = the number of
    noisy pairs (as a detector that knew the noise rate would flag). Clean pairs flagged are false alarms."""
    columns = ["noise kind", "pairs", "flagged", "detection rate"]
    if ps.labels is None:
        return pd.DataFrame(columns=columns)
    labelled = np.flatnonzero(ps.labels >= 0)
    n_flag = int((ps.labels[labelled] == 1).sum())
    order = labelled[np.argsort(-ps.ranking[labelled], kind="stable")]
    flagged = set(order[:n_flag].tolist())
    names = np.array(ps.noise_names, dtype=object)
    rows = []
    for kind in sorted(set(names[labelled]), key=lambda k: (k == "clean", k)):
        rows_of = labelled[names[labelled] == kind]
        hit = sum(1 for j in rows_of if j in flagged)
        rate = hit / len(rows_of) if len(rows_of) else float("nan")
        rows.append({"noise kind": kind + (" (false alarms)" if kind == "clean" else ""), "pairs": len(rows_of), "flagged": hit,
                     "detection rate": f"{100 * rate:.1f}%"})
    return pd.DataFrame(rows, columns=columns)


def uncertain_pairs(world: World, model_name: str | None = None, start: int = 0, count: int = PAGE, lang: str | None = ALL,
                    kind: str | None = ALL) -> tuple[list[tuple[str, str]], pd.DataFrame, str]:
    """A page of training pairs, most likely mismatched first, optionally of one language and one noise kind:
    gallery entries (the image), a table (the machine-translated caption beside its English source) and a status line."""
    names = uncertainty_models(world)
    if not names:
        raise InputError("No model in this world estimates uncertainty.")
    model = world.model(model_name or names[0])
    ps = pair_uncertainty(world, model)
    try:
        start, count = int(start), int(count)
    except (TypeError, ValueError):
        raise InputError("The page start and size must be whole numbers.") from None
    if not 1 <= count <= 100:
        raise InputError("Show between 1 and 100 pairs at a time.")
    keep = np.ones(len(ps.scores), dtype=bool)
    if lang not in (None, "", ALL):
        keep &= np.array(ps.langs) == lang
    if kind not in (None, "", ALL):
        keep &= np.array([n or "unlabelled" for n in ps.noise_names], dtype=object) == kind
    pool = np.flatnonzero(keep)
    if pool.size == 0:
        raise InputError("No training pair matches these filters.")
    if not 0 <= start < pool.size:
        raise InputError(f"Start must be between 0 and {pool.size - 1}.")
    order = pool[np.argsort(-ps.ranking[pool], kind="stable")][start : start + count]
    text_of = {c.id: c for c in model.bench.bundle.captions}
    gallery, rows = [], []
    for r, j in enumerate(order, start=start + 1):
        cap = text_of[ps.caption_ids[j]]
        source = text_of.get(cap.ref)
        english = source.text if source is not None and source.lang == "en" else ""
        label = ps.noise_names[j] or "unlabelled"
        shown = f"u={ps.scores[j]:.3f}" + (f" · DECL={ps.mismatch[j]:.3f}" if ps.mismatch is not None else "")
        gallery.append((str(world.thumbnail(ps.item_ids[j])), f"#{r} · {shown} · {label} · {cap.lang}"))  # the texts: in the table below
        # The two texts first, side by side (what a reader compares), then the scores and labels.
        rows.append({"#": r, "machine-translated caption": cap.text, "English source": english, "language": cap.lang, "true label": label,
                     "uncertainty": round(float(ps.scores[j]), 4), **({"mismatch": round(float(ps.mismatch[j]), 4)} if ps.mismatch is not None else {}),
                     "source": cap.source, "image": ps.item_ids[j], "caption id": cap.id})
    filters = [f"language {lang}" for _ in [0] if lang not in (None, "", ALL)] + [f"kind {kind}" for _ in [0] if kind not in (None, "", ALL)]
    where = f" ({', '.join(filters)})" if filters else ""
    status = f"Pairs {start + 1}–{start + len(order)} of {pool.size}{where}, highest {ps.ranking_name} first ({model.label})."
    return gallery, pd.DataFrame(rows), status


# --------------------------------------------------------------------------------------------------
# the tab (Gradio layout and wiring; gradio is imported here only)


def build_tab(world: World, page) -> None:
    """The Audit tab (UML's uncertainty): the distribution, detection curves, precision at k and a pager of pairs."""
    import gradio as gr

    from ccr_core.dashboard.ui import guarded

    uml_names = uncertainty_models(world)
    with gr.Tab("Audit", id="audit") as tab:
        gr.Markdown("UML estimates how uncertain each training pair is (image, English caption, machine-translated caption): "
                    "its uncertainty u = B/S, and how little of its evidence sits on the pair's own image and caption "
                    "(the DECL score it trains with), beside the trivial detectors (the plain baseline's 1 − cosine and per-pair loss). "
                    "Where the world knows which pairs are noisy, see how well each finds them.")
        model = gr.Dropdown(uml_names, value=uml_names[0] if uml_names else None, label="Model", allow_custom_value=True)
        status = gr.Markdown("", elem_id="audit-status")
        # While the training pairs are prepared in the background (and no shipped scores stand in): show how far, then draw the audit.
        waiting = gr.Timer(3.0, active=False)
        with gr.Row():
            hist = gr.Plot(label="Uncertainty distribution", elem_id="audit-hist")
            curves = gr.Plot(label="ROC and precision–recall", elem_id="audit-curves")
        precision = gr.Dataframe(interactive=False, label="Precision at k (the top-k pairs of the list below)")
        by_kind = gr.Dataframe(interactive=False, label="Detection rate per noise kind (share of each kind among the pairs flagged first)",
                               elem_id="audit-kinds")
        gr.Markdown("**Training pairs most likely mismatched** (by the DECL score where the model has it, else by u): the image, the "
                    "machine-translated caption and the English caption it was translated from.")
        with gr.Row():
            lang_pick = gr.Dropdown([("all languages", ALL)] + [(language_name(l), l) for l in world.languages if l != "en"], value=ALL,
                                    label="Language", elem_id="audit-lang")
            kind_pick = gr.Dropdown([("all kinds", ALL)], value=ALL, label="Noise kind", allow_custom_value=True,
                                    elem_id="audit-kind")
            page_start = gr.Number(value=0, precision=0, label="Start at (0 = most likely mismatched)", minimum=0)
            page_size = gr.Slider(1, 100, value=PAGE, step=1, label="Pairs per page")
        with gr.Row():
            prev_btn, next_btn = gr.Button("◀ Previous"), gr.Button("Next ▶")
        page_status = gr.Markdown(elem_id="audit-page-status")
        pair_gallery = gr.Gallery(columns=6, height=360, allow_preview=False, label="Pairs (click one to open it in the Instance tab)", object_fit="contain", elem_id="audit-gallery",
                                  elem_classes="ccr-gallery")
        # The translation and its English source wrap in the first two wide columns: both visible at 1024 px.
        pair_table = gr.Dataframe(interactive=False, wrap=True, label="Pairs", elem_id="audit-table", elem_classes="ccr-audit-table",
                                  column_widths=["40px", "28%", "28%"])

    page.uncertainty_pickers.append(model)

    @guarded(4, status_at=3)
    def do_page(name, start, size, language=ALL, noise_kind=ALL):
        gallery, table, text = uncertain_pairs(world, name, start, size, language, noise_kind)
        return int(start or 0), gallery, table, text

    @guarded(6 + 4)
    def do_audit(name, start, size, language=ALL, noise_kind=ALL):
        view = audit(world, name)
        kinds_now = noise_kinds(world, name)
        return (view.status, view.histogram, view.curves, view.precision, detection_by_kind(view.scores),
                gr.update(choices=[("all kinds", ALL)] + [(k, k) for k in kinds_now]), *do_page(name, start, size, language, noise_kind))

    page_outputs = [page_start, pair_gallery, pair_table, page_status]
    filters = [model, page_start, page_size, lang_pick, kind_pick]

    def poll(name, start, size, language, noise_kind):
        shipped = name in uml_names and shipped_scores(world, world.model(name)) is not None
        if world.training_work.active and not shipped:
            return (f"⏳ {world.training_status}", *[gr.skip()] * 9, gr.Timer(active=True))
        return (*do_audit(name, start, size, language, noise_kind), gr.Timer(active=False))

    waiting.tick(poll, filters, [status, hist, curves, precision, by_kind, kind_pick, *page_outputs, waiting], api_visibility="private")

    def on_load():
        must_wait = world.training_work.active and not (uml_names and shipped_scores(world, world.model(uml_names[0])) is not None)
        return (f"⏳ {world.training_status}" if must_wait else ""), gr.Timer(active=must_wait)

    page.on_load(on_load, [status, waiting])
    gr.on([tab.select, model.change], do_audit, filters, [status, hist, curves, precision, by_kind, kind_pick, *page_outputs], api_name="audit")
    gr.on([page_start.submit, page_size.release], do_page, filters, page_outputs, api_name="audit_page")
    gr.on([lang_pick.change, kind_pick.change], lambda m, s, n, l, k: do_page(m, 0, n, l, k), filters, page_outputs, api_name="audit_filter")
    prev_btn.click(lambda m, s, n, l, k: do_page(m, max(0, int(s or 0) - int(n)), n, l, k), filters, page_outputs, api_name="audit_prev")
    next_btn.click(lambda m, s, n, l, k: do_page(m, int(s or 0) + int(n), n, l, k), filters, page_outputs, api_name="audit_next")

    def pair_item(table, evt=None):
        from ccr_core.dashboard.ui import selected

        index = selected(evt, "index")
        row = table.iloc[index[0] if isinstance(index, (list, tuple)) else index]
        return row["image"], row["caption id"]

    page.link_instance(pair_gallery.select, [pair_table], pair_item, api_name="audit_open_instance")


def main(argv=None) -> int:
    """``python -m ccr_core.dashboard.audit --ship [--world demo-world]``: write the shipped audit scores."""
    import argparse

    from ccr_core.dashboard.world import load_world, resolve_world
    from ccr_core.paths import CHECKPOINTS_DIR, workspace_dir

    parser = argparse.ArgumentParser(prog="python -m ccr_core.dashboard.audit", description=main.__doc__)
    parser.add_argument("--ship", action="store_true", required=True, help="compute every UML model's per-pair scores and write assets/audit/<world>/")
    parser.add_argument("--world", default="demo-world")
    args = parser.parse_args(argv)
    world = load_world(resolve_world(args.world, workspace_dir()), CHECKPOINTS_DIR / args.world, workspace_dir(), progress=True)
    for path in ship_scores(world):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
