"""The command line under torchrun on CPU (gloo): two ranks extract features into one cache (the
cache's file lock lets one extract while the other waits) and train with DistributedDataParallel on
a tiny world. What docs/scaling.md tells users to run, with the tiny backbones."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_bundle

dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo needed")

REPO = Path(__file__).resolve().parent.parent


def torchrun(args: list[str], workspace: Path, cwd: Path) -> subprocess.CompletedProcess:
    # --standalone: a free rendezvous port on localhost, so parallel test runs do not collide on 29500
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ccr_core.cli", *args]
    env = {**os.environ, "CCR_WORKSPACE": str(workspace), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_features_and_training_under_torchrun(tmp_path):
    from ccr_core.features import load_features
    from ccr_core.io import read_json
    from ccr_core.training.checkpoint import verify_checkpoint

    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=60, langs=("en", "de"), with_mt=True)
    workspace = tmp_path / "workspace"

    # both ranks ask for the same cache: one extracts, the other waits for the lock and reads it
    proc = torchrun(["features", "--data", str(bundle), "--backbone", "tiny-visual"], workspace, tmp_path)
    assert proc.stdout.count('"items": 60') == 1, proc.stdout  # only rank 0 prints the description
    assert proc.stderr.count("| 0/60 [") == 1, proc.stderr  # one progress bar: the waiting rank finds the cache done
    (cache_dir,) = [p for p in (workspace / "features" / "tiny").iterdir() if p.is_dir()]
    cache = load_features(cache_dir)
    assert cache.features.shape == (60, cache.dim) and not list(cache_dir.glob("*.partial"))

    run = tmp_path / "run"
    proc = torchrun(["train", "--method", "baseline", "--data", str(bundle), "--out", str(run), "--quiet",
                     "text_backbone=tiny-text", "visual_backbone=tiny-visual", "batch_size=4", "epochs=2"], workspace, tmp_path)
    assert proc.stdout.count("best validation") == 1, proc.stdout  # one summary line, rank 0's
    summary = read_json(run / "summary.json")
    assert summary["epochs"] == 2 and summary["steps"] >= 2 and len(summary["history"]) == 2
    for folder in (run / "best", run / "last"):
        meta = verify_checkpoint(folder)
        assert meta["train_config"]["text_backbone"] == "tiny-text"
    assert read_json(run / "train_config.json")["batch_size"] == 4
