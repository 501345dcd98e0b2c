"""What ships is what is reported: every checkpoint under checkpoints/ verifies and loads into its
method, carries the metrics that results/<world>.json holds for it, and RESULTS.md is exactly what
the experiment command writes from results/*.json (so no number in it was typed by hand)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ccr_core.experiments import render_results_md
from ccr_core.study.records import repo_results_dir
from ccr_core.io import read_json
from ccr_core.paths import CHECKPOINTS_DIR, REPO_ROOT
from ccr_core.training.checkpoint import load_weights, verify_checkpoint

WORLDS = sorted(p.name for p in CHECKPOINTS_DIR.iterdir() if p.is_dir())
SHIPPED = [(w, p.name) for w in WORLDS for p in sorted((CHECKPOINTS_DIR / w).iterdir()) if p.is_dir()]
CHECKPOINT_BUDGET_MB = 60  # issue: all shipped checkpoints together under 60 MB


def test_both_worlds_ship_every_method():
    assert {"demo-world", "flickr8k-ml"} <= set(WORLDS)
    methods = ("baseline", "nrccr", "cl2cm", "uml", "one_to_k")
    demo = {name for w, name in SHIPPED if w == "demo-world"}
    assert {"baseline-en", *methods} <= demo, demo
    # the real-photo world: every method and the floor with fine-tuned backbone tops (issue 16), beside the frozen
    # floor (the reference of the fine-tuning targets) and the frozen English-only baseline
    flickr = {name for w, name in SHIPPED if w == "flickr8k-ml"}
    assert {"floor", "baseline-en", "floor-ft", *(m + "-ft" for m in methods)} <= flickr, flickr
    for name in flickr:
        tuned = read_json(CHECKPOINTS_DIR / "flickr8k-ml" / name / "config.json").get("visual_trainable_blocks", 0)
        assert (tuned > 0) == name.endswith("-ft"), (name, tuned)
    size = sum(f.stat().st_size for f in CHECKPOINTS_DIR.rglob("*") if f.is_file())
    assert size < CHECKPOINT_BUDGET_MB * 2**20, f"checkpoints/ holds {size / 2**20:.1f} MB"


@pytest.mark.parametrize("world,name", SHIPPED, ids=[f"{w}/{n}" for w, n in SHIPPED])
def test_shipped_checkpoint_verifies_loads_and_matches_results(world, name):
    import ccr_core.methods  # noqa: F401  (registers every method)
    from ccr_core.methods.base import build_method

    folder = CHECKPOINTS_DIR / world / name
    meta = verify_checkpoint(folder)  # every file's SHA-256 against the manifest
    method = build_method(meta["method"], meta["method_config"])
    if meta.get("visual_trainable_blocks"):  # the fine-tuned image top is part of the weights
        from ccr_core.backbones.vision import load_visual_backbone
        from ccr_core.training.image_cache import ImageTop

        method.visual_top = ImageTop(load_visual_backbone(meta["train_config"]["visual_backbone"]), meta["visual_trainable_blocks"])
    missing, unexpected = method.load_state_dict({k: v.float() for k, v in load_weights(folder).items()}, strict=False)
    assert not unexpected and not [k for k in missing if not k.startswith("text_top")], (missing, unexpected)
    assert all(v.dtype == torch.float16 for k, v in load_weights(folder).items() if v.is_floating_point())  # the shipping copy
    shipped = read_json(folder / "result.json")
    model_name = name.replace("-noise", "@noise")
    (reported,) = [r for r in json.loads((repo_results_dir() / f"{world}.json").read_text()) if r["model"] == model_name]  # results/protocol-*.json hold the grid, not shipped models
    assert shipped == reported  # the numbers beside the checkpoint are the ones in the results table
    assert shipped["method"] == meta["method"] and shipped["weights"] == "float16"


@pytest.fixture(scope="module")
def demo_german_bench():
    """The demo world's test split with its German captions only, on the shipped feature cache: a workbench whose
    text states take seconds (one language), to re-evaluate shipped models from their weights."""
    from ccr_core.data.bundle import Bundle, load_bundle
    from ccr_core.paths import bundle_dir, workspace_dir
    from ccr_core.training.train import TrainConfig, prepare_workbench

    if not (bundle_dir("demo-world") / "manifest.json").exists():
        pytest.fail("the demo world is not built: `make test` builds it (make demo)", pytrace=False)
    full = load_bundle(bundle_dir("demo-world"))
    german = Bundle(full.root, full.manifest, full.items, [c for c in full.captions if c.split == "test" and c.lang == "de"], {})
    return prepare_workbench(TrainConfig(data=str(full.root)), workspace_dir(), bundle=german, progress=False, splits=("test",))


@pytest.mark.parametrize("name", ["baseline", "uml-noise0.4", "one_to_k"])
def test_a_shipped_model_re_evaluated_from_its_weights_gives_its_metrics(demo_german_bench, name):
    """Not a comparison of two files one call wrote: the checkpoint is loaded and evaluated again, and the German
    group's recalls must be the ones its result.json (and so RESULTS.md) reports."""
    from ccr_core.eval.retrieval import evaluate_model
    from ccr_core.training.inference import load_trained

    folder = CHECKPOINTS_DIR / "demo-world" / name
    again = evaluate_model(load_trained(folder, demo_german_bench, name), demo_german_bench)
    reported = read_json(folder / "result.json")["groups"]["de"]
    assert set(again["groups"]) == {"de"}
    for key in ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "SumR"):
        assert again["groups"]["de"][key] == pytest.approx(reported[key], abs=1e-6), key


def test_results_md_is_what_the_experiment_command_writes():
    assert (REPO_ROOT / "RESULTS.md").read_text(encoding="utf-8") == render_results_md()


def test_a_shipped_model_is_scored_on_the_features_the_dashboard_serves(tmp_path, monkeypatch):
    """ship() scores each shipped copy on the image features the repository ships for its world (float16, what `make
    demo` puts in the workspace), not on the grid's own float32 cache: the two differ by a float16 step, which can flip
    a near tie, so that the dashboard would re-measure another number than the shipped row's."""
    import shutil

    import numpy as np

    from ccr_core.features import convert_to_float16, import_precomputed
    from ccr_core.study import shipped
    from ccr_core.training.workbench import Workbench

    matrix = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32) + 1e-4
    np.save(tmp_path / "m.npy", matrix)
    grid_cache = import_precomputed(tmp_path / "m.npy", ["a", "b", "c", "d"], tmp_path / "grid" / "lite")
    bench = Workbench(None, grid_cache, None, None, grid_cache.meta["backbone"])
    monkeypatch.setattr(shipped, "SHIPPED_FEATURES_DIR", tmp_path / "assets")
    assert shipped.served(bench, "w") is bench  # the world ships no features: the grid's are the served ones
    shutil.copytree(tmp_path / "grid" / "lite", tmp_path / "assets" / "w" / "lite")
    convert_to_float16(tmp_path / "assets" / "w" / "lite")
    served = shipped.served(bench, "w")
    assert served.features.root == tmp_path / "assets" / "w" / "lite" and served.features.features.dtype == np.float16
    assert np.array_equal(served.features.features, matrix.astype(np.float16)) and served.bundle is bench.bundle
    assert bench.features is grid_cache  # the grid's bench is untouched


def test_ship_puts_each_model_in_with_its_row_and_a_failure_keeps_the_shipped_one(tmp_path, monkeypatch):
    """A tiny grid's seed-0 models shipped one by one: each swapped-in model has its results row at once, and a
    failure while staging the next leaves that model's shipped folder and row as they were, with no staging left."""
    from conftest import make_tiny_bundle

    from ccr_core.study import executors, records, shipped
    from ccr_core.study import grid as study_grid
    from ccr_core.study.grid import PROTOCOL, WorldProtocol

    world = "tiny-ship"
    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=30, langs=("en", "de"), with_mt=True)
    monkeypatch.setitem(PROTOCOL, world, WorldProtocol(
        train={"batch_size": 4, "lr": 1e-3, "targets_per_batch": 0, "text_backbone": "tiny-text", "visual_backbone": "tiny-visual"},
        steps=4, noise={"common": (0.0,), "published": (0.0,)}, methods=("floor", "baseline"), seeds=(0,), data=str(bundle)))
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setattr(records, "repo_results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr(shipped, "CHECKPOINTS_DIR", tmp_path / "checkpoints")
    executors.LocalExecutor(threads=1).run(study_grid.grid(world), progress=False)
    old = tmp_path / "checkpoints" / world / "floor"  # a model shipped before, with its row
    old.mkdir(parents=True)
    (old / "marker").write_text("old")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / f"{world}.json").write_text(json.dumps([{"model": "floor", "old": True}, {"model": "other"}]))

    calls = []

    def convert(folder, dtype, real=shipped.convert_weights):
        calls.append(folder.name)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(folder, dtype)

    monkeypatch.setattr(shipped, "convert_weights", convert)
    with pytest.raises(RuntimeError, match="disk full"):
        shipped.ship(world, progress=False)
    first, second = (name.strip(".").removesuffix(".staged") for name in calls)
    rows = {r["model"]: r for r in read_json(tmp_path / "results" / f"{world}.json")}
    assert (tmp_path / "checkpoints" / world / first / "result.json").is_file()
    assert rows[first]["weights"] == "float16" and rows[first]["checkpoint_sha256"]  # its row is in at once
    assert "other" in rows and not list((tmp_path / "checkpoints" / world).glob(".*staged"))
    assert (first, second) == ("baseline", "floor")  # the grid's order: the published model, then the floor
    assert (old / "marker").read_text() == "old" and rows["floor"] == {"model": "floor", "old": True}  # as shipped before
    assert not (old / "result.json").exists()


def test_a_shipped_row_carries_not_converged_from_the_grid_run_it_was_copied_from(tmp_path, monkeypatch):
    from ccr_core.study import records
    from ccr_core.study.shipped import results_markdown

    def record(seed, last, noise_seed=0):
        return {"method": "uml", "setting": "published", "noise_rate": 0.0, "seed": seed, "noise_seed": noise_seed,
                "scored": {"checkpoint": "end of budget", "steps": 40},
                "curve": [{"step": s, records.CONVERGENCE_METRIC: v} for s, v in ((10, 300.0), (20, 380.0), (30, 400.0), (40, last))]}

    (tmp_path / "protocol-w.json").write_text(json.dumps([record(1, 400.0), record(0, 400.0, noise_seed=1), record(0, 420.0)]))
    monkeypatch.setattr(records, "repo_results_dir", lambda: tmp_path)
    row = {"model": "uml", "method": "uml", "setting": "published", "noise_rate": 0.0, "seed": 0, "protocol": "equal-budget",
           "budget": {"steps": 40}, "scored": {"checkpoint": "end of budget", "steps": 40},
           "groups": {"de": {"SumR": 1.0, "n_images": 1, **{f"{d}_R@{k}": 1.0 for d in ("t2i", "i2t") for k in (1, 5, 10)}}}}
    assert records.run_record("w", row)["curve"][-1][records.CONVERGENCE_METRIC] == 420.0  # seed 0, first draw
    assert "| 40 of 40 steps; not converged |" in results_markdown({"w": [row]})  # +5% over its last quarter
    (tmp_path / "protocol-w.json").write_text(json.dumps([record(0, 401.0)]))
    assert "| 40 of 40 steps |" in results_markdown({"w": [row]})
    assert records.run_record("w", {**row, "scored": {"checkpoint": "end of budget", "steps": 30}}) is None  # another budget
    assert "| earlier |" in results_markdown({"w": [{**row, "protocol": None}]})
