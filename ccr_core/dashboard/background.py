"""Work a world does after its page is up (encoding the test captions, preparing the training pairs),
each with a live status: the message is computed when it is read, from how far the work is, and is
empty once the work is done, so no page ever shows a status older than the work it describes."""
from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from dataclasses import dataclass, field

import torch

from ccr_core.features import TEST_SPLIT_SUFFIX
from ccr_core.training.text_cache import build_text_cache, encoding_workers
from ccr_core.training.train import prepare_workbench

# The background passes keep to one torch thread, so the other core answers searches while they run
# (a second thread that must wait for a busy core made query encoding 10-60x slower on 2 cores).
BACKGROUND_THREADS = 1
# ... but their text states, the bulk of the work, are encoded by this many single-threaded workers (one batch each at a
# time): they use both cores, and a query thread still gets its share (no pool spin-waits for it); the throughput and a
# query's latency during the work, with one and with this many workers: `python -m benchmarks text`.
BACKGROUND_ENCODERS = max(1, min(2, os.cpu_count() or 1))


@contextlib.contextmanager
def torch_threads(n: int):
    """``torch.set_num_threads(n)`` for the block, then back (OpenMP keeps the count per OS thread)."""
    before = torch.get_num_threads()
    if n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0 and n != before:
            torch.set_num_threads(before)


@dataclass
class BackgroundWork:
    """One kind of background work: what is pending (backbone configuration -> its input), how far it
    is, whether it failed, and an event set when it is over (done or failed)."""

    what: str  # "Encoding the test captions", as the status line starts
    waiting_tabs: str  # what fills in when it is done ("image → text, Consistency and the maps")
    pending: dict = field(default_factory=dict)
    total: int = 0
    done: int = 0
    step: str = ""  # the current sub-step, when it is not a count of items
    started: float | None = None
    error: str = ""
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        """Pending and not failed: tabs that need it wait (and poll)."""
        return bool(self.pending) and not self.error

    def begin(self, total: int = 0, step: str = "") -> None:
        self.started = self.started or time.time()
        self.total, self.done, self.step = total, 0, step

    def progress(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def fail(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"

    def settle(self) -> None:
        """Set ``ready`` when nothing is pending any more or the work failed."""
        if not self.pending or self.error:
            self.ready.set()

    def message(self) -> str:
        """The status line now: empty when the work is over, the error when it failed."""
        if self.error:
            return f"{self.what} failed: {self.error}"
        if not self.pending:
            return ""
        parts = [f"{self.what} in the background"]
        if self.step:
            parts.append(f": {self.step}")
        elif self.total:
            parts.append(f": {self.done:,} of {self.total:,} done")
        if self.started is not None:
            parts.append(f" ({time.time() - self.started:.0f} s so far)")
        return "".join(parts) + f". Search works now; {self.waiting_tabs} fill in when this is done."


def caption_work() -> BackgroundWork:
    return BackgroundWork("Encoding the test captions", "image → text, Consistency and the embedding maps")


def training_work() -> BackgroundWork:
    return BackgroundWork("Preparing the training pairs", "the Audit and Experiment tabs")


def finish_caption_caches(world, progress: bool = False) -> None:
    """Encode the test captions' text states that ``load_world(..., defer_captions=True)`` left pending,
    swap the complete cache into every workbench and embed the captions with every model. A no-op
    when nothing is pending."""
    work = world.caption_work
    try:
        for config, texts in list(work.pending.items()):
            bench = world.benches[config]
            work.begin(len(texts))
            with torch_threads(BACKGROUND_THREADS), encoding_workers(BACKGROUND_ENCODERS):
                full = build_text_cache(bench.text_encoder, texts, bench.text_states.root, config.text_trainable_layers, config.text_prefix,
                                        progress=progress, on_progress=lambda done, total: work.progress(done, total))
            old = bench.text_states
            with world.lock:  # the clean workbench and the noisy ones made from it share its caches
                for other in world.workbenches():
                    if other.text_states is old:
                        other.text_states = full
            for model in world.model_list(include_private=True):
                if model.backbones == config and model.captions is None:
                    work.step = f"embedding the test captions with {model.name}"
                    model.captions = world.embeddings.caption_embeddings(model.trained, bench, model.checkpoint_hash, model.image_emb)
            with world.lock:
                del work.pending[config]
            work.step = ""
    except Exception as exc:  # noqa: BLE001 -- reported in the tabs that need captions; search keeps working
        work.fail(exc)
        raise
    finally:
        work.settle()


def finish_training_caches(world, progress: bool = False) -> None:
    """Build what the Audit and Experiment tabs need -- features of every image and text
    states of the training captions -- and swap them into every workbench. A no-op when nothing is pending."""
    work = world.training_work
    try:
        for config, cfg in list(work.pending.items()):
            work.begin(step=f"features of all {len(world.bundle.items):,} images and text states of the training captions")
            old = world.benches[config]
            with torch_threads(BACKGROUND_THREADS), encoding_workers(BACKGROUND_ENCODERS):
                full = prepare_workbench(cfg, world.workspace, world.bundle, progress=progress, encoder=old.text_encoder,
                                         backbone=getattr(old, "visual_backbone", None))
            interim = old.features.root if old.features.root.name.endswith(TEST_SPLIT_SUFFIX) else None
            with world.lock:
                # The clean workbench and the noisy ones made from it (noisy_bench) share its caches.
                shared = (old.features, old.text_states)
                for bench in world.workbenches():
                    if bench.features is shared[0] or bench.text_states is shared[1]:
                        bench.features, bench.text_states = full.features, full.text_states
                    bench.drop_test_split_maps()  # the fine-tuned models' gallery maps (already embedded)
                del work.pending[config]
            if interim is not None:  # the test split's own feature cache, now covered by the full one
                shutil.rmtree(interim, ignore_errors=True)
        work.step = ""
    except Exception as exc:  # noqa: BLE001 -- reported in the tabs that need it; search keeps working
        work.fail(exc)
        raise
    finally:
        work.settle()
