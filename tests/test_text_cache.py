"""Text-state cache: exact split of the backbone, incremental growth, identity and tamper checks."""
import numpy as np
import pytest
import torch

from ccr_core.backbones.text import TinyTextEncoder
from ccr_core.training.text_cache import TextCacheError, TextTop, build_text_cache, frozen_states, load_text_cache

TEXTS = ["a red circle", "ein roter Kreis links neben einem Stern", "红色的圆", "x"]


def test_frozen_part_plus_trainable_top_equals_full_backbone():
    encoder = TinyTextEncoder()
    full, mask = frozen_states(encoder, TEXTS, 0, "query: ")
    lower, lower_mask = frozen_states(encoder, TEXTS, 1, "query: ")
    top = TextTop(encoder, 1).eval()
    assert top.layers[0].attention.self.query.weight.requires_grad
    assert torch.equal(mask, lower_mask)
    torch.testing.assert_close(top(lower, lower_mask)[mask], full[mask], atol=1e-5, rtol=1e-5)


def test_cache_grows_incrementally_and_matches_a_fresh_build(tmp_path):
    encoder = TinyTextEncoder()
    first = build_text_cache(encoder, TEXTS[:2], tmp_path / "c", progress=False)
    assert len(first.meta["texts"]) == 2
    grown = build_text_cache(encoder, TEXTS[1:], tmp_path / "c", progress=False)
    fresh = build_text_cache(encoder, TEXTS, tmp_path / "fresh", progress=False)
    assert sorted(grown.meta["texts"]) == sorted(TEXTS)
    for text in TEXTS:
        a, b = grown.batch([text]), fresh.batch([text])
        assert torch.equal(a.mask, b.mask)
        np.testing.assert_allclose(a.states, b.states, atol=1e-3)  # float16 storage
    batch = grown.batch(TEXTS)
    assert batch.states.shape[0] == 4 and batch.mask.sum(1).tolist() == [int(fresh.batch([t]).mask.sum()) for t in TEXTS]
    with pytest.raises(TextCacheError, match="not in the cache"):
        grown.batch(["never seen"])


class Killed(Exception):
    """Stands for the process being killed part-way."""


def test_a_build_stopped_part_way_keeps_what_it_flushed_and_resumes_with_the_rest(tmp_path, monkeypatch):
    """Every FLUSH_SECONDS a long build appends what it has; a build killed after a flush encodes only the rest."""
    import ccr_core.training.text_cache as tc
    texts = [f"caption number {i} " + "word " * (i % 5) for i in range(10)]
    encoder = TinyTextEncoder()
    monkeypatch.setattr(tc, "FLUSH_SECONDS", -1.0)  # flush after every batch
    calls = []
    real = tc.frozen_states

    def dies_on_third_batch(enc, batch, *args):
        calls.append(list(batch))
        if len(calls) == 3:
            raise Killed
        return real(enc, batch, *args)

    monkeypatch.setattr(tc, "frozen_states", dies_on_third_batch)
    with pytest.raises(Killed):
        build_text_cache(encoder, texts, tmp_path / "c", batch_size=3, progress=False)
    kept = load_text_cache(tmp_path / "c")
    assert sorted(kept.meta["texts"]) == sorted(calls[0] + calls[1])  # two batches flushed, the third lost
    calls.clear()
    resumed = build_text_cache(encoder, texts, tmp_path / "c", batch_size=3, progress=False)
    assert sorted(t for batch in calls for t in batch) == sorted(set(texts) - set(kept.meta["texts"]))  # only the rest
    monkeypatch.setattr(tc, "frozen_states", real)
    fresh = build_text_cache(TinyTextEncoder(), texts, tmp_path / "fresh", progress=False)
    for text in texts:
        np.testing.assert_allclose(resumed.batch([text]).states, fresh.batch([text]).states, atol=1e-3)


def test_a_long_build_says_how_long_before_it_goes_on(tmp_path, monkeypatch):
    import ccr_core.training.text_cache as tc
    said = []
    monkeypatch.setattr(tc, "ANNOUNCE_SECONDS", 0.0)  # every build counts as long
    build_text_cache(TinyTextEncoder(), TEXTS, tmp_path / "c", batch_size=1, progress=False, announce=said.append)
    assert len(said) == 1 and "encoding 4 captions" in said[0] and "min" in said[0] and "ccr features" in said[0]
    monkeypatch.setattr(tc, "ANNOUNCE_SECONDS", 1e9)
    said.clear()
    build_text_cache(TinyTextEncoder(), TEXTS + ["new"], tmp_path / "c", batch_size=1, progress=False, announce=said.append)
    assert said == []  # a short build says nothing


def test_cache_refuses_other_backbone_and_tampering(tmp_path):
    cache = build_text_cache(TinyTextEncoder(seed=0), TEXTS, tmp_path / "c", progress=False)
    with pytest.raises(TextCacheError, match="not for the requested"):
        build_text_cache(TinyTextEncoder(seed=1), TEXTS, tmp_path / "c", progress=False)
    path = tmp_path / "c" / "states.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(TextCacheError, match="SHA-256"):
        load_text_cache(tmp_path / "c", cache.meta["identity"])


def test_a_checked_file_is_hashed_again_only_after_it_changed(tmp_path, monkeypatch):
    """matches_sha256 (the text-state cache's check at every dashboard start): the full hash the first
    time, a remembered (size, mtime) after that, and the full hash again once the file was rewritten."""
    import hashlib
    import os

    from ccr_core import io

    path = tmp_path / "states.npy"
    path.write_bytes(b"x" * 4096)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    calls = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    assert io.matches_sha256(path, digest) and len(calls) == 1
    assert io.matches_sha256(path, digest) and len(calls) == 1  # unchanged: not hashed again
    assert not io.matches_sha256(path, "0" * 64) and len(calls) == 2  # another expected hash is always checked
    data = bytearray(path.read_bytes())
    data[100] ^= 1  # same size, other bytes
    path.write_bytes(bytes(data))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later write (coarse clocks: make it visible)
    assert not io.matches_sha256(path, digest) and len(calls) == 3  # rewritten: hashed, and refused


def test_batch_gathers_each_caption_s_token_rows_in_order_with_padding():
    """The one-gather batch equals copying each caption's slice of the memory-mapped rows."""
    from pathlib import Path

    from ccr_core.training.text_cache import TextStateCache

    rng = np.random.default_rng(0)
    lengths = [3, 1, 5, 2]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    states = rng.standard_normal((int(offsets[-1]), 4)).astype(np.float16)
    cache = TextStateCache(root=Path("."), meta={"texts": ["a", "b", "c", "d"]}, states=states, offsets=offsets)
    batch = cache.batch(["d", "a", "c", "a"])
    assert batch.states.shape == (4, 5, 4) and batch.states.dtype == torch.float32
    for k, text in enumerate(["d", "a", "c", "a"]):
        r = "abcd".index(text)
        n = lengths[r]
        assert batch.mask[k].tolist() == [True] * n + [False] * (5 - n)
        assert np.array_equal(batch.states[k, :n].numpy(), states[offsets[r]:offsets[r] + n].astype(np.float32))
        assert not batch.states[k, n:].any()


def test_parallel_encoding_workers_give_the_same_cache_in_the_same_order(tmp_path):
    """encoding_workers(2): batches run two at a time on single-threaded workers, come back in order, and the cache holds
    the same states as a serial build (each batch is encoded alone whichever thread runs it)."""
    import threading

    from ccr_core.training.text_cache import encoded_batches, encoding_workers

    encoder = TinyTextEncoder()
    texts = [f"caption {i} " + "word " * (i % 7) for i in range(23)]
    threads = set()
    real = encoder.infer_states

    def recording(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(*args, **kwargs)

    encoder.infer_states = recording
    serial = list(encoded_batches(encoder, texts, 4, 0, "query: ", workers=1))
    parallel = list(encoded_batches(encoder, texts, 4, 0, "query: ", workers=2))
    assert [rows for rows, _ in parallel] == [rows for rows, _ in serial] == [texts[b:b + 4] for b in range(0, 23, 4)]
    for (_, (h1, m1)), (_, (h2, m2)) in zip(serial, parallel):
        assert torch.equal(m1, m2)
        torch.testing.assert_close(h1, h2, atol=1e-6, rtol=1e-6)  # one thread vs the caller's count: float rounding at most
    assert any(name.startswith("text-states") for name in threads)  # the parallel run used the workers
    with encoding_workers(2):
        two = build_text_cache(encoder, texts, tmp_path / "two", batch_size=4, progress=False)
    one = build_text_cache(encoder, texts, tmp_path / "one", batch_size=4, progress=False)
    assert two.meta["texts"] == one.meta["texts"]
    np.testing.assert_allclose(np.asarray(two.states, np.float32), np.asarray(one.states, np.float32), atol=1e-3)  # float16
