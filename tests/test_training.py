"""Training loop, checkpoints, resume, distributed equivalence and evaluation on a tiny world."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ccr_core.data.bundle import load_bundle
from ccr_core.eval.retrieval import evaluate_model
from ccr_core.training.inference import load_trained
from ccr_core.training.checkpoint import CheckpointError, load_weights, verify_checkpoint
from ccr_core.training.data import BatchSource, training_examples
from ccr_core.training.train import TrainConfig, prepare_workbench, train

from conftest import make_tiny_bundle

TINY = dict(text_backbone="tiny-text", visual_backbone="tiny-visual", batch_size=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    bundle = load_bundle(make_tiny_bundle(root / "bundle", n_images=60, langs=("en", "de", "fr"), with_mt=True))
    cfg = TrainConfig(method="baseline", data=str(bundle.root), **TINY)
    bench = prepare_workbench(cfg, root / "ws", bundle, progress=False)
    return root, bundle, bench


def test_examples_align_translations_and_back_translations(world):
    _, bundle, bench = world
    examples = training_examples(bundle)
    assert len(examples) == 20 and all(ex.languages == ("de", "fr") for ex in examples)
    ex = examples[0]
    assert ex.targets["de"] == [f"{ex.item_id}#de-mt#0"]  # the MT of this very English caption
    assert ex.backs[f"{ex.item_id}#de-mt#0"] == f"{ex.item_id}#de-mt#0-bt"
    source = BatchSource(examples, bench.features, bench.text_states, bundle)
    batches = source.epoch_batches(8, seed=0)
    assert len(batches) == 2 and all(len(b) == 8 for b in batches)
    assert source.epoch_batches(8, seed=0) == batches != source.epoch_batches(8, seed=1)
    batch = source.make_batch(batches[0], seed=0)
    assert batch["targets"] == ["de", "fr"] and set(batch["back"]) == {"de", "fr"}
    assert batch["visual"].shape == (8, bench.features.dim)
    assert batch["text"]["de"].states.shape[0] == 8 and batch["text"]["de"].mask.dtype == torch.bool
    drawn = {tuple(source.make_batch(batches[0], seed=s, targets_per_batch=1)["targets"]) for s in range(20)}
    assert drawn == {("de",), ("fr",)}  # one target language per batch, each drawn over time
    one = source.make_batch(batches[0], seed=0, targets_per_batch=1)
    assert set(one["text"]) == {"en", *one["targets"]} and set(one["back"]) == set(one["targets"])


def test_train_checkpoint_eval_roundtrip(world, tmp_path):
    root, bundle, bench = world
    cfg = TrainConfig(method="baseline", data=str(bundle.root), epochs=3, **TINY)
    steps = []
    summary = train(cfg, tmp_path / "run", root / "ws", progress=False, bench=bench, on_step=steps.append)
    assert summary["epochs"] == 3 and len(steps) == summary["steps"] == 6
    assert all(np.isfinite(s["loss"]) for s in steps)
    meta = verify_checkpoint(tmp_path / "run" / "best")
    assert meta["method"] == "baseline" and meta["visual_backbone"] == bench.visual_identity
    assert meta["method_config"]["video"] is False  # image-only world: no temporal encoder stored
    # Only trainable parts are stored: no backbone weights in the checkpoint.
    assert not any(k.startswith(("model.", "net.")) for k in load_weights(tmp_path / "run" / "best"))
    model = load_trained(tmp_path / "run", bench)
    result = evaluate_model(model, bench)
    assert set(result["groups"]) == {"en", "de", "fr"}
    assert result["groups"]["de"]["n_images"] == 20 and 0 <= result["groups"]["de"]["SumR"] <= 600
    assert "mrv_i2t" in result["mrv"]
    # one inference path: free text in the text-state cache and typed text both encode like the captions
    from ccr_core.training.config import BackboneConfig

    assert model.bench is bench and model.backbones == BackboneConfig.of_run(cfg)
    caps = [c for c in bundle.captions if c.split == "test" and c.lang == "de"][:3]
    by_caption = model.encode_captions(caps, "de")  # (3, E)
    cached = model.encode_texts([c.text for c in caps], "de")
    torch.testing.assert_close(cached, by_caption)
    typed = [c.text + " (typed)" for c in caps]  # not in the cache: through the frozen text backbone
    assert not any(t in bench.text_states for t in typed)
    batch = model.text_batch(typed)
    torch.testing.assert_close(model.encode_texts(typed, "de", batch), model.encode_texts(typed, "de"))
    assert model.encode_texts(typed, "de").shape == by_caption.shape


def test_resume_continues_from_last(world, tmp_path):
    root, bundle, bench = world
    full = train(TrainConfig(method="baseline", data=str(bundle.root), epochs=4, **TINY), tmp_path / "full", root / "ws", progress=False, bench=bench)
    part = train(TrainConfig(method="baseline", data=str(bundle.root), epochs=2, **TINY), tmp_path / "part", root / "ws", progress=False, bench=bench)
    resumed = train(TrainConfig(method="baseline", data=str(bundle.root), epochs=4, **TINY), tmp_path / "part", root / "ws", resume=True, progress=False, bench=bench)
    assert resumed["steps"] == full["steps"]
    # the reported training time is the whole run's, the part before the resume included
    seconds = [h["seconds"] for h in resumed["history"]]
    assert seconds == sorted(seconds) and seconds[1] == part["history"][1]["seconds"]
    assert resumed["train_seconds"] > part["train_seconds"] > 0
    a, b = load_weights(tmp_path / "full" / "last"), load_weights(tmp_path / "part" / "last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_tampered_or_half_written_checkpoint_is_refused(world, tmp_path):
    root, bundle, bench = world
    train(TrainConfig(method="baseline", data=str(bundle.root), epochs=1, **TINY), tmp_path / "run", root / "ws", progress=False, bench=bench)
    best = tmp_path / "run" / "best"
    weights = best / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load_trained(best, bench)
    (best / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_trained(best, bench)


def test_checkpoint_for_other_backbone_is_refused(world, tmp_path):
    root, bundle, bench = world
    train(TrainConfig(method="baseline", data=str(bundle.root), epochs=1, **TINY), tmp_path / "run", root / "ws", progress=False, bench=bench)
    other = type(bench)(bench.bundle, bench.features, bench.text_encoder, bench.text_states, {**bench.visual_identity, "weights_sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="visual backbone"):
        load_trained(tmp_path / "run", other)


DDP_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, {tests!r})
from ccr_core.training.train import TrainConfig, train
cfg = TrainConfig(method="baseline", data={data!r}, epochs=2, accumulate={accumulate}, text_backbone="tiny-text",
                  visual_backbone="tiny-visual", batch_size=4, threads=1, method_config={{"dropout": 0.0}})
summary = train(cfg, {run!r}, {ws!r}, progress=False)
"""


@pytest.mark.slow
def test_two_process_ddp_matches_single_process_accumulation(world, tmp_path):
    """torchrun with 2 CPU processes (gloo) == one process accumulating the same 2 micro-batches
    (dropout off: the two processes draw the same dropout masks, one process draws two different)."""
    root, bundle, _ = world
    tests = str(Path(__file__).parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, accumulate, launcher in (("ddp", 1, [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]),
                                       ("single", 2, [sys.executable])):
        script = tmp_path / f"{name}.py"
        script.write_text(DDP_SCRIPT.format(tests=tests, data=str(bundle.root), accumulate=accumulate, run=str(tmp_path / name), ws=str(root / "ws")))
        proc = subprocess.run(launcher + [str(script)], env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ddp, single = load_weights(tmp_path / "ddp" / "last"), load_weights(tmp_path / "single" / "last")
    assert ddp.keys() == single.keys()
    # Trained parameters must agree. BatchNorm running statistics are buffers, updated per forward
    # pass (twice per step when accumulating, once per rank under DDP), so they legitimately differ.
    stats = ("running_mean", "running_var", "num_batches_tracked")
    for key in [k for k in ddp if not k.endswith(stats)]:
        torch.testing.assert_close(ddp[key], single[key], atol=1e-5, rtol=1e-4)
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["steps"] == json.loads((tmp_path / "single" / "summary.json").read_text())["steps"]


def test_uml_noise_audit_on_injected_noise(world, tmp_path, monkeypatch):
    from ccr_core.eval.detectors import training_pair_uncertainty
    from ccr_core.training.workbench import with_noise

    root, bundle, bench = world
    cfg = TrainConfig(method="uml", data=str(bundle.root), epochs=2, noise=0.4, **TINY)
    noisy_bench = with_noise(bench, cfg.noise, cfg.noise_seed)
    assert sum(v == "noisy-correspondence" for v in noisy_bench.bundle.noise.values()) > 0
    train(cfg, tmp_path / "uml", root / "ws", progress=False, bench=noisy_bench)
    model = load_trained(tmp_path / "uml", bench)
    audit = training_pair_uncertainty(model, noisy_bench)
    assert audit is not None and 0.0 <= audit["auroc"] <= 1.0
    assert len(audit["scores"]) == len(audit["labels"]) == 40  # 20 pairs x 2 target languages
    assert ((audit["scores"] > 0) & (audit["scores"] <= 1)).all()
    assert audit["labels"].sum() == sum(noisy_bench.bundle.noise[c] == "noisy-correspondence" for c in audit["caption_ids"])
    # every detector is reported beside the trivial ones, on the same labelled pairs
    assert set(audit["detectors"]) == {"cosine", "pair_loss", "uncertainty", "mismatch"}
    assert audit["detectors"]["uncertainty"]["auroc"] == audit["auroc"] and audit["detectors"]["mismatch"]["auroc"] == audit["auroc_mismatch"]
    assert all(len(audit["detector_scores"][name]) == 40 for name in audit["detectors"])
    # and `ccr eval` prints them: the trivial detectors first
    from ccr_core.cli import main

    monkeypatch.setenv("CCR_WORKSPACE", str(root / "ws"))
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", str(tmp_path / "uml"), "--data", str(bundle.root), "--quiet", "--out", str(tmp_path / "eval")]) == 0
    text = out.getvalue()
    assert "| 1 − cosine (trivial) | per-pair loss (trivial) | UML u = B/S | UML DECL score |" in text
    assert f"{audit['detectors']['cosine']['auroc']:.3f}" in text and "1 − cosine (trivial)" in (tmp_path / "eval" / "results.md").read_text()


def test_float16_shipping_copy_loads_and_matches(world, tmp_path):
    import shutil

    from ccr_core.training.checkpoint import OPTIMIZER, convert_weights, drop_optimizer_state, verify_checkpoint

    root, bundle, bench = world
    train(TrainConfig(method="nrccr", data=str(bundle.root), epochs=1, **TINY), tmp_path / "run", root / "ws", progress=False, bench=bench)
    shutil.copytree(tmp_path / "run" / "last", tmp_path / "ship")  # what the grid ships: last/, with the optimisers' state
    assert len(list((tmp_path / "ship").glob(f"*.{OPTIMIZER}"))) == 2  # Adam and NRCCR's discriminator Adam
    drop_optimizer_state(tmp_path / "ship")
    assert sorted(p.name for p in (tmp_path / "ship").iterdir()) == ["config.json", "manifest.json", "model.safetensors"]
    verify_checkpoint(tmp_path / "ship")
    convert_weights(tmp_path / "ship")
    assert all(v.dtype in (torch.float16, torch.int64) for v in load_weights(tmp_path / "ship").values())
    full, half = load_trained(tmp_path / "run", bench), load_trained(tmp_path / "ship", bench)
    items = bundle.items_in("test")
    a, b = full.encode_items(items), half.encode_items(items)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.999


def test_device_choice_is_checked_before_training(world, tmp_path, monkeypatch):
    from ccr_core.devices import resolve_device

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    for bad, words in (("tpu", "device='tpu'"), ("mps", "only cpu and cuda"), ("cuda:99", "cuda:99")):
        if bad.startswith("cuda") and not torch.cuda.is_available():
            words = "no CUDA"
        with pytest.raises(ValueError, match=words):
            resolve_device(bad)
    root, bundle, bench = world
    if not torch.cuda.is_available():  # a CUDA request on a CPU-only machine fails before anything is written
        with pytest.raises(ValueError, match="no CUDA"):
            train(TrainConfig(method="baseline", data=str(bundle.root), epochs=1, device="cuda", **TINY), tmp_path / "run", root / "ws", progress=False, bench=bench)
        assert not (tmp_path / "run").exists()


def test_batch_to_moves_every_tensor_of_a_method_batch(world):
    from ccr_core.methods.base import TextBatch
    from ccr_core.devices import batch_to

    _, bundle, bench = world
    source = BatchSource(training_examples(bundle), bench.features, bench.text_states, bundle)
    batch = source.make_batch(source.epoch_batches(8, seed=0)[0], seed=0)
    moved = batch_to(batch, torch.device("meta"))  # the meta device stands in for a GPU: nothing may stay behind

    def tensors(x):
        if isinstance(x, torch.Tensor):
            yield x
        elif isinstance(x, TextBatch):
            yield from (x.states, x.mask)
        elif isinstance(x, dict):
            for v in x.values():
                yield from tensors(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                yield from tensors(v)

    before, after = list(tensors(batch)), list(tensors(moved))
    assert len(after) == len(before) > 10 and all(t.device.type == "meta" for t in after)
    assert all(t.device.type == "cpu" for t in before)  # the original batch is untouched
    assert moved["item_ids"] == batch["item_ids"] and moved["targets"] == batch["targets"]
    for a, b in zip(before, after):
        assert a.shape == b.shape and a.dtype == b.dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_training_on_gpu_matches_cpu(world, tmp_path):
    root, bundle, bench = world
    runs = {}
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # strict float32 on both devices
    for device in ("cpu", "cuda"):
        # no dropout: the CPU and CUDA generators draw different masks from the same seed
        cfg = TrainConfig(method="baseline", data=str(bundle.root), epochs=2, device=device,
                          method_config={"dropout": 0.0, "attention_dropout": 0.0}, **TINY)
        runs[device] = train(cfg, tmp_path / device, root / "ws", progress=False, bench=bench)
    a, b = load_weights(tmp_path / "cpu" / "last"), load_weights(tmp_path / "cuda" / "last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-3, rtol=1e-2)
    on_gpu = evaluate_model(load_trained(tmp_path / "cuda", bench), bench)["groups"]
    on_cpu = evaluate_model(load_trained(tmp_path / "cpu", bench), bench)["groups"]
    for group in on_cpu:  # weights within 1e-3: the rankings, and so the recalls, agree up to a tie or two
        assert on_gpu[group]["SumR"] == pytest.approx(on_cpu[group]["SumR"], abs=2.0), group
    model = load_trained(tmp_path / "cuda", bench)
    model.method.to("cuda")  # a model on the GPU encodes typed text there and hands back CPU tensors
    typed = model.encode_texts(["ein roter Kreis (typed)"], "de")
    assert typed.device.type == "cpu" and typed.shape[0] == 1


@pytest.mark.parametrize("method", ["baseline", "nrccr"])
def test_learning_curve_points_leave_training_unchanged(world, tmp_path, method):
    """A run with curve points every step trains the same weights as one without (the validation pass restores the
    random states and the training mode: NRCCR's dropout would show a change), and each point is the validation SumR
    the trained model gives at that step."""
    root, bundle, bench = world
    base = dict(method=method, data=str(bundle.root), epochs=2, max_steps=3, **TINY)
    plain = train(TrainConfig(**base), tmp_path / "plain", root / "ws", progress=False, bench=bench)
    curved = train(TrainConfig(**base, eval_every=1), tmp_path / "curved", root / "ws", progress=False, bench=bench)
    assert plain["curve"] == [] and [p["step"] for p in curved["curve"]] == [1, 2, 3]
    a, b = load_weights(tmp_path / "plain" / "last"), load_weights(tmp_path / "curved" / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last = curved["curve"][-1]
    assert set(last["sumr"]) == {"en", "de", "fr"} and 0 <= last["en_sumr"] <= 600
    assert last["target_sumr"] == pytest.approx((last["sumr"]["de"] + last["sumr"]["fr"]) / 2)
    # the end point is the model in last/, re-scored independently on the validation split
    from ccr_core.training.curve import curve_point
    model = load_trained(tmp_path / "curved" / "last", bench, "curved")
    assert curve_point(model.method, bench, 3)["sumr"] == pytest.approx(last["sumr"])
