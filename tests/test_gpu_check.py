"""benchmarks/gpu_check.sh end to end in its small mode on this machine: without a GPU it skips the GPU
parts with a clear message, still trains the whole-backbone CPU run, and writes its report; the loss
comparison it applies on a GPU machine tells agreeing runs from disagreeing ones."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import torch

from benchmarks.gpu_check import compare

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_end_to_end_in_small_mode(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_STEPS": "2", "GPU_CHECK_IMAGES": "12", "GPU_CHECK_BATCH": "4", "GPU_CHECK_TEXT": "tiny-text",
           "GPU_CHECK_WHEELS": str(tmp_path / "no-wheels"), "PYTHON": str(Path(os.sys.executable))}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + (out / "train.log").read_text()[-2000:]
    summary = (out / "summary.txt").read_text()
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["trainable_image_blocks"] == 16 and report["trainable_layers"] == 2  # every layer of tiny-text
    cpu = report["runs"][0]
    assert cpu["device"] == "cpu" and cpu["steps"] == 2 and len(cpu["losses"]) == 2 and all(math.isfinite(x) for x in cpu["losses"])
    assert cpu["seconds_per_step"] > 0 and cpu["captions_per_s"] > 0
    if torch.cuda.is_available():
        assert "PASS: test_training_on_gpu_matches_cpu" in summary and report["comparison"]["agree"]
    else:
        assert "SKIP: test_training_on_gpu_matches_cpu needs a CUDA GPU" in summary
        assert "CPU only; GPU half skipped" in summary and "GPU half skipped" in (out / "gpu_check.md").read_text()
        assert len(report["runs"]) == 1
    assert "| cpu | 2 |" in (out / "gpu_check.md").read_text()
    assert not (out / "scratch").exists()  # its caches and checkpoints are removed


def test_loss_comparison_tells_agreement_from_disagreement():
    same = compare([4.0, 3.5, 3.0], [4.0, 3.5 * (1 + 1e-4), 3.0])
    assert same["agree"] and same["steps_compared"] == 3 and same["max_relative_difference"] < 2e-4
    assert not compare([4.0, 3.5, 3.0], [4.0, 3.6, 3.0])["agree"]  # 3% apart at one step
    assert not compare([4.0, 3.5, 3.0], [4.0, 3.5])["agree"]  # a run that stopped early
