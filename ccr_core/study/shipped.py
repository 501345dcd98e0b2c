"""The shipped models: each method's seed-0 run copied into ``checkpoints/<world>/`` as float16, evaluated as shipped,
and RESULTS.md's table of them (one seed: gaps there are not findings; the comparison has the intervals)."""
from __future__ import annotations

import math
import shutil
from dataclasses import replace

import torch

from ccr_core.eval.free_queries import evaluate_free_queries, load_scenes, summarise
from ccr_core.io import read_json, write_json_atomic
from ccr_core.methods import REFERENCE
from ccr_core.features import load_features
from ccr_core.paths import CHECKPOINTS_DIR, REPO_ROOT, RESULT_FILE, SHIPPED_FEATURES_DIR, SUMMARY_FILE
from ccr_core.study import grid as study_grid
from ccr_core.study import records
from ccr_core.study.runner import Workbenches, copy_checkpoint, ensure_model, evaluate_run, finished_record
from ccr_core.study.stats import t_interval, threshold_verdict
from ccr_core.training.checkpoint import convert_weights, drop_optimizer_state, weights_sha256
from ccr_core.training.inference import load_trained

# What ships per world: the "published" setting's seed-0 model at these noise rates (and the floor, the
# common encoder itself); the dashboard serves them.
SHIP_NOISE = {"demo-world": (0.0, 0.4), "flickr8k-ml": (0.0,)}


def free_query_report(model, bench) -> dict:
    """Precision@10 of free-typed queries (outside the generator's templates) per language, with chance."""
    model = model.on(bench)
    items = bench.bundle.items_in("test", "image")
    image_emb = model.encode_items(items).numpy()

    def encode(text, lang):
        with torch.no_grad():
            return model.encode_texts([text], lang)[0].numpy()

    return summarise(evaluate_free_queries(encode, image_emb, [it.id for it in items], load_scenes(bench.bundle.root)))


def served(bench, world: str):
    """``bench`` with the image features the dashboard serves the world's models on: the float16 cache the repository
    ships (``assets/features/<world>/<backbone>``, what ``make demo`` puts in the workspace) where there is one, else
    ``bench`` itself. A shipped model is scored here, so that its row is what the dashboard re-measures: the grid's own
    cache (float32, built by ``ccr data build``) differs from it by up to one float16 step, enough to flip a near tie
    between two ranks (tests/test_shipped.py re-measures shipped rows as the dashboard does)."""
    shipped = SHIPPED_FEATURES_DIR / world / bench.features.root.name
    if not (shipped / "meta.json").is_file():
        return bench
    return replace(bench, features=load_features(shipped, bench.visual_identity))


def _fmt(x, digits=1):
    return "" if x is None else f"{x:.{digits}f}"


def _noise_cell(noise: dict | None) -> str:
    """Noise AUROC of the uncertainty u, and of UML's DECL score where measured."""
    if not noise:
        return ""
    return _fmt(noise.get("auroc"), 3) + (f" / {noise['auroc_mismatch']:.3f}" if noise.get("auroc_mismatch") is not None else "")


def _backbones_cell(result: dict) -> str:
    """"frozen", or what was fine-tuned ("image top 2 blocks", "text top 1 layer")."""
    tuned = result.get("fine_tuned") or {}
    parts = [f"image top {tuned['trainable_image_blocks']} block{'s' if tuned['trainable_image_blocks'] != 1 else ''}"] if tuned.get("trainable_image_blocks") else []
    if tuned.get("trainable_layers"):
        parts.append(f"text top {tuned['trainable_layers']} layer{'s' if tuned['trainable_layers'] != 1 else ''}")
    return "fine-tuned: " + " + ".join(parts) if parts else "frozen"


# The fine-tuned setting's targets against the shipped (frozen) floor, as a share of the floor's SumR.
FINE_TUNED_GOALS = {"en": 0.10, "zh/human-translation": 0.10, "zh": 0.05}
FINE_TUNED_MINUTES = 30  # each method's training on this machine


def fine_tuned_targets(results: list[dict], tuned_runs: list[dict]) -> list[str]:
    """Per group of :data:`FINE_TUNED_GOALS`: the shipped frozen floor, and the fine-tuned method with the best mean over its
    runs (``tuned_runs``, seeds of the fine-tuned setting); its gain's interval against the goal gives the verdict (one
    run gives none). Then each shipped fine-tuned model's training time against the limit."""
    floor = next((r for r in results if r["model"] == REFERENCE), None)
    tuned = [r for r in results if r.get("fine_tuned")]
    if floor is None or not tuned or not tuned_runs:
        return []
    out = ["", "**Fine-tuned against the frozen floor** (SumR gain of the fine-tuned runs over the shipped floor; the verdict "
               "comes from the gain's interval over seeds, and one seed gives no verdict)", "",
           "| group | floor (frozen) | goal | best fine-tuned | gain (mean ± 95%) | runs | verdict |", "|---|---|---|---|---|---|---|"]
    for group, share in FINE_TUNED_GOALS.items():
        if group not in floor["groups"]:
            continue
        base = floor["groups"][group]["SumR"]
        gains: dict[str, list[float]] = {}
        for r in tuned_runs:
            if group in r["groups"]:
                gains.setdefault(r["method"], []).append(100.0 * (r["groups"][group]["SumR"] / base - 1))
        if not gains:
            continue
        method = max(gains, key=lambda m: sum(gains[m]) / len(gains[m]))
        mean, hw = t_interval(gains[method])
        spread = "" if math.isnan(hw) else f" ± {hw:.1f}"
        out.append(f"| {group} | {base:.1f} | +{share:.0%} | {method} | {mean:+.1f}{spread}% | {len(gains[method])} | "
                   f"{threshold_verdict(mean, hw, len(gains[method]), 100 * share)} |")
    slow = [r["model"] for r in tuned if r.get("train_seconds", 0) > FINE_TUNED_MINUTES * 60]
    longest = max(tuned, key=lambda r: r.get("train_seconds", 0))
    out += ["", f"Training time: the longest shipped fine-tuned run is {longest['model']}'s, {longest['train_seconds'] / 60:.1f} min (limit "
                f"{FINE_TUNED_MINUTES} min per method, one run each on this machine: {'within it' if not slow else 'over it for ' + ', '.join(slow)})."]
    return out


def results_markdown(all_results: dict[str, list[dict]], tuned_runs: dict[str, list[dict]] | None = None) -> str:
    """The shipped models' table: one row per model the dashboard serves (seed 0, float16 as shipped)."""
    lines = ["# Results", "",
             "Written by `python -m ccr_core.experiments --world W --ship` from `results/<world>.json`. Test split; R@K in percent; SumR =",
             "R@1+5+10 of both directions (max 600); MRV over the languages with native test captions (lower is better). One seed:",
             "gaps here are not findings (the comparison above has the intervals). *scored after*: the steps the shipped model saw, of its",
             "run's budget (`earlier` = trained before the protocol, one target language per step; `not converged` = its grid run's",
             "validation curve still gained more than 1% over the last quarter of the budget).", ""]
    for world, results in all_results.items():
        lines += [f"### {world}", ""]
        groups = sorted({g for r in results for g in r["groups"]})
        lines.append("| model | backbones | noise | " + " | ".join(f"{g} SumR" for g in groups) + " | MRV i2t / t2i | noise AUROC u / DECL score | train s | scored after |")
        lines.append("|---|---|---|" + "---|" * len(groups) + "---|---|---|---|")
        for r in results:
            m = r.get("mrv", {})
            lines.append(f"| {r['model']} | {_backbones_cell(r)} | {r['noise_rate']:g} | " + " | ".join(_fmt(r["groups"].get(g, {}).get("SumR")) for g in groups)
                         + f" | {_fmt(m.get('mrv_i2t'), 2)} / {_fmt(m.get('mrv_t2i'), 2)} | {_noise_cell(r.get('noise'))} | {_fmt(r.get('train_seconds'), 0)} | {_budget_cell(r, world)} |")
        lines += fine_tuned_targets(results, (tuned_runs or {}).get(world, []))
        lines += ["", "<details><summary>R@1 / R@5 / R@10 per direction and language</summary>", "",
                  "| model | group | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 | SumR | images |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in results:
            for g, rep in r["groups"].items():
                lines.append(f"| {r['model']} | {g} | " + " | ".join(_fmt(rep[f'{d}_R@{k}']) for d in ("t2i", "i2t") for k in (1, 5, 10)) + f" | {_fmt(rep['SumR'])} | {rep['n_images']} |")
        lines += ["", "</details>", ""]
        free = [(r["model"], r["free_queries"]) for r in results if r.get("free_queries")]
        if free:
            langs = sorted(free[0][1])
            lines += ["#### Free-typed queries", "",
                      "Precision@10 of queries written outside the generator's templates (`ccr_core/eval/free_queries.py`: synonyms such as",
                      "\"a crimson disc beside a star\", \"eine knallrote Scheibe\", \"真紅の円盤\"); a hit is a test image holding an object of the named",
                      "colour and shape. Chance = the share of test images holding one.", "",
                      "| model | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs),
                      "| chance | " + " | ".join(f"{free[0][1][l]['chance']:.2f}" for l in langs) + " |"]
            lines += [f"| {name} | " + " | ".join(f"{fq[l]['precision_at_10']:.2f}" for l in langs) + " |" for name, fq in free]
            lines.append("")
    return "\n".join(lines) + "\n"


def _budget_cell(result: dict, world: str) -> str:
    """The steps the shipped model saw, of its run's budget ("233 of 699 steps"), or "earlier" for a pre-protocol model;
    "not converged" where the learning curve of the grid run it was copied from still gained more than the rule allows."""
    budget = result.get("budget")
    if result.get("protocol") != "equal-budget" or not budget:
        return "earlier"
    scored = records.scored_budget(result)
    where = "" if scored["checkpoint"] == "end of budget" else " (best val. epoch)"
    mark = "; not converged" if records.run_converged(world, result) is False else ""
    return f"{scored['steps']:,} of {budget['steps']:,} steps{where}{mark}"


FINE_TUNED_SUFFIX = "-ft"  # shipped name of a fine-tuned model: <method>-ft


def ship(world: str, progress: bool = True, methods=None, fine_tuned: bool = False) -> list[dict]:
    """Copy each method's seed-0 "published" model (and the floor's) into ``checkpoints/<world>/``, as float16,
    evaluate that copy, and merge its numbers into ``results/<world>.json`` (other models' rows stay).
    ``methods`` narrows which methods are shipped (``--methods`` on the command line). With ``fine_tuned``,
    the world's fine-tuned runs (``study.grid.FINE_TUNED``) ship as ``<method>-ft`` instead, and each replaces
    the frozen published model of its method (folder and results row); the frozen floor and baseline-en stay."""
    workbenches = Workbenches(progress)
    shipped, replaced = [], set()
    runs = study_grid.fine_tuned_runs(world, seeds=(0,), methods=methods) if fine_tuned else study_grid.grid(world, seeds=(0,), methods=methods, draws=(0,))
    for run in runs:
        wanted = fine_tuned or run.setting == "published" or run.method == REFERENCE
        if not wanted or run.noise not in SHIP_NOISE.get(world, (0.0,)):
            continue
        if finished_record(run) is None:
            print(f"not shipped: {run.label} has not run; the shipped model of its name (if any) stays", flush=True)
            continue
        ensure_model(run, workbenches, progress)  # a record restored from results/ comes without its model
        name = run.method + (FINE_TUNED_SUFFIX if fine_tuned else "") + (f"@noise{run.noise:g}" if run.noise else "")
        target = CHECKPOINTS_DIR / world / name.replace("@", "-")
        if fine_tuned and run.method != REFERENCE:
            replaced.add(run.method)
        # the shipped copy is made and scored beside the target, then put in its place: a failure leaves the shipped model as it was
        staged = target.with_name(f".{target.name}.staged")
        try:
            result = _stage(run, name, staged, served(workbenches.get(run), world), fine_tuned)
            copy_checkpoint(staged, target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        shipped.append(result)
        _merge_rows(world, [result], {name} | ({run.method} if fine_tuned and run.method != REFERENCE else set()))
        print(f"shipped {world}/{name}", flush=True)
    for method in sorted(replaced):  # the frozen model the fine-tuned one replaces (its numbers stay in the grid's tables)
        if (CHECKPOINTS_DIR / world / method).is_dir():
            shutil.rmtree(CHECKPOINTS_DIR / world / method)
    return shipped


def _stage(run, name: str, staged, bench, fine_tuned: bool) -> dict:
    """The run's ``last/`` copied to ``staged`` as float16 without its optimiser state, scored on ``bench``, its
    ``result.json`` written there; returns that result."""
    copy_checkpoint(run.folder() / "last", staged)  # the model at the end of its budget, the one the grid scores
    drop_optimizer_state(staged)
    convert_weights(staged, torch.float16)
    summary = read_json(run.folder() / SUMMARY_FILE)
    result = evaluate_run(staged, bench, summary, name)
    result["scored"] = records.summary_budget(summary)
    result["checkpoint_sha256"] = weights_sha256(staged)  # the float16 copy scored
    if (bench.bundle.root / "scenes.jsonl").exists():
        result["free_queries"] = free_query_report(load_trained(staged, bench, name), bench)
    if fine_tuned:
        result["fine_tuned"] = dict(run.train_overrides)
    result.update({"noise_rate": run.noise, "seed": 0, "setting": run.setting, "weights": "float16",
                   "train_seconds": summary["train_seconds"], "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
                   "captions_per_s": summary["captions_per_s"], "protocol": "equal-budget"})
    write_json_atomic(staged / RESULT_FILE, result)
    return result


def _merge_rows(world: str, rows: list[dict], names: set[str]) -> None:
    """Put ``rows`` into ``results/<world>.json`` in place of the rows named ``names`` (other models' rows stay). Called
    as each model is swapped in, so a ship that fails half-way leaves every swapped-in model with its row."""
    path = records.record_path("shipped", world)
    kept = [r for r in (read_json(path) if path.exists() else []) if r["model"] not in names]
    write_json_atomic(path, kept + rows)

