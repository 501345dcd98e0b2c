"""The comparison grid of docs/methods.md §8, written down once: every method at the same budget, in two settings, at 3 seeds.

A grid is a list of :class:`Run` (world × setting × method × noise × noise draw × seed) in :data:`PROTOCOL`; each run is
one folder under ``<workspace>/runs/protocol/`` whose name carries a hash of its training config (a changed config gets
a new folder, so an old run is never silently reused).

Settings:

- ``published``: each method's own architecture over the frozen backbones (NRCCR's attention tower, the mapping heads),
  labelled as frozen-backbone results;
- ``common``: every method's objective on the floor's heads (``head="linear"``: e5 sentence embedding and pooled visual
  feature, one linear map each), so that a difference is a difference of objective.

Budget: the same optimiser steps and batch size for every method, each step with every target language its pairs have
(``targets_per_batch=0``; 1-to-K does this by design). Early stopping is off (patience above the epoch count) and every
run is scored at the end of its budget (:mod:`ccr_core.study.runner`), so the scored model of every method saw the same
steps. Noisy pairs are drawn with noise seed 0; :attr:`WorldProtocol.noise_draws` adds a second draw (noise seed 1) to
some cells, so the tables can show how much a different draw of noisy pairs moves a number.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ccr_core.data.bundle import load_bundle, resolve_bundle
from ccr_core.methods import METHODS, REFERENCE, main_methods
from ccr_core.paths import workspace_dir
from ccr_core.training.config import TrainConfig
from ccr_core.training.data import training_examples

SETTINGS = ("published", "common")
COMMON_HEAD = "linear"  # the floor's heads: one linear map per side
PILOT_NOISE = (0.0, 0.4)  # the pilot's noise rates: clean, and the rate every setting of every world runs


@dataclass(frozen=True)
class WorldProtocol:
    """What one world's grid trains. ``train`` holds TrainConfig fields shared by every run."""

    train: dict
    steps: int  # optimiser steps of every run
    noise: dict  # setting -> noise rates
    methods: tuple = tuple(main_methods())  # the built-in methods marked main, in display order
    seeds: tuple = (0, 1, 2)
    published_config: dict = field(default_factory=dict)  # method_config of the "published" setting
    method_overrides: dict = field(default_factory=dict)  # method -> method_config overrides (both settings)
    data: str | None = None  # bundle name or folder (default: the world's name)
    noise_draws: dict = field(default_factory=dict)  # setting -> noise rates also run with a second noisy-pair draw (noise seed 1)
    eval_every: int = 0  # steps between learning-curve points (validation SumR per language; ccr_core/training/curve.py)
    pilot_steps: int = 0  # the pilot's budget: long enough to see every method's curve flatten (:func:`pilot_runs`)
    earlier_steps: int = 0  # the grid's budget before the pilot chose ``steps`` (0: none): RESULTS.md's pilot section
    # shows the runs' gains and the methods' order at that budget too, so a reader sees which verdicts it had decided
    grid_eval_every: int = 0  # the grid's curve points (0: every eval_every steps, like the pilot); a validation costs
    # about as much as dozens of frozen-encoder steps, so the grid may take fewer points than the pilot that chose its budget

    def draws(self, setting: str, rate: float) -> tuple:
        """The noise draws (noise seeds) a cell of the grid runs: 0, and 1 where :attr:`noise_draws` asks."""
        return (0, 1) if rate in self.noise_draws.get(setting, ()) else (0,)

    def curve_every(self, pilot: bool) -> int:
        """Steps between learning-curve points of a pilot run or of a grid run."""
        return self.eval_every if pilot else (self.grid_eval_every or self.eval_every)


PROTOCOL = {
    # 82 full batches per epoch (10,600 English training captions at batch 128): 9 epochs, each step with all five
    # target languages; a second noise draw at 40% (its cost, like every cell's: `--budget`). The budget is the
    # pilot's converged one (RESULTS.md's pilot section computes it from results/pilot-demo-world.json); the grid
    # takes a curve point every epoch, the pilot every half epoch.
    "demo-world": WorldProtocol(
        train={"batch_size": 128, "lr": 5e-4, "targets_per_batch": 0},
        steps=738, noise={"common": (0.0, 0.2, 0.4, 0.6), "published": (0.0, 0.4)},
        published_config={"hidden_dim": 256}, noise_draws={"common": (0.4,)},
        eval_every=41, pilot_steps=820, grid_eval_every=82, earlier_steps=164,
    ),
    # 233 full batches per epoch (702 was 3 × 30,000 // 128 before empty captions were dropped). The budget is 9 whole
    # epochs, the smallest one at which every pilot curve has flattened (RESULTS.md's pilot section: NRCCR at 40 % noise
    # is the last to flatten); it was 3 epochs (699 steps) before the pilot. Selection on native Chinese.
    "flickr8k-ml": WorldProtocol(
        train={"batch_size": 128, "lr": 5e-4, "targets_per_batch": 0, "select_lang": "zh"},
        steps=2097, noise={"common": (0.0, 0.2, 0.4, 0.6), "published": (0.0, 0.4)},
        eval_every=233, pilot_steps=2330, earlier_steps=699,  # a curve point every epoch; the pilot runs 10 epochs
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
NO_BACK = (("back_weight", 0.0),)  # NRCCR without its back-translation triplet
TAU_FIXED = (("temperature_init", 0.05), ("temperature_min", 0.05), ("temperature_max", 0.05))  # 1-to-K at the baseline's τ

# Each question names the cause it tests; the gaps that prompted it are in RESULTS.md's tables, computed from records.
_NRCCR_DISTILL = Ablation("nrccr", "no-distill", NO_DISTILL,
                          "Is NRCCR's gap to the floor in the common encoder its triplet objective rather than its teacher? Without "
                          "its two distillation terms (the teacher h^C then not computed; the hardest-negative triplets, the "
                          "back-translation and adversarial terms remain), does the gap remain?")
_NRCCR_DISTILL_NOISE = Ablation("nrccr", "no-distill", NO_DISTILL,
                                "Under 40% injected noise, does NRCCR's distillation toward h^C (the paper's noise-robust part) help: is "
                                "NRCCR without it worse?", noise=0.4)
_NRCCR_NO_BACK_NOISE = Ablation("nrccr", "no-back", NO_BACK,
                                "Under 40% injected noise the swap also moves each swapped caption's back-translation, so the "
                                "back-translation triplet pulls unrelated English captions together through the shared head: "
                                "with its weight 0, does NRCCR keep more of its English and target SumR?", noise=0.4)

ABLATIONS = {
    "demo-world": (_NRCCR_DISTILL, _NRCCR_DISTILL_NOISE, _NRCCR_NO_BACK_NOISE),
    "flickr8k-ml": (
        Ablation("one_to_k", "tau0.05", TAU_FIXED,
                 "Is 1-to-K's English gap to the floor in the common encoder its learned temperature (or English being 1 of K "
                 "captions in its loss)? With τ held at the baseline's 0.05, does the gap remain?"),
        Ablation("one_to_k", "tau0.05-en0.5", (*TAU_FIXED, ("english_weight", 0.5)),
                 "English is 1 of 1-to-K's K positives per image, against 1 of 2 loss terms in the baseline: with τ at 0.05 and "
                 "English given half the positives' weight, does the English gap close?", against="tau0.05"),
        _NRCCR_DISTILL, _NRCCR_DISTILL_NOISE, _NRCCR_NO_BACK_NOISE,
        Ablation("uml", "warmup-all", (("warmup_steps", 10**9),),
                 "Is UML's gap to the floor on German in the common encoder its evidential terms? With its warm-up (the plain "
                 "contrastive terms) lasting the whole run, so the evidential terms never act, does the gap remain?"),
    ),
}


@dataclass(frozen=True)
class FineTune:
    """Backbone tops trained with every method (the papers' setting): the grid's common-encoder run at
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
    noise_seed: int = 0  # which draw of noisy pairs (0: the one every method and seed shares)
    steps: int = 0  # optimiser steps (0: the protocol's budget; the pilot's runs are longer)

    @property
    def label(self) -> str:
        method = f"{self.method}+{self.variant}" if self.variant else self.method
        draw = f"/draw{self.noise_seed}" if self.noise_seed else ""
        pilot = f"/{self.steps}steps" if self.steps else ""
        return f"{self.world}/{self.setting}/{method}@noise{self.noise:g}{draw}/seed{self.seed}{pilot}"

    def train_config(self) -> TrainConfig:
        proto = PROTOCOL[self.world]
        steps = self.steps or proto.steps
        epochs = max(1, math.ceil(steps / steps_per_epoch(self.world, proto.train["batch_size"])))
        method_config = dict(proto.published_config) if self.setting == "published" and self.method != REFERENCE else {}
        if self.setting == "common" and self.method != REFERENCE:
            method_config["head"] = COMMON_HEAD
        method_config.update(proto.method_overrides.get(self.method, {}))
        method_config.update(dict(self.overrides))
        return TrainConfig(data=proto.data or self.world, method=self.method, noise=self.noise, noise_seed=self.noise_seed, seed=self.seed,
                           epochs=epochs, max_steps=steps, patience=epochs + 1, halve_after=epochs + 1, eval_every=proto.curve_every(bool(self.steps)),
                           method_config=method_config, **{**proto.train, **dict(self.train_overrides)})

    def folder(self, root: Path | None = None) -> Path:
        digest = config_digest(asdict(self.train_config()))
        root = root or workspace_dir() / "runs" / ("pilot" if self.steps else "protocol")
        method = f"{self.method}+{self.variant}" if self.variant else self.method
        draw = f"-draw{self.noise_seed}" if self.noise_seed else ""
        return root / self.world / self.setting / method / f"noise{self.noise:g}{draw}-seed{self.seed}-{digest}"


def config_digest(train_config: dict) -> str:
    """The short hash of a training config that names a run's folder (a record's ``train_config`` gives its run's)."""
    return hashlib.sha256(json.dumps(train_config, sort_keys=True).encode()).hexdigest()[:8]


_EPOCH_STEPS: dict = {}


def steps_per_epoch(world: str, batch_size: int) -> int:
    """Full batches per epoch of the world's English training captions (what one epoch is)."""
    key = (world, batch_size)
    if key not in _EPOCH_STEPS:
        examples = training_examples(load_bundle(resolve_bundle(PROTOCOL[world].data or world)), "train", None, ("mt:", "human-translation"))
        _EPOCH_STEPS[key] = max(1, len(examples) // batch_size)
    return _EPOCH_STEPS[key]


def same_as_floor(method: str, setting: str) -> bool:
    """Whether ``method`` in ``setting`` is the floor's model: the floor itself outside the common setting (it has no
    heads of its own), and a method whose class says its common-setting model is the floor's (the baseline)."""
    if method == REFERENCE:
        return setting != "common"
    if method not in METHODS:  # an unknown name fails in its run, where the failure is reported with the others
        return False
    # declared by the class itself: a plugin built on the baseline has its own loss, so it is not the floor's model
    return setting == "common" and bool(vars(METHODS.get(method)).get("common_setting_is_floor", False))


def grid(world: str, methods=None, settings=None, seeds=None, noise=None, draws=None, steps: int = 0) -> list[Run]:
    """The world's runs, optionally narrowed. The floor is one model in both settings, and the baseline is the floor's
    model in the common setting (:func:`same_as_floor`): the floor runs once, as ``common``, at every common noise rate.
    Cells in :attr:`WorldProtocol.noise_draws` also run with noise seed 1. ``steps``: another budget (the pilot's)."""
    proto = PROTOCOL[world]
    runs = []
    for setting in settings or SETTINGS:
        for method in methods or proto.methods:
            if same_as_floor(method, setting):
                continue
            for rate in proto.noise[setting]:
                if noise is not None and rate not in noise:
                    continue
                for draw in proto.draws(setting, rate):
                    if draws is not None and draw not in draws:
                        continue
                    runs += [Run(world, setting, method, float(rate), seed, noise_seed=draw, steps=steps)
                             for seed in (seeds if seeds is not None else proto.seeds)]
    return runs


def pilot_runs(world: str, methods=None) -> list[Run]:
    """The pilot (seed 0, every method, both settings, clean and 40% noise) at :attr:`WorldProtocol.pilot_steps`, with a
    learning-curve point every :attr:`WorldProtocol.eval_every` steps: it shows where each curve flattens, and so the
    budget at which every method has converged (:func:`ccr_core.study.records.converged_budget`)."""
    proto = PROTOCOL[world]
    return grid(world, methods=methods, seeds=(0,), noise=PILOT_NOISE, draws=(0,), steps=proto.pilot_steps)
