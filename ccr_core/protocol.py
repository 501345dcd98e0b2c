"""The comparison protocol of methods.md §8: every method at the same budget, in two settings, at 3 seeds.

A grid is a list of :class:`Run` (world × setting × method × noise × seed), written down once in
:data:`PROTOCOL`. Each run is one folder under ``<workspace>/runs/protocol/`` whose name carries a hash
of its training config; it holds the trainer's output and ``result.json`` (test numbers, noise
detectors, budget). A run whose ``result.json`` exists is skipped, a killed run resumes from ``last/``,
and a changed config gets a new folder -- so the grid is resumable across sittings. Tables, intervals,
research answers and plots are computed by reading those folders (:func:`collect`), never by re-running.

Settings:

- ``published``: each method's own architecture over the frozen backbones (NRCCR's attention tower,
  the mapping heads), labelled as frozen-backbone results;
- ``common``: every method's objective on the floor's heads (``head="linear"``: e5 sentence embedding and
  pooled visual feature, one linear map each), so that a difference is a difference of objective.

Budget: the same optimiser steps and batch size for every method, and every target language in every
step (``targets_per_batch=0``; 1-to-K does this by design), so target-language exposures match too.
Early stopping is off (patience above the epoch count); the best epoch on validation is kept.

Intervals: mean ± the 95% Student-t half-width over seeds (``t_{0.975, n-1} · sd / √n``); a comparison
between two methods uses the per-seed paired difference (same seed, same noisy pairs) and its
t-interval. A research answer "holds" when the interval of the difference excludes 0 on the claimed
side, "does not hold" when it excludes 0 on the other side, and is "not resolved" otherwise.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ccr_core.io import read_json, write_json_atomic
from ccr_core.paths import workspace_dir

SETTINGS = ("published", "common")
COMMON_HEAD = "linear"  # the floor's heads: one linear map per side


@dataclass(frozen=True)
class WorldProtocol:
    """What one world's grid trains. ``train`` holds TrainConfig fields shared by every run."""

    train: dict
    steps: int  # optimiser steps of every run
    noise: dict  # setting -> noise rates
    methods: tuple = ("floor", "baseline", "nrccr", "cl2cm", "uml", "one_to_k")
    seeds: tuple = (0, 1, 2)
    published_config: dict = field(default_factory=dict)  # method_config of the "published" setting
    method_overrides: dict = field(default_factory=dict)  # method -> method_config overrides (both settings)
    data: str | None = None  # bundle name or folder (default: the world's name)


PROTOCOL = {
    # 82 steps per epoch (10,600 English training captions at batch 128): 2 epochs, each step with all five
    # target languages (820 target-language batches, 2.5x the 328 of the earlier one-target-per-step runs)
    "demo-world": WorldProtocol(
        train={"batch_size": 128, "lr": 5e-4, "targets_per_batch": 0},
        steps=164, noise={"common": (0.0, 0.2, 0.4, 0.6), "published": (0.0, 0.4)},
        published_config={"hidden_dim": 256},
    ),
    # 234 steps per epoch (30,000 English training captions): 3 epochs; selection on native Chinese
    "flickr8k-ml": WorldProtocol(
        train={"batch_size": 128, "lr": 5e-4, "targets_per_batch": 0, "select_lang": "zh"},
        steps=702, noise={"common": (0.0, 0.4), "published": (0.0,)},
        method_overrides={"floor": {"temperature": 0.08}},  # the floor's tuned τ (sweep in the README)
    ),
}


@dataclass(frozen=True)
class Ablation:
    """One change to one method's config, run like the grid's cell it changes (same steps, seeds, pairs),
    to test a stated cause of a gap. Its runs sit beside the grid's, under ``<method>+<name>``."""

    method: str
    name: str  # short, used in folder names
    overrides: tuple  # ((method_config field, value), ...)
    question: str  # the cause it tests
    setting: str = "common"
    noise: float = 0.0
    against: str = ""  # another ablation of the same method it is also compared with (it adds one change to that one)


NO_DISTILL = (("similarity_weight", 0.0), ("feature_weight", 0.0))  # NRCCR without its two distillation terms

ABLATIONS = {
    "demo-world": (
        Ablation("nrccr", "no-distill", NO_DISTILL,
                 "NRCCR is far below the floor on the demo world's target languages in the common encoder: without its two "
                 "distillation terms (the teacher h^C not computed; its hardest-negative triplets remain), does the gap remain?"),
        Ablation("nrccr", "no-distill", NO_DISTILL,
                 "NRCCR loses most of its target SumR under 40% injected noise: does its distillation toward h^C help there?",
                 noise=0.4),
    ),
    "flickr8k-ml": (
        Ablation("one_to_k", "tau0.05", (("temperature_init", 0.05), ("temperature_min", 0.05), ("temperature_max", 0.05)),
                 "1-to-K is 32 SumR below the floor on English in the common encoder, and its learned τ ends at 0.032: "
                 "with τ held at the baseline's 0.05, is the gap its temperature (or English being 1 of K captions in its loss)?"),
        Ablation("one_to_k", "tau0.05-en0.5", (("temperature_init", 0.05), ("temperature_min", 0.05), ("temperature_max", 0.05),
                                                ("english_weight", 0.5)),
                 "with τ held at 0.05, 1-to-K is still 22 SumR below the floor on English; English is 1 of its K = 5 positives "
                 "per image, against 1 of 2 loss terms in the baseline: with English given half the positives' weight "
                 "(each target 1/8), does the English gap close?", against="tau0.05"),
        Ablation("nrccr", "no-distill", NO_DISTILL,
                 "NRCCR is below the floor in every target language in the common encoder: without its two distillation "
                 "terms (the cross-attention teacher h^C is then not computed; the VSE++ hardest-negative triplets, the "
                 "back-translation and adversarial terms remain), does the gap remain -- is it the triplet objective, "
                 "not the teacher?"),
        Ablation("nrccr", "no-distill", NO_DISTILL,
                 "NRCCR keeps 64% of its target SumR under 40% injected noise, the baseline 90%: does its distillation "
                 "toward h^C (the paper's noise-robust part) help there -- is NRCCR without it worse?", noise=0.4),
        Ablation("uml", "warmup-all", (("warmup_steps", 702),),
                 "UML is 9-11 SumR below the floor on German in the common encoder: with its warm-up (the plain contrastive "
                 "terms) lasting the whole run, so the evidential terms never act, does the gap remain?"),
    ),
}


@dataclass(frozen=True)
class FineTune:
    """Backbone tops trained with every method (the papers' setting, issue 16): the grid's common-encoder run at
    noise 0 with ``train`` (TrainConfig fields) added. Its runs sit beside the grid's, under ``<method>+<name>``."""

    name: str
    train: tuple  # ((TrainConfig field, value), ...)
    why: str  # how the setting was chosen


# The largest image top whose shipped copies fit the 60 MB cap beside the demo world's checkpoints, the frozen
# Flickr8k-ML floor and baseline-en: the last two Lite0 blocks + head conv are 1.49 M parameters (3.0 MB in
# float16; three blocks would be 3.9 MB and overrun the cap by ~0.1 MB); the top e5 layer (1.78 M, 3.6 MB) does
# not fit beside them, and one pass of it over a step's 640 captions would put a run over 30 minutes.
FINE_TUNED = {
    "flickr8k-ml": FineTune("ft-img2", (("trainable_image_blocks", 2), ("backbone_lr", 1e-4)),
                            "last 2 of EfficientNet-Lite0's 16 blocks + head conv fine-tuned at 1e-4 (heads at the grid's 5e-4); "
                            "the largest image top whose six shipped copies fit the 60 MB cap; text backbone frozen"),
}


def fine_tuned_runs(world: str, seeds=(0,), methods=None) -> list["Run"]:
    """The world's fine-tuned runs: every method in the common encoder at noise 0, with its :data:`FINE_TUNED` tops."""
    tune = FINE_TUNED.get(world)
    if tune is None:
        return []
    proto = PROTOCOL[world]
    return [Run(world, "common", method, 0.0, seed, variant=tune.name, train_overrides=tune.train)
            for method in (methods or proto.methods) for seed in seeds]


def ablation_runs(world: str, seeds=None) -> list["Run"]:
    """The world's ablation runs: every ablation at the grid's seeds."""
    proto = PROTOCOL[world]
    return [Run(world, a.setting, a.method, float(a.noise), seed, variant=a.name, overrides=a.overrides)
            for a in ABLATIONS.get(world, ()) for seed in (seeds if seeds is not None else proto.seeds)]


@dataclass(frozen=True)
class Run:
    world: str
    setting: str
    method: str
    noise: float
    seed: int
    variant: str = ""  # an Ablation's name ("" for the grid's runs)
    overrides: tuple = ()  # its method_config changes
    train_overrides: tuple = ()  # TrainConfig changes (a FineTune's backbone tops)

    @property
    def label(self) -> str:
        method = f"{self.method}+{self.variant}" if self.variant else self.method
        return f"{self.world}/{self.setting}/{method}@noise{self.noise:g}/seed{self.seed}"

    def train_config(self):
        from ccr_core.training.train import TrainConfig

        proto = PROTOCOL[self.world]
        epochs = max(1, math.ceil(proto.steps / steps_per_epoch(self.world, proto.train["batch_size"])))
        method_config = dict(proto.published_config) if self.setting == "published" and self.method != "floor" else {}
        if self.setting == "common" and self.method != "floor":
            method_config["head"] = COMMON_HEAD
        method_config.update(proto.method_overrides.get(self.method, {}))
        method_config.update(dict(self.overrides))
        return TrainConfig(data=proto.data or self.world, method=self.method, noise=self.noise, noise_seed=0, seed=self.seed,
                           epochs=epochs, max_steps=proto.steps, patience=epochs + 1, halve_after=epochs + 1,
                           method_config=method_config, **{**proto.train, **dict(self.train_overrides)})

    def folder(self, root: Path | None = None) -> Path:
        cfg = asdict(self.train_config())
        digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]
        root = root or workspace_dir() / "runs" / "protocol"
        method = f"{self.method}+{self.variant}" if self.variant else self.method
        return root / self.world / self.setting / method / f"noise{self.noise:g}-seed{self.seed}-{digest}"


_EPOCH_STEPS: dict = {}


def steps_per_epoch(world: str, batch_size: int) -> int:
    """Full batches per epoch of the world's English training captions (what one epoch is)."""
    key = (world, batch_size)
    if key not in _EPOCH_STEPS:
        from ccr_core.data.bundle import load_bundle
        from ccr_core.training.data import training_examples
        from ccr_core.training.train import resolve_bundle

        examples = training_examples(load_bundle(resolve_bundle(PROTOCOL[world].data or world)), "train", None, ("mt:", "human-translation"))
        _EPOCH_STEPS[key] = max(1, len(examples) // batch_size)
    return _EPOCH_STEPS[key]


def grid(world: str, methods=None, settings=None, seeds=None, noise=None) -> list[Run]:
    """The world's runs, optionally narrowed. The floor is one model in both settings: it runs once, as
    ``common``, at every common noise rate."""
    proto = PROTOCOL[world]
    runs = []
    for setting in settings or SETTINGS:
        for method in methods or proto.methods:
            if method == "floor" and setting != "common":
                continue
            for rate in proto.noise[setting]:
                if noise is not None and rate not in noise:
                    continue
                runs += [Run(world, setting, method, float(rate), seed) for seed in (seeds if seeds is not None else proto.seeds)]
    return runs


# ----------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------
class Benches:
    """One workbench per (world, noise rate): the clean caches are computed once, noisy bundles reuse them."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self._clean: dict = {}
        self._noisy: dict = {}

    def get(self, run: Run):
        from ccr_core.training.train import _noisy, prepare_workbench

        if run.world not in self._clean:
            self._clean[run.world] = prepare_workbench(run.train_config(), workspace_dir(), progress=self.progress)
        clean = self._clean[run.world]
        if not run.noise:
            return clean
        key = (run.world, run.noise)
        if key not in self._noisy:
            self._noisy[key] = type(clean)(_noisy(clean.bundle, run.train_config()), clean.features, clean.text_encoder,
                                           clean.text_states, clean.visual_identity)
        return self._noisy[key]


def run_one(run: Run, benches: Benches, progress: bool = True) -> dict:
    """Train (or resume) one run, evaluate its best checkpoint, write and return ``result.json``."""
    from ccr_core.training.train import train

    folder = run.folder()
    if (folder / "result.json").exists():
        return read_json(folder / "result.json")
    bench = benches.get(run)
    cfg = run.train_config()
    if not (folder / "summary.json").exists():
        train(cfg, folder, progress=progress, bench=bench, resume=(folder / "last" / "manifest.json").exists())
    result = evaluate_run(folder / "best", bench, read_json(folder / "summary.json"), run.label)
    result.update({"world": run.world, "setting": run.setting, "method": run.method, "noise_rate": run.noise, "seed": run.seed,
                   "train_config": asdict(cfg), **({"variant": run.variant} if run.variant else {})})
    write_json_atomic(folder / "result.json", result)
    return result


def evaluate_run(checkpoint: Path, bench, summary: dict, name: str) -> dict:
    """Test numbers of a checkpoint, its noise detectors (where the bundle has noise labels) and its budget."""
    from ccr_core.evaluate import evaluate_model, load_trained, training_pair_detectors

    start = time.perf_counter()
    model = load_trained(checkpoint, bench, name)
    result = evaluate_model(model, bench)
    found = training_pair_detectors(model, bench)
    if found is not None:
        result["detectors"] = found["detectors"]
        result["noisy_fraction"] = found["noisy_fraction"]
    result["budget"] = {"steps": summary["steps"], "target_exposures": summary.get("target_exposures"),
                        "batch_size": model.meta["train_config"]["batch_size"], "train_seconds": summary["train_seconds"],
                        "best_epoch": summary["best_epoch"], "epochs": summary["epochs"],
                        "eval_seconds": time.perf_counter() - start}
    return result


def collect(world: str, root: Path | None = None) -> list[dict]:
    """Every finished run's ``result.json`` of the world's current grid (runs of other configs are ignored), for the
    grid's methods and any other registered method run at its budget (``--methods <a plugin>``)."""
    from ccr_core.methods import METHODS

    methods = PROTOCOL[world].methods
    out = []
    for run in grid(world, methods=(*methods, *(m for m in METHODS.list() if m not in methods))):
        path = run.folder(root) / "result.json"
        if path.exists():
            out.append(read_json(path))
    return out


def collect_fine_tuned(world: str, root: Path | None = None) -> list[dict]:
    """Every finished fine-tuned run's ``result.json`` of the world (any seed run so far)."""
    runs = fine_tuned_runs(world, seeds=range(10))
    return [read_json(run.folder(root) / "result.json") for run in runs if (run.folder(root) / "result.json").exists()]


def collect_ablations(world: str, root: Path | None = None) -> list[dict]:
    """Every finished ablation run's ``result.json`` of the world (``variant`` names its ablation)."""
    return [read_json(run.folder(root) / "result.json") for run in ablation_runs(world) if (run.folder(root) / "result.json").exists()]


def _change_cell(a: dict[int, float], b: dict[int, float]) -> str:
    """Fine-tuned − frozen, paired per seed: "+x ± hw (above / matches / **below**)" over 2+ seeds, "+x (1 seed)" over one."""
    mean, hw, n = paired(a, b)
    if n == 0:
        return ""
    return f"{mean:+.1f} (1 seed)" if n == 1 else difference_cell(a, b)


def fine_tuned_markdown(world: str, grid_results: list[dict], tuned_results: list[dict]) -> list[str]:
    """Each method with its backbone tops fine-tuned (:data:`FINE_TUNED`) against the same method frozen (the grid's
    common-encoder cell at noise 0, same seeds), per query language."""
    tune = FINE_TUNED.get(world)
    if tune is None or not tuned_results:
        return []
    frozen, tuned = cells(grid_results), cells(tuned_results)
    groups = sorted({g for r in tuned_results for g in r["groups"]})
    out = [f"#### Fine-tuned backbone tops ({world}): the papers' setting", "",
           f"Every method in the common encoder at noise 0, as in the grid (same steps, batch, pairs), with {tune.why} "
           f"(`{', '.join(f'{k}={v:g}' for k, v in tune.train)}`). `python -m ccr_core.experiments --world {world} --fine-tuned` "
           f"(seed 0; `--seeds 0 1 2` for more; resumable). *frozen*: the grid's run of the same method and seed(s), "
           "backbones frozen. Seconds: training with its validation passes.", "",
           "| method | backbones | seeds | " + " | ".join(f"{g} SumR" for g in groups) + " | train s |",
           "|---|---|---|" + "---|" * len(groups) + "---|"]
    for method in METHOD_ORDER:
        ft = tuned.get(("common", method, 0.0))
        if ft is None:
            continue
        seeds = ft["seeds"]
        base = frozen.get(("common", method, 0.0))
        same = {m: {s: v for s, v in by_seed.items() if s in seeds} for m, by_seed in base["per_seed"].items()} if base else {}
        out.append(f"| {method} | fine-tuned | {len(seeds)} | " + " | ".join(_pm(ft["stats"].get(f"SumR {g}")) for g in groups)
                   + f" | {_mean(ft['stats'].get('train_seconds'))} |")
        if base:
            out.append(f"| {method} | frozen | {len(set(seeds) & set(base['seeds']))} | "
                       + " | ".join(_pm(t_interval(list(same.get(f"SumR {g}", {}).values()))) for g in groups)
                       + f" | {_mean(t_interval(list(same.get('train_seconds', {}).values())))} |")
            out.append(f"| {method} | change | | " + " | ".join(_change_cell(ft["per_seed"].get(f"SumR {g}", {}), same.get(f"SumR {g}", {}))
                                                               for g in groups) + " | |")
    return out + [""]


def ablation_markdown(world: str, grid_results: list[dict], ablation_results: list[dict]) -> list[str]:
    """Each ablation against the grid cell it changes and against the floor, per query language (paired per seed)."""
    if not ablation_results:
        return []
    table = cells(grid_results)
    out = [f"#### Ablations ({world}): a stated cause of a gap, tested", "",
           f"Each ablation changes one method's config and runs like the grid's cell (same steps, seeds and pairs); "
           f"`python -m ccr_core.experiments --world {world} --ablations` (resumable). Differences paired per seed, 95% t-intervals.", ""]
    for a in ABLATIONS.get(world, ()):
        mine = [r for r in ablation_results if r.get("variant") == a.name and r["method"] == a.method]
        if not mine:
            continue
        variant = cells(mine)[(a.setting, a.method, a.noise)]
        base, floor = table.get((a.setting, a.method, a.noise)), table.get(("common", "floor", a.noise))
        groups = sorted(k.split(" ", 1)[1] for k in variant["per_seed"] if k.startswith("SumR "))
        change = ", ".join(f"{k} {v}" for k, v in a.overrides)
        at = f" at noise {a.noise:g}" if a.noise else ""
        out += [f"**{a.method} + {a.name}**{at} ({change}; {len(variant['seeds'])} seeds). {a.question}", "",
                "| query language | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups),
                "| ablation SumR | " + " | ".join(_pm(variant["stats"].get(f"SumR {g}")) for g in groups) + " |"]
        others = [(f"ablation − {a.method}", base), ("ablation − floor", floor)]
        if a.against:
            earlier = [r for r in ablation_results if r.get("variant") == a.against and r["method"] == a.method]
            if earlier:
                others.insert(1, (f"ablation − {a.method}+{a.against}", cells(earlier)[(a.setting, a.method, a.noise)]))
        for label, other in others:
            if not other:
                continue
            row = [difference_cell(variant["per_seed"].get(f"SumR {g}", {}), other["per_seed"].get(f"SumR {g}", {})) for g in groups]
            out.append(f"| {label} | " + " | ".join(row) + " |")
        out.append("")
    return out


# ----------------------------------------------------------------------------------------------------
# intervals and cells
# ----------------------------------------------------------------------------------------------------
def t_interval(values) -> tuple[float, float]:
    """Mean and the 95% Student-t half-width over the values (seeds); half-width nan for a single value."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def target_sumr(result: dict) -> float | None:
    """Mean SumR over the non-English query groups of native (or the only) test captions."""
    values = [rep["SumR"] for g, rep in result["groups"].items() if g != "en" and "/" not in g]
    return sum(values) / len(values) if values else None


def run_metrics(result: dict) -> dict[str, float]:
    """The per-run numbers the tables aggregate: SumR per group, target SumR, MRV, detector AUROCs, budget."""
    out = {f"SumR {g}": rep["SumR"] for g, rep in result["groups"].items()}
    out["target SumR"] = target_sumr(result)
    mrv = result.get("mrv", {})
    for key in ("mrv_mean", "mrv_i2t", "mrv_t2i"):
        if key in mrv:
            out[key] = mrv[key]
    for name, report in result.get("detectors", {}).items():
        for key in ("auroc", "auprc", "precision_at_n_noisy"):
            out[f"{name} {key}"] = report[key]
    for key in ("steps", "target_exposures", "train_seconds"):
        if result.get("budget", {}).get(key) is not None:
            out[key] = result["budget"][key]
    return out


def cells(results: list[dict]) -> dict[tuple, dict]:
    """``{(setting, method, noise): {"seeds": [...], "per_seed": {metric: {seed: v}}, "stats": {metric: (mean, hw)}}}``."""
    grouped: dict[tuple, dict] = {}
    for r in results:
        cell = grouped.setdefault((r["setting"], r["method"], r["noise_rate"]), {"seeds": [], "per_seed": {}})
        cell["seeds"].append(r["seed"])
        for metric, value in run_metrics(r).items():
            if value is not None:
                cell["per_seed"].setdefault(metric, {})[r["seed"]] = value
    for cell in grouped.values():
        cell["seeds"].sort()
        cell["stats"] = {m: t_interval(list(by_seed.values())) for m, by_seed in cell["per_seed"].items()}
    return grouped


def kept_share(table: dict, setting: str, method: str, noise: float) -> dict[int, float]:
    """Per seed: target SumR at ``noise`` as a percentage of the same seed's clean target SumR."""
    clean, noisy = table.get((setting, method, 0.0)), table.get((setting, method, noise))
    if not clean or not noisy:
        return {}
    c, n = clean["per_seed"].get("target SumR", {}), noisy["per_seed"].get("target SumR", {})
    return {s: 100.0 * n[s] / c[s] for s in sorted(set(c) & set(n)) if c[s]}


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """Mean and 95% half-width of the per-seed differences a − b over the seeds both have; and how many."""
    seeds = sorted(set(a) & set(b))
    mean, hw = t_interval([a[s] - b[s] for s in seeds])
    return mean, hw, len(seeds)


def verdict(mean: float, hw: float, n: int, better: str = "higher") -> str:
    """"holds" / "does not hold" / "not resolved at n seeds" for the claim "a is better than b"."""
    if n < 2 or math.isnan(hw):
        return f"not resolved ({n} seed{'s' if n != 1 else ''})"
    if hw == 0 and mean == 0:
        return "identical in every seed"
    lo, hi = mean - hw, mean + hw
    sign = 1 if better == "higher" else -1
    if sign * lo > 0 and sign * hi > 0:
        return "holds"
    if sign * lo < 0 and sign * hi < 0:
        return "does not hold"
    return f"not resolved at {n} seeds"


# ----------------------------------------------------------------------------------------------------
# budget
# ----------------------------------------------------------------------------------------------------
def measure_seconds_per_step(world: str, benches: Benches, steps: int = 8) -> dict[tuple, float]:
    """Seconds per optimiser step of every (setting, method) of the world's grid, timed on ``steps`` steps
    after one warm-up step (a calibration for :func:`budget`; nothing is written)."""
    import tempfile

    from ccr_core.training.train import train

    out = {}
    for run in grid(world, seeds=(0,), noise=(0.0,)):
        cfg = run.train_config()
        cfg.max_steps, cfg.epochs = steps + 1, 1
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, Path(tmp), progress=False, bench=benches.get(run),
                  on_step=lambda info: times.append(time.perf_counter()))
        out[(run.setting, run.method)] = (times[-1] - times[0]) / max(len(times) - 1, 1)
    return out


def budget(world: str, per_step: dict[tuple, float], eval_seconds: float) -> tuple[float, list[str]]:
    """Estimated seconds of the whole grid (steps × s/step + evaluation, per run), and a table of it."""
    proto = PROTOCOL[world]
    lines = ["| setting | method | runs | s/step | est. s per run | est. s |", "|---|---|---|---|---|---|"]
    total = 0.0
    runs = grid(world)
    for setting, method in sorted({(r.setting, r.method) for r in runs}):
        n = sum(1 for r in runs if (r.setting, r.method) == (setting, method))
        per_run = per_step[(setting, method)] * proto.steps + eval_seconds
        total += n * per_run
        lines.append(f"| {setting} | {method} | {n} | {per_step[(setting, method)]:.3f} | {per_run:.0f} | {n * per_run:.0f} |")
    lines.append(f"| all | | {len(runs)} | | | {total:.0f} ({total / 3600:.2f} h) |")
    return total, lines


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of the checkpoint folder ``src`` (written beside it, then renamed)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    old = dst.with_name(f".{dst.name}.old")
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------
METHOD_ORDER = ("floor", "baseline", "nrccr", "cl2cm", "uml", "one_to_k")
DETECTORS = (("cosine", "raw cosine (trivial)"), ("pair_loss", "per-pair loss (trivial, NCR)"),
             ("uncertainty", "UML u = B/S"), ("mismatch", "UML DECL score (trains with)"))


def _pm(stat: tuple[float, float] | None, digits: int = 1) -> str:
    if stat is None or stat[0] is None or math.isnan(stat[0]):
        return ""
    mean, hw = stat
    return f"{mean:.{digits}f}" + ("" if math.isnan(hw) else f" ± {hw:.{digits}f}")


def _mean(stat: tuple[float, float] | None) -> str:
    """A mean without its interval (training seconds depend on the machine's load, not on the method alone)."""
    return "" if stat is None or math.isnan(stat[0]) else f"{stat[0]:.0f}"


def _ordered(table: dict, setting: str) -> list[tuple]:
    keys = [k for k in table if k[0] == setting or (k[1] == "floor" and setting == "published")]
    return sorted(keys, key=lambda k: (METHOD_ORDER.index(k[1]) if k[1] in METHOD_ORDER else 99, k[2]))


def _claim(label: str, diff: tuple[float, float, int], better: str, unit: str = "", digits: int = 2) -> str:
    mean, hw, n = diff
    if n == 0:
        return f"- {label}: no runs yet."
    return f"- {label}: difference {mean:+.{digits}f}{unit} ± {0 if math.isnan(hw) else hw:.{digits}f} ({n} seed{'s' if n != 1 else ''}) — **{verdict(mean, hw, n, better)}**"


def research_answers(world: str, table: dict) -> list[str]:
    """The issues' research questions, answered from the per-seed paired differences."""
    out = ["#### Research answers (paired differences over seeds, 95% t-intervals)", ""]
    for setting in SETTINGS:
        noisy = sorted({k[2] for k in table if k[0] == setting and k[2] > 0})
        for rate in noisy:
            base = kept_share(table, setting, "baseline", rate)
            if not base:
                continue
            out.append(f"**{setting}, {rate:.0%} noise: which methods keep more target SumR than the baseline?** (share kept, points)")
            for method in METHOD_ORDER:
                if method == "baseline" or (setting, method, rate) not in table and not (method == "floor" and ("common", method, rate) in table):
                    continue
                own = kept_share(table, "common" if method == "floor" else setting, method, rate)
                if own:
                    out.append(_claim(f"{method} − baseline", paired(own, base), "higher", " pts"))
            out.append("")
    for setting in SETTINGS:
        a, b = table.get((setting, "one_to_k", 0.0)), table.get((setting, "baseline", 0.0))
        if a and b and "mrv_mean" in a["per_seed"]:
            out += [f"**{setting}: does 1-to-K lower MRV at equal budget?** (mean MRV of both directions, noise 0)",
                    _claim("one_to_k − baseline", paired(a["per_seed"]["mrv_mean"], b["per_seed"]["mrv_mean"]), "lower"), ""]
    if world == "flickr8k-ml":
        for setting in SETTINGS:
            a, b = table.get((setting, "nrccr", 0.0)), table.get((setting, "baseline", 0.0))
            if a and b and "SumR zh" in a["per_seed"]:
                out += [f"**{setting}: does NRCCR beat the baseline under real MT noise?** (native Chinese SumR; trained on Baidu/Google MT)",
                        _claim("nrccr − baseline", paired(a["per_seed"]["SumR zh"], b["per_seed"]["SumR zh"]), "higher"), ""]
    rates = sorted({k[2] for k in table if k[1] == "uml" and k[2] > 0})
    for setting in SETTINGS:
        for rate in rates:
            uml, base = table.get((setting, "uml", rate)), table.get((setting, "baseline", rate))
            if uml and base and "mismatch auroc" in uml["per_seed"] and "cosine auroc" in base["per_seed"]:
                gap = paired(uml["per_seed"]["mismatch auroc"], base["per_seed"]["cosine auroc"])
                out += [f"**{setting}, {rate:.0%} noise: does UML's detector beat the raw cosine of the baseline?** (AUROC)",
                        _claim("UML DECL score − baseline cosine", gap, "higher", digits=3),
                        _claim("UML u − baseline cosine", paired(uml["per_seed"]["uncertainty auroc"], base["per_seed"]["cosine auroc"]), "higher", digits=3)]
                if gap[2] and gap[0] < 0.02:
                    out.append(f"- In plain words: the trivial detector is nearly as good (baseline cosine AUROC {_pm(base['stats']['cosine auroc'], 3)}); "
                               "UML's own score adds at most a hundredth or two of AUROC, and u = B/S is far worse than either.")
                out.append("")
    return out


def difference_cell(a: dict[int, float], b: dict[int, float]) -> str:
    """A table cell for the per-seed paired difference a − b: "+x ± hw (above / matches / **below** / identical)",
    empty when no seed is shared."""
    mean, hw, n = paired(a, b)
    if n == 0:
        return ""
    word = {"holds": "above", "does not hold": "**below**", "identical in every seed": "identical"}.get(verdict(mean, hw, n), "matches")
    return f"{mean:+.1f} ± {0 if math.isnan(hw) else hw:.1f} ({word})"


def against_floor(table: dict, setting: str = "common", noise: float = 0.0) -> list[str]:
    """Each method against the floor, per query language (paired per seed): does it match the floor
    within its interval, or beat it, or fall below it? (issue 13: in the common-encoder setting the
    baseline should match the floor; a method below the floor needs its cause found)."""
    floor = table.get(("common", "floor", noise))
    if not floor:
        return []
    groups = sorted(k.split(" ", 1)[1] for k in floor["per_seed"] if k.startswith("SumR "))
    rows = []
    for method in METHOD_ORDER:
        cell = table.get((setting, method, noise))
        if method == "floor" or not cell:
            continue
        row = [difference_cell(cell["per_seed"].get(f"SumR {g}", {}), floor["per_seed"][f"SumR {g}"]) for g in groups]
        rows.append(f"| {method} | " + " | ".join(row) + " |")
    if not rows:
        return []
    return [f"#### Against the floor ({setting} setting, noise {noise:g}): method − floor SumR per query language, paired per seed", "",
            "\"matches\": the 95% interval of the difference contains 0; \"above\" / \"below\": it excludes 0.", "",
            "| method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups), *rows, ""]


def uml_targets(table: dict, world: str = "demo-world") -> list[str]:
    """Issue 12's targets (set on the demo world; on Flickr8k-ML "the same comparisons, reported"), met or not, from the intervals."""
    out = []
    for setting in SETTINGS:
        uml, base = kept_share(table, setting, "uml", 0.4), kept_share(table, setting, "baseline", 0.4)
        if not uml or not base:
            continue
        mean, hw, n = paired(uml, base)
        clean_u, clean_b = table[(setting, "uml", 0.0)]["per_seed"]["target SumR"], table[(setting, "baseline", 0.0)]["per_seed"]["target SumR"]
        ratio = {s: 100.0 * (clean_u[s] / clean_b[s] - 1) for s in set(clean_u) & set(clean_b)}
        rm, rhw = t_interval(list(ratio.values()))
        auc = table.get((setting, "uml", 0.4), {}).get("stats", {}).get("mismatch auroc")
        out += [f"**Issue 12 targets, {setting} setting** ({world}, 40% noise, {n} seeds"
                + ("" if world == "demo-world" else "; the targets were set for the demo world, the same comparisons here") + "):",
                f"- UML keeps ≥ baseline's share + 5 points: UML − baseline = {mean:+.1f} ± {0 if math.isnan(hw) else hw:.1f} points — "
                f"**{'met' if mean >= 5 else 'not met'}** (mean; {'the interval is above 5' if not math.isnan(hw) and mean - hw >= 5 else 'the interval does not exclude < 5'})",
                f"- UML's clean target SumR within 3% of the baseline's: {rm:+.1f} ± {0 if math.isnan(rhw) else rhw:.1f}% — **{'met' if rm >= -3 else 'not met'}**",
                (f"- UML's own detector AUROC ≥ 0.95: {_pm(auc, 3)} — **{'met' if auc[0] >= 0.95 else 'not met'}**" if auc else "- UML's detector: not measured"),
                ""]
    return out


def protocol_markdown(world: str, results: list[dict]) -> list[str]:
    """RESULTS.md's protocol section of one world."""
    if not results:
        return []
    table = cells(results)
    proto = PROTOCOL[world]
    seeds = sorted({r["seed"] for r in results})
    exposures = sorted({r["budget"].get("target_exposures") for r in results if r["budget"].get("target_exposures")})
    done = {(r["setting"], r["method"], r["noise_rate"], r["seed"]) for r in results}
    missing = [r for r in grid(world) if (r.setting, r.method, r.noise, r.seed) not in done]
    out = [f"### {world}: equal-budget protocol ({len(results)} of {len(results) + len(missing)} runs)", "",
           f"Every run: {proto.steps} optimiser steps at batch {proto.train['batch_size']}, every target language in every step "
           f"(target-language caption updates per run: {', '.join(f'{e:,}' for e in exposures)}), seeds {', '.join(map(str, seeds))}, "
           "noisy pairs drawn with noise seed 0 (the same pairs for every method and seed). Cells: mean ± 95% t-interval over seeds. "
           "Frozen backbones (e5-small, EfficientNet-Lite0) in both settings: the papers fine-tune their text encoders.",
           f"Regenerate: `python -m ccr_core.experiments --world {world}` (resumable); runs under `workspace/runs/protocol/{world}/`.", ""]
    if missing:
        by = {}
        for r in missing:
            by.setdefault((r.setting, r.method), []).append(r)
        out += ["**Not run yet** (the grid's cost did not fit this sitting; `--budget` prints it): "
                + "; ".join(f"{m} {s} ({len(rs)} runs: noise {', '.join(sorted({f'{r.noise:g}' for r in rs}))})" for (s, m), rs in sorted(by.items())) + ".", ""]
    groups = sorted({k.split(" ", 1)[1] for c in table.values() for k in c["stats"] if k.startswith("SumR ")})
    for setting in SETTINGS:
        keys = _ordered(table, setting)
        if not any(k[0] == setting for k in keys):
            continue
        title = "as published (each method's own heads)" if setting == "published" else "common encoder (the floor's linear heads for every objective)"
        out += [f"#### {title}", ""]
        if setting == "common" and not proto.method_overrides.get("floor"):
            out += ["Here the baseline's objective (InfoNCE on (v, en) and (v, t), τ 0.05) is the floor's and its heads are the floor's, "
                    "so the two rows are one model trained twice from the same seed: they agree to the last digit, a check of the setting.", ""]
        elif setting == "common":
            overrides = proto.method_overrides["floor"]
            out += [f"Here the baseline has the floor's heads and objective (InfoNCE on (v, en) and (v, t)); the floor differs only by its tuned "
                    f"{', '.join(f'{k} {v}' for k, v in overrides.items())} (the baseline keeps its own). With the floor's value the baseline *is* the floor: "
                    f"`ccr train --method baseline --data {world} --config <a baseline run's train_config.json> {' '.join(f'{k}={v}' for k, v in overrides.items())}` "
                    "ends with the floor's seed-0 weights bit for bit (checked). The table below the research answers compares every method with the floor.", ""]
        out += ["| method | noise | seeds | target SumR | en SumR | MRV (mean i2t/t2i) | kept % | train s (mean) |", "|---|---|---|---|---|---|---|---|"]
        for key in keys:
            st = table[key]["stats"]
            share = kept_share(table, key[0], key[1], key[2]) if key[2] else {}
            out.append(f"| {key[1]}{' (same model in both settings)' if key[1] == 'floor' and setting == 'published' else ''} | {key[2]:g} | "
                       f"{len(table[key]['seeds'])} | {_pm(st.get('target SumR'))} | {_pm(st.get('SumR en'))} | {_pm(st.get('mrv_mean'), 2)} | "
                       f"{_pm(t_interval(list(share.values()))) if share else ''} | {_mean(st.get('train_seconds'))} |")
        out += ["", "<details><summary>SumR per language</summary>", "",
                "| method | noise | " + " | ".join(groups) + " |", "|---|---|" + "---|" * len(groups)]
        for key in keys:
            st = table[key]["stats"]
            out.append(f"| {key[1]} | {key[2]:g} | " + " | ".join(_pm(st.get(f"SumR {g}")) for g in groups) + " |")
        out += ["", "</details>", ""]
    noisy_keys = [k for k in table if k[2] > 0 and any(f"{d} auroc" in table[k]["stats"] for d, _ in DETECTORS)]
    if noisy_keys:
        out += ["#### Noise detectors on the injected noisy pairs (AUROC; AUPRC and precision@(number of noisy pairs) in brackets)", "",
                "The trivial detectors -- 1 − cosine of the pair and its per-pair contrastive loss in its training batch -- are computed for "
                "every model; UML adds u = B/S and the DECL score it trains with.", "",
                "| setting | method | noise | " + " | ".join(label for _, label in DETECTORS) + " |", "|---|---|---|" + "---|" * len(DETECTORS)]
        for key in sorted(noisy_keys, key=lambda k: (k[0], k[2], METHOD_ORDER.index(k[1]) if k[1] in METHOD_ORDER else 99)):
            st = table[key]["stats"]
            row = []
            for name, _ in DETECTORS:
                if f"{name} auroc" in st:
                    row.append(f"{_pm(st[f'{name} auroc'], 3)} ({st[f'{name} auprc'][0]:.2f}, {st[f'{name} precision_at_n_noisy'][0]:.2f})")
                else:
                    row.append("")
            out.append(f"| {key[0]} | {key[1]} | {key[2]:g} | " + " | ".join(row) + " |")
        out.append("")
    out += research_answers(world, table)
    out += against_floor(table)
    out += uml_targets(table, world)
    if (PLOT_DIR / f"protocol-{world}.png").exists():
        out += [f"![target SumR against noise rate, {world}](docs/protocol-{world}.png)", ""]
    return out


PLOT_DIR = Path(__file__).resolve().parent.parent / "docs"


def noise_figure(world: str, results: list[dict], setting: str = "common"):
    """Plotly figure: target SumR (mean ± 95% interval over seeds) against the noise rate, one line per method."""
    import plotly.graph_objects as go

    table = cells(results)
    fig = go.Figure()
    for method in METHOD_ORDER:
        keys = sorted(k for k in table if k[1] == method and (k[0] == setting or method == "floor"))
        if not keys:
            continue
        stats = [table[k]["stats"].get("target SumR", (float("nan"), float("nan"))) for k in keys]
        fig.add_trace(go.Scatter(x=[k[2] for k in keys], y=[s[0] for s in stats], name=method, mode="lines+markers",
                                 line={"dash": "dash"} if method == "floor" else None,
                                 error_y={"type": "data", "array": [0 if math.isnan(s[1]) else s[1] for s in stats], "visible": True}))
    fig.update_layout(title=f"{world}, {setting} setting: target-language SumR under noisy correspondence (mean ± 95% CI over seeds)",
                      xaxis_title="injected noise rate", yaxis_title="target SumR (mean over non-English languages)",
                      width=900, height=520, template="plotly_white")
    return fig
