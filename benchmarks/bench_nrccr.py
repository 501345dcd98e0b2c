"""NRCCR's roofline on this machine: why its training throughput is where it is.

The FLOPs one training step of the protocol's NRCCR runs takes (counted by ``torch.utils.flop_counter``
on a real batch of the world's training split, Flickr8k-ML by default: matrix products and attention, forward
and backward, the discriminator's step included) against this machine's fp32 matrix-product rate; the
achieved rate over that rate is the roofline fraction (issue 29's target: >= 80 % in the common setting). No exact implementation of the same
losses at the same widths runs a step in less than FLOPs / rate, so captions / (FLOPs / rate) bounds the
throughput (issue 13's target: 3,000 captions/s). ``python -m benchmarks nrccr`` measures it alone;
``python -m benchmarks nrccr:demo-world:1`` on the demo world with one torch thread.
"""
from __future__ import annotations

import json
import subprocess
import sys

import torch

from benchmarks.bench_train import NRCCR_TARGET
from benchmarks.common import Result
from ccr_core.paths import bundle_dir

ROOFLINE_TARGET = 80.0  # issue 29: a common-setting step at >= 80 % of the matrix roofline (achieved / peak rate)


ROOFLINE_CHILD = r"""
import json, os, sys, time, torch
from torch.utils.flop_counter import FlopCounterMode
from ccr_core.study.grid import Run
from ccr_core.study.runner import Workbenches as Benches
from ccr_core.training import train as T
world, setting, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
run = Run(world, setting, "nrccr", 0.0, 0)
cfg, bench = run.train_config(), Benches(progress=False).get(run)
examples = T.training_examples(bench.bundle, "train", cfg.target_langs, cfg.target_sources)
T._set_seed(0)
method = T.build_run_method(cfg, bench).train()
source = T.BatchSource(examples, bench.features, bench.text_states, bench.bundle, None)
batch = source.make_batch(source.epoch_batches(cfg.batch_size, seed=0)[0], seed=0, targets_per_batch=0)
opt = torch.optim.Adam(method.main_parameters(), lr=cfg.lr)
def step():
    opt.zero_grad(set_to_none=True)
    method(batch)["loss"].backward()
    method.discriminator_step(batch)
    opt.step()
step()
with FlopCounterMode(display=False) as counter:
    step()
times, load = [], os.getloadavg()[0]
for _ in range(3):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
from torch.profiler import profile
with profile() as prof:
    step()
self_us = {}
for e in prof.key_averages():
    kind = "matrix" if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm") else "dropout" if e.key in ("aten::bernoulli_", "ccr::dropout_mask") else "other"
    self_us[kind] = self_us.get(kind, 0.0) + e.self_cpu_time_total
a, b = torch.randn(8192, 512), torch.randn(512, 512)
torch.mm(a, b)
rates = []
for _ in range(10):
    t = time.perf_counter(); torch.mm(a, b); rates.append(2 * 8192 * 512 * 512 / (time.perf_counter() - t))
captions = len(batch["item_ids"]) * (1 + len(batch["targets"]))
print(json.dumps({"threads": torch.get_num_threads(), "load": load, "cores": os.cpu_count(), "hidden_dim": method.config.hidden_dim, "flops": counter.get_total_flops(), "step_s": min(times), "peak": max(rates), "captions": captions, "shares": {k: v / sum(self_us.values()) for k, v in self_us.items()},
                  "tokens": {lang: int(batch["text"][lang].mask.sum()) for lang in batch["text"]}}))
"""


def run(world: str = "flickr8k-ml", threads: int | str = 0) -> list[Result]:
    """Counted FLOPs of one NRCCR training step per protocol setting, the rate the step achieves against this
    machine's matrix rate (issue 29: >= 80 %), and the throughput they allow. ``threads``: torch threads of
    the measuring process (0: torch's default). ``python -m benchmarks nrccr:demo-world:1`` passes both."""
    threads = int(threads) or torch.get_num_threads()
    if not (bundle_dir(world) / "manifest.json").exists():
        return [Result(f"{world}: not built", float("nan"), "", note=f"run `ccr data build {world}` first")]
    rows = []
    for setting in ("common", "published"):
        proc = subprocess.run([sys.executable, "-c", ROOFLINE_CHILD, world, setting, str(threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append(Result(f"{world} nrccr [{setting}] roofline: failed", float("nan"), "", note=proc.stderr.strip().splitlines()[-1][:120]))
            continue
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        gflop, peak = out["flops"] / 1e9, out["peak"] / 1e9
        bound = out["captions"] / (gflop / peak)
        where = (f"protocol '{setting}' setting (hidden_dim {out['hidden_dim']}), one step on a real batch of {out['captions']} captions "
                 f"(real tokens {out['tokens']}), {out['threads']} torch thread(s)")
        fraction = gflop / out["step_s"] / peak
        rows += [
            Result(f"{world} nrccr [{setting}] matrix FLOPs per training step", gflop, "GFLOP",
                   note=f"{where}; torch.utils.flop_counter, forward + backward + discriminator step"),
            Result(f"{world} nrccr [{setting}] step time, achieved rate", out["step_s"], "s",
                   note=f"best of 3 steps: {gflop / out['step_s']:.0f} GFLOP/s achieved = {out['captions'] / out['step_s']:.0f} captions/s; "
                        f"self CPU time of a profiled step: matrix products {out['shares'].get('matrix', 0):.0%}, dropout masks "
                        f"(bernoulli_ or heads.dropout_mask) {out['shares'].get('dropout', 0):.0%}, the rest {out['shares'].get('other', 0):.0%}; "
                        f"{out['threads']} torch thread(s), 1-minute load average {out['load']:.1f} on {out['cores']} cores as the steps ran "
                        f"(other processes share the machine)"),
            Result(f"{world} nrccr [{setting}] roofline fraction: achieved rate / matrix rate", round(100 * fraction, 1), "%",
                   *((f">= {ROOFLINE_TARGET:.0f} %", 100 * fraction >= ROOFLINE_TARGET) if setting == "common" else ("", None)),
                   note=f"{gflop / out['step_s']:.0f} of {peak:.0f} GFLOP/s (the best fp32 8192x512 @ 512x512 product of 10, "
                        f"{out['threads']} thread(s)); issue 29's target is on the common setting"),
            Result(f"{world} nrccr [{setting}] throughput bound at this machine's matrix rate", bound, "captions/s",
                   f">= {NRCCR_TARGET:.0f} captions/s", bound >= NRCCR_TARGET,
                   note=f"captions / (FLOPs / {peak:.0f} GFLOP/s, the best fp32 8192x512 @ 512x512 product of 10): no exact implementation of these losses runs faster here"),
        ]
    return rows
