"""Kill -9 during feature extraction, training and bundle building, then rerun: no half-written
artefact is ever loaded, and the rerun resumes or restarts cleanly. Two processes filling the same
cache at once do not corrupt it."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ccr_core.backbones.vision import TinyVisual
from ccr_core.data.bundle import BundleError, load_bundle
from ccr_core.features import FeatureCacheError, extract_features, load_features
from ccr_core.training.checkpoint import CheckpointError, verify_checkpoint

from conftest import make_tiny_bundle

TESTS = str(Path(__file__).parent)
EXTRACT = r"""
import sys, time
sys.path.insert(0, {tests!r})
import ccr_core.features as f
from ccr_core.backbones.vision import TinyVisual
from ccr_core.data.bundle import load_bundle
real = f._encode_paths
def slow(bb, paths):
    time.sleep({delay})
    return real(bb, paths)
f._encode_paths = slow
f.extract_features(load_bundle({bundle!r}), TinyVisual(), {out!r}, batch_size=4, progress=False)
print("finished")
"""


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _extract_script(tmp_path, bundle, out, delay):
    script = tmp_path / f"extract_{delay}.py"
    script.write_text(EXTRACT.format(tests=TESTS, bundle=str(bundle), out=str(out), delay=delay))
    return script


def test_kill_during_feature_extraction_then_resume(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", n_images=60)
    out = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(_extract_script(tmp_path, bundle, out, 0.05))])
    assert _wait_for(lambda: (out / "progress.json").exists())
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(FeatureCacheError, match="interrupted"):
        load_features(out)  # the half-written cache is never loaded
    cache = extract_features(load_bundle(bundle), TinyVisual(), out, batch_size=4, progress=False)
    reference = extract_features(load_bundle(bundle), TinyVisual(), tmp_path / "ref", progress=False)
    np.testing.assert_allclose(np.asarray(cache.features), np.asarray(reference.features), atol=1e-6)


def test_two_processes_filling_the_same_cache(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", n_images=30)
    out = tmp_path / "cache"
    script = _extract_script(tmp_path, bundle, out, 0.01)
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and all("finished" in o for o in outputs)
    cache = load_features(out)  # hashes verified: nothing was written over
    reference = extract_features(load_bundle(bundle), TinyVisual(), tmp_path / "ref", progress=False)
    np.testing.assert_allclose(np.asarray(cache.features), np.asarray(reference.features), atol=1e-6)


def test_kill_during_training_then_resume(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", n_images=90, langs=("en", "de"), with_mt=True)
    run = tmp_path / "run"
    env = {**os.environ, "CCR_WORKSPACE": str(tmp_path / "ws"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ccr_core.cli", "train", "--method", "baseline", "--data", str(bundle), "--out", str(run), "--quiet",
           "text_backbone=tiny-text", "visual_backbone=tiny-visual", "batch_size=4", "epochs=40"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: (run / "last" / "manifest.json").exists(), timeout=120), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Whatever the kill interrupted, a checkpoint folder either verifies or is refused as incomplete.
    for folder in (run / "last", run / "best"):
        try:
            verify_checkpoint(folder)
        except CheckpointError as exc:
            assert "not a complete checkpoint" in str(exc)
    done = subprocess.run(cmd[:-1] + ["epochs=3", "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert verify_checkpoint(run / "best")["method"] == "baseline"


BUILD = r"""
from ccr_core.data.demo_world.build import build_demo_world
build_demo_world({out!r}, seed=0, n_train=400, n_val=20, n_test=40, n_video=(10, 2, 2), progress=False)
"""


def test_kill_during_bundle_build_then_rebuild(tmp_path):
    out = tmp_path / "world"
    script = tmp_path / "build.py"
    script.write_text(BUILD.format(out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)])
    assert _wait_for(lambda: out.exists() and any(out.rglob("*.png")), timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(BundleError):
        load_bundle(out)  # no manifest, or hashes that do not match: refused
    subprocess.run([sys.executable, str(script)], check=True, timeout=300)
    bundle = load_bundle(out)
    assert len(bundle.items_in("train")) == 410
