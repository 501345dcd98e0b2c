"""The experiment grid behind ``RESULTS.md`` and the shipped checkpoints, in one command:

    python -m ccr_core.experiments [--world demo-world flickr8k-ml] [--methods ...] [--ship]

For each world it trains every method (at noise 0 and, on the demo world, at 0.4 noisy
correspondence), skipping runs that already finished; evaluates every best checkpoint on the test
split; writes ``results/<world>.json``; with ``--ship`` copies the checkpoints with their metrics into
``checkpoints/<world>/<model>/``; and rewrites ``RESULTS.md`` from all result files, answering the
research questions from the numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ccr_core.io import read_json, write_json_atomic, write_text_atomic
from ccr_core.paths import CHECKPOINTS_DIR, REPO_ROOT, workspace_dir

RESULTS_DIR = REPO_ROOT / "results"
METHODS = ["baseline", "baseline-en", "nrccr", "cl2cm", "uml", "one_to_k"]


@dataclass
class Experiment:
    world: str
    method: str
    noise: float = 0.0
    overrides: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.method + (f"@noise{self.noise:g}" if self.noise else "")


# Per world: training settings that keep one method within the CPU budget (5 min demo, 20 min Flickr8k-ML).
# One target language per batch (1-to-K always takes all K): NRCCR and CL2CM run several attention
# and transport branches per language, and five languages per step would cost five times as much.
WORLD_SETTINGS = {
    "demo-world": {"epochs": 4, "batch_size": 128, "lr": 5e-4, "targets_per_batch": 1, "method_config": {"hidden_dim": 256}},
    # Model selection on Chinese, the one target language with native (not translated) test captions.
    "flickr8k-ml": {"epochs": 6, "batch_size": 128, "lr": 5e-4, "targets_per_batch": 1, "select_lang": "zh"},
}


def grid(world: str, methods: list[str]) -> list[Experiment]:
    out = []
    if world == "flickr8k-ml":
        # The issue's floor: English + the Baidu/Google Chinese MT only. Its temperature and rate are the best of
        # a small sweep (ccr train --method floor temperature=0.05|0.08|0.1|0.15, lr=1e-4|5e-4|2e-3): a floor
        # left untuned would flatter every method measured against it.
        out.append(Experiment(world, "floor", 0.0, {"target_langs": ["zh"], "target_sources": ["mt:"], "epochs": 12, "lr": 1e-4,
                                                    "method_config": {"temperature": 0.08}}))
    for method in methods:
        # NRCCR's attention towers make it the slowest (~4 min per Flickr8k-ML epoch on 2 cores): 4 epochs keep it
        # inside the issue's 20-minute budget.
        slow = {"epochs": 4} if world == "flickr8k-ml" and method == "nrccr" else {}
        out.append(Experiment(world, method, 0.0, slow))
        if world == "demo-world" and method != "baseline-en":
            out.append(Experiment(world, method, 0.4))
    return out


def run_dir(exp: Experiment, seed: int = 0) -> Path:
    tag = f"-noise{exp.noise:g}" if exp.noise else ""
    return workspace_dir() / "runs" / f"{exp.world}-{exp.method}{tag}-seed{seed}"


def run_world(world: str, methods: list[str], ship: bool, seed: int = 0, progress: bool = True) -> list[dict]:
    import torch

    from ccr_core.evaluate import evaluate_model, load_trained, training_pair_uncertainty
    from ccr_core.training.checkpoint import convert_weights
    from ccr_core.training.train import TrainConfig, _noisy, prepare_workbench, train

    base = TrainConfig(data=world, seed=seed, **WORLD_SETTINGS.get(world, {}))
    bench = prepare_workbench(base, workspace_dir(), progress=progress)
    results = []
    for exp in grid(world, methods):
        cfg = TrainConfig(**{**base.__dict__, "method": exp.method, "noise": exp.noise, **exp.overrides})
        folder = run_dir(exp, seed)
        exp_bench = bench
        if exp.noise:
            exp_bench = type(bench)(_noisy(bench.bundle, cfg), bench.features, bench.text_encoder, bench.text_states, bench.visual_identity)
        if not (folder / "summary.json").exists():
            print(f"== train {world} {exp.name}", flush=True)
            train(cfg, folder, progress=progress, bench=exp_bench, resume=(folder / "last" / "manifest.json").exists())
        summary = read_json(folder / "summary.json")
        checkpoint = folder / "best"
        if ship:  # what ships is a float16 copy; its own numbers are the ones reported
            checkpoint = CHECKPOINTS_DIR / world / exp.name.replace("@", "-")
            if checkpoint.exists():
                shutil.rmtree(checkpoint)
            shutil.copytree(folder / "best", checkpoint)
            convert_weights(checkpoint, torch.float16)
        model = load_trained(checkpoint, bench, exp.name)
        result = evaluate_model(model, bench)
        result.update({"noise_rate": exp.noise, "seed": seed, "train_seconds": summary["train_seconds"],
                       "epochs": summary["epochs"], "best_epoch": summary["best_epoch"], "captions_per_s": summary["captions_per_s"],
                       "weights": "float16" if ship else "float32",
                       "train_config": {k: v for k, v in cfg.__dict__.items() if k in ("target_langs", "target_sources", "epochs", "batch_size", "lr")}})
        if exp.noise:
            unc = training_pair_uncertainty(model, exp_bench)
            if unc:
                result["noise"] = {k: unc[k] for k in ("auroc", "auprc", "precision_at_100", "noisy_fraction", "auroc_any_error",
                                                       "auroc_mismatch", "auprc_mismatch", "precision_at_100_mismatch") if k in unc}
        if (bench.bundle.root / "scenes.jsonl").exists():
            result["free_queries"] = free_query_report(model, bench)
        results.append(result)
        print(json.dumps({"model": exp.name, **{g: round(r["SumR"], 1) for g, r in result["groups"].items()}}), flush=True)
        if ship:
            write_json_atomic(checkpoint / "metrics.json", result)
    write_json_atomic(RESULTS_DIR / f"{world}.json", results)
    return results


def free_query_report(model, bench) -> dict:
    """Precision@10 of free-typed queries (outside the generator's templates) per language, with chance."""
    import torch

    from ccr_core.eval.free_queries import evaluate_free_queries, load_scenes, summarise
    from ccr_core.evaluate import embed_items
    from ccr_core.methods.base import TextBatch
    from ccr_core.training.text_cache import frozen_states

    items = bench.bundle.items_in("test", "image")
    image_emb = embed_items(model, bench, items).numpy()
    meta = model.meta

    def encode(text, lang):
        with torch.no_grad():
            states, mask = frozen_states(bench.text_encoder, [text], meta.get("text_trainable_layers", 0), meta.get("text_prefix", "query: "))
            return model.method.encode_text(TextBatch(states, mask), lang)[0].numpy()

    return summarise(evaluate_free_queries(encode, image_emb, [it.id for it in items], load_scenes(bench.bundle.root)))


def _fmt(x, digits=1):
    return "" if x is None else f"{x:.{digits}f}"


def _noise_cell(noise: dict | None) -> str:
    """Noise AUROC of the uncertainty u, and of UML's mismatch score where measured."""
    if not noise:
        return ""
    return _fmt(noise.get("auroc"), 3) + (f" / {noise['auroc_mismatch']:.3f}" if noise.get("auroc_mismatch") is not None else "")


def results_markdown(all_results: dict[str, list[dict]]) -> str:
    lines = ["# Results", "",
             "Regenerate with `python -m ccr_core.experiments --ship` (or `make results`); the numbers below are read from",
             "`results/<world>.json`, which that command writes. Test split; R@K in percent; SumR = R@1+5+10 of both directions",
             "(max 600); MRV over the languages with native test captions (lower is better); seed 0 for every run.", ""]
    for world, results in all_results.items():
        lines += [f"## {world}", ""]
        groups = sorted({g for r in results for g in r["groups"]})
        lines.append("| model | noise | " + " | ".join(f"{g} SumR" for g in groups) + " | MRV i2t / t2i | noise AUROC u / 1−p̂ | train s |")
        lines.append("|---|---|" + "---|" * len(groups) + "---|---|---|")
        for r in results:
            m = r.get("mrv", {})
            lines.append(f"| {r['model']} | {r['noise_rate']:g} | " + " | ".join(_fmt(r["groups"].get(g, {}).get("SumR")) for g in groups)
                         + f" | {_fmt(m.get('mrv_i2t'), 2)} / {_fmt(m.get('mrv_t2i'), 2)} | {_noise_cell(r.get('noise'))} | {_fmt(r.get('train_seconds'), 0)} |")
        lines += ["", "<details><summary>R@1 / R@5 / R@10 per direction and language</summary>", "",
                  "| model | group | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 | SumR | images |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in results:
            for g, rep in r["groups"].items():
                lines.append(f"| {r['model']} | {g} | " + " | ".join(_fmt(rep[f'{d}_R@{k}']) for d in ("t2i", "i2t") for k in (1, 5, 10)) + f" | {_fmt(rep['SumR'])} | {rep['n_images']} |")
        lines += ["", "</details>", ""]
        free = [(r["model"], r["free_queries"]) for r in results if r.get("free_queries")]
        if free:
            langs = sorted(free[0][1])
            lines += ["### Free-typed queries", "",
                      "Precision@10 of queries written outside the generator's templates (`ccr_core/eval/free_queries.py`: synonyms such as",
                      "\"a crimson disc beside a star\", \"eine knallrote Scheibe\", \"真紅の円盤\"); a hit is a test image holding an object of the named",
                      "colour and shape. Chance = the share of test images holding one.", "",
                      "| model | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs),
                      "| chance | " + " | ".join(f"{free[0][1][l]['chance']:.2f}" for l in langs) + " |"]
            lines += [f"| {name} | " + " | ".join(f"{fq[l]['precision_at_10']:.2f}" for l in langs) + " |" for name, fq in free]
            lines.append("")
        lines += research_answers(world, results)
    return "\n".join(lines) + "\n"


def _target_sumr(result: dict) -> float | None:
    vals = [rep["SumR"] for g, rep in result["groups"].items() if g != "en" and "/" not in g]
    return sum(vals) / len(vals) if vals else None


# The issue's floor on Flickr8k-ML (frozen e5 + EfficientNet-Lite0, one linear map per side, en + zh MT) and
# its goal for the best method: 15% more SumR in every language.
ISSUE_FLOOR = {"en": 251.0, "zh": 160.0, "zh/human-translation": 236.0}
GOAL_FACTOR = 1.15


def issue_goals() -> dict[str, int]:
    """The issue's goal SumR per group: 15% over its floor, rounded up as the issue states them (289 / 184 / 272)."""
    return {group: math.ceil(GOAL_FACTOR * floor) for group, floor in ISSUE_FLOOR.items()}


def floor_comparison(results: list[dict]) -> list[str]:
    """Per language: the issue's floor, our floor row, the goal, and the best method's SumR -- met or not."""
    ours = next((r for r in results if r["method"] == "floor" and r["noise_rate"] == 0), None)
    others = [r for r in results if r["method"] != "floor" and r["noise_rate"] == 0]
    if ours is None or not others:
        return []
    out = ["**Does the best method beat the floor by 15% in every language?** (SumR; goal = 1.15 x the issue's floor)", "",
           "| group | issue's floor | our floor row | goal | best method | its SumR | met |", "|---|---|---|---|---|---|---|"]
    for group, floor in ISSUE_FLOOR.items():
        scored = [(r["groups"][group]["SumR"], r["model"]) for r in others if group in r["groups"]]
        if not scored:
            continue
        best, name = max(scored)
        goal = issue_goals()[group]
        ours_v = ours["groups"].get(group, {}).get("SumR")
        out.append(f"| {group} | {floor:.0f} | {_fmt(ours_v)} | {goal} | {name} | {best:.1f} | {'yes' if best >= goal else '**no**'} |")
    return out + ["", "How far fine-tuning the top of the backbones moves the floor recipe: `results/probes/README.md`, measured by",
                  "the older probe (`ccr_core/probe_finetune.py`, since removed; not shipped models). The trainer reproduces",
                  "each of its rows with `ccr train --method floor … trainable_image_blocks=K trainable_layers=T` (commands in README.md).", ""]


def research_answers(world: str, results: list[dict]) -> list[str]:
    by = {(r["method"], r["noise_rate"]): r for r in results}
    out = ["### Research questions (computed from the table above)", ""]
    out += floor_comparison(results)
    if any(noise for _, noise in by):
        out.append("**Under 40% noisy correspondence, which methods keep more of their target-language SumR?** "
                   "(mean SumR over the non-English languages, noisy / clean)")
        out.append("")
        for method in sorted({m for m, _ in by}):
            clean, noisy = by.get((method, 0.0)), by.get((method, 0.4))
            if clean and noisy and _target_sumr(clean):
                out.append(f"- {method}: {_target_sumr(noisy):.1f} / {_target_sumr(clean):.1f} = {100 * _target_sumr(noisy) / _target_sumr(clean):.1f}% kept")
        out.append("")
    mrvs = {m: r["mrv"]["mrv_mean"] for (m, n), r in by.items() if n == 0 and "mrv_mean" in r.get("mrv", {})}
    if "one_to_k" in mrvs:
        out.append(f"**Does 1-to-K lower MRV?** Mean MRV (both directions) at noise 0: " + ", ".join(f"{m} {v:.2f}" for m, v in sorted(mrvs.items(), key=lambda kv: kv[1])) + ".")
        out.append("")
    noisy_runs = [r for r in results if r.get("noise")]
    if noisy_runs:
        parts = []
        for r in noisy_runs:
            n = r["noise"]
            part = f"{r['model']}: uncertainty u = B/S (methods.md) AUROC {n['auroc']:.3f} ({'met' if n['auroc'] >= 0.9 else 'not met'})"
            if n.get("auroc_mismatch") is not None:
                part += (f"; its Dirichlet mass on the pair's own candidate, 1 − p̂_ii ([ours], `UML.mismatch`), AUROC "
                         f"{n['auroc_mismatch']:.3f} ({'met' if n['auroc_mismatch'] >= 0.9 else 'not met'})")
            parts.append(part)
        out.append("**Does UML's uncertainty find the injected noisy pairs (goal AUROC ≥ 0.9)?** " + "; ".join(parts) + ".")
        out.append("")
    return out


def write_results_md() -> Path:
    all_results = {p.stem: read_json(p) for p in sorted(RESULTS_DIR.glob("*.json"))}
    path = REPO_ROOT / "RESULTS.md"
    write_text_atomic(path, results_markdown(all_results))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccr_core.experiments", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", nargs="+", default=["demo-world", "flickr8k-ml"])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--ship", action="store_true", help="copy best checkpoints and metrics into checkpoints/<world>/")
    parser.add_argument("--markdown-only", action="store_true", help="only rewrite RESULTS.md from results/*.json")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.markdown_only:
        for world in args.world:
            start = time.perf_counter()
            run_world(world, args.methods, args.ship, progress=not args.quiet)
            print(f"== {world} done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"wrote {write_results_md()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
