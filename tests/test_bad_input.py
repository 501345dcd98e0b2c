"""Bad input everywhere a user can type or upload, answered with a clear message (or a sensible
result), never an error page or a traceback; the app keeps serving and its memory stays bounded.

- the dashboard, as its own process (``python app.py``, fixture ``app_process`` in conftest.py), through
  ``gradio_client``: hostile queries, language codes, result counts and uploads; after each one a
  normal search must still answer; the app process's RSS is measured around a repeated barrage;
- the ``ccr`` command line: malformed caption files, bundles and feature caches, bad names and
  values -> exit status 2 and one line ``ccr: error: <file>[:<line>]: ...``, no traceback.

Malformed bundle lines (bad JSON, duplicates, unknown split/language/source, empty text, bad bytes,
altered files) are covered by tests/test_bundle.py; this file adds the kinds it lacks and the CLI.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import pytest

from conftest import REPO, make_tiny_bundle, process_rss_mb

ALL = ["baseline", "uml", "one_to_k"]
RSS_GROWTH_LIMIT_MB = 300


# --------------------------------------------------------------------------------------------------
# files a user might upload


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit all-black PNG of any size, written row by row: 20,000 x 20,000 is ~50 KB on disk
    (and 400 million pixels to a decoder that does not refuse it)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _text_as_png(path: Path) -> Path:
    path.write_text("name,price\nnot,an image\n")
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _truncated_jpeg(path: Path) -> Path:
    from PIL import Image

    Image.effect_noise((96, 96), 60).convert("RGB").save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _animated_gif(path: Path) -> Path:
    from PIL import Image

    frames = [Image.new("P", (48, 40), 30 * i) for i in range(4)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    return path


def _cmyk_jpeg(path: Path) -> Path:
    from PIL import Image

    Image.new("CMYK", (48, 40), (10, 200, 30, 5)).save(path)
    return path


def _png16(path: Path) -> Path:
    from PIL import Image

    Image.fromarray((np.arange(48 * 40).reshape(40, 48) * 31).astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    return path


UPLOADS = [  # (file name, writer, expected: ("warn", needle in the status) or ("ok", None))
    ("notes.png", _text_as_png, ("warn", "Could not read")),
    ("empty.jpg", _empty, ("warn", "Could not read")),
    ("half.jpg", _truncated_jpeg, ("warn", "Could not read")),
    ("bomb-400M.png", lambda p: write_blank_png(p, 20_000, 20_000), ("warn", "too large to decode")),
    # Between PIL's MAX_IMAGE_PIXELS (64M) and twice that, PIL itself only warns: load_rgb refuses it.
    ("bomb-81M.png", lambda p: write_blank_png(p, 9_000, 9_000), ("warn", "too large to decode")),
    ("animated.gif", _animated_gif, ("ok", None)),
    ("cmyk.jpg", _cmyk_jpeg, ("ok", None)),
    ("deep16.png", _png16, ("ok", None)),
]

QUERIES = [  # (id, query, language, k, expected: ("warn", needle) / ("ok", needle or None) / ("gradio", needle))
    ("empty", "", "auto", 5, ("warn", "empty")),
    ("whitespace", " \t\n\r\u3000\u00a0 ", "auto", 5, ("warn", "empty")),
    ("100k-chars", ("a red square " * 7693)[:100_000], "auto", 5, ("ok", "first 2,000 of 100,000 characters")),
    ("nul-and-controls", "a red\x00 square\x01\x1b[31m\x7f\x08", "auto", 5, ("ok", None)),
    ("only-nul", "\x00\x00\x00", "auto", 5, ("ok", None)),
    ("emoji", "🐶🐱 a red square 🚀👍🏽👨‍👩‍👧", "auto", 5, ("ok", None)),
    ("arabic", "مربع أحمر على خلفية بيضاء", "auto", 5, ("ok", None)),
    ("hebrew", "ריבוע אדום על רקע לבן", "de", 5, ("ok", "German")),
    ("bidi-controls", "\u202eerauqs der a\u202c\u200f\u2067x\u2069", "auto", 5, ("ok", None)),
    ("mixed-scripts", "a red 正方形 Quadrat مربع ריבוע квадрат", "auto", 5, ("ok", None)),
    ("combining-marks", "cafe\u0301 Z\u0351\u0352a\u0489l\u0336g\u0337o" + "\u0301" * 500, "auto", 5, ("ok", None)),
    ("unsupported-language", "a red square", "xx", 5, ("warn", "not one the text encoder knows")),  # the handler checks a typed code
    ("k-zero", "a red square", "auto", 0, ("warn", "between 1 and 50")),
    ("k-negative", "a red square", "auto", -3, ("warn", "between 1 and 50")),
    ("k-huge", "a red square", "auto", 10**9, ("warn", "between 1 and 50")),
]


# --------------------------------------------------------------------------------------------------
# the app


@pytest.fixture(scope="module")
def client(app_process):
    from gradio_client import Client

    return Client(app_process["url"], verbose=False)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uploads")
    for name, write, _ in UPLOADS:
        write(folder / name)
    return folder


def assert_still_serving(client) -> None:
    """A normal search after a bad request: the test caption's own image is found and marked."""
    status, summary, *_ = client.predict("de caption 5", "auto", ALL, 5, api_name="/search")
    assert "img5#de#0" in status and not status.startswith("⚠"), status
    assert len(summary["data"]) == len(ALL)


def run_query(client, query, lang, k, expected) -> str:
    from gradio_client.exceptions import AppError

    kind, needle = expected
    if kind == "gradio":  # a value outside a component's choices: Gradio's own one-line message
        with pytest.raises(AppError, match=needle):
            client.predict(query, lang, ALL, k, api_name="/search")
        return needle
    status, summary, *galleries = client.predict(query, lang, ALL, k, api_name="/search")
    if kind == "warn":
        assert status.startswith("⚠") and needle in status, status
    else:
        assert status.startswith("**Query**"), status
        # the visible galleries (lists of tiles), not their headers (strings)
        shown = [g["value"] for g in galleries if isinstance(g, dict) and g.get("visible") and isinstance(g.get("value"), list)]
        assert len(summary["data"]) == len(ALL) and len(shown) == len(ALL) and all(len(v) == k for v in shown)
        assert needle is None or needle in status, status
    return status


def run_upload(client, path: Path, expected) -> str:
    from gradio_client import handle_file

    status, _preview, table = client.predict("", handle_file(str(path)), ["baseline"], 2, api_name="/image_to_text")
    kind, needle = expected
    if kind == "warn":
        assert status.startswith("⚠") and needle in status, status
    else:
        assert "uploaded picture" in status and len(table["data"]) == 3 * 2, status
    return status


@pytest.mark.parametrize("case", QUERIES, ids=[q[0] for q in QUERIES])
def test_hostile_queries_answer_and_the_app_keeps_serving(client, case):
    _, query, lang, k, expected = case
    run_query(client, query, lang, k, expected)
    assert_still_serving(client)


@pytest.mark.parametrize("case", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_hostile_uploads_answer_and_the_app_keeps_serving(client, upload_dir, case):
    name, _, expected = case
    start = time.perf_counter()
    run_upload(client, upload_dir / name, expected)
    assert time.perf_counter() - start < 30  # a bomb is refused from its header, not decoded
    assert_still_serving(client)


def test_other_tabs_take_hostile_text(client, app_process):
    """The Many-languages tab and the caption pick take free text too."""
    status, *_ = client.predict("", ALL, "\x00" * 3, "مربع" * 30_000, "🐶" * 10, api_name="/many_languages")
    # English is three NUL characters and Chinese ten emoji: no letters, so both are left out and said so; the Arabic
    # text typed as German is used, cut to the query limit
    assert status.startswith("**1 language** (German)"), status
    assert "Ignored en: no letters" in status and "Ignored zh: no letters" in status and "only its first 2,000 of 120,000 characters" in status
    assert client.predict("../../etc/passwd\x00", ALL, 4, api_name="/pick_caption")[2].startswith("⚠")
    assert client.predict("x" * 100_000, None, ALL, 2, api_name="/image_to_text")[0].startswith("⚠")
    assert_still_serving(client)


def test_upload_over_the_size_limit_is_refused_by_the_server(app_process, tmp_path, client):
    import httpx

    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(26 * 2**20)  # 26 MiB > the 25 MiB limit (app.MAX_UPLOAD)
    url = app_process["url"] + "gradio_api/upload"
    with open(big, "rb") as handle:
        response = httpx.post(url, files={"files": ("big.png", handle, "image/png")}, timeout=120)
    assert response.status_code == 413 and "maximum allowed size" in response.text, (response.status_code, response.text[:200])
    small = tmp_path / "small.gif"
    _animated_gif(small)
    with open(small, "rb") as handle:
        assert httpx.post(url, files={"files": ("small.gif", handle, "image/gif")}, timeout=60).status_code == 200
    assert_still_serving(client)


def test_memory_stays_bounded_over_a_barrage(client, app_process, upload_dir):
    """RSS of the app process before and after every bad query and upload, three times over."""
    pid = app_process["proc"].pid
    assert_still_serving(client)  # warm: text encoder, visual backbone and thumbnails in use once
    run_upload(client, upload_dir / "cmyk.jpg", ("ok", None))
    before = process_rss_mb(pid)
    start, requests = time.perf_counter(), 0
    for _ in range(3):
        for _, query, lang, k, expected in QUERIES:
            run_query(client, query, lang, k, expected)
            requests += 1
        for name, _, expected in UPLOADS:
            run_upload(client, upload_dir / name, expected)
            requests += 1
        assert_still_serving(client)
        requests += 1
    after = process_rss_mb(pid)
    seconds = time.perf_counter() - start
    print(f"\n[bad-input barrage] {requests} requests in {seconds:.1f} s, 0 errors; app RSS {before:.0f} MiB -> {after:.0f} MiB "
          f"(growth {after - before:+.0f} MiB, limit {RSS_GROWTH_LIMIT_MB} MiB)")
    assert after - before < RSS_GROWTH_LIMIT_MB
    assert app_process["proc"].poll() is None


def test_app_binds_loopback_only(app_process):
    """Its listening socket is 127.0.0.1 (``--host`` unset), per /proc/net/tcp."""
    port = f"{app_process['port']:04X}"
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:] if line.split()[3] == "0A"]
    ours = [addr for addr in listening if addr.endswith(":" + port)]
    assert ours == ["0100007F:" + port]
    if Path("/proc/net/tcp6").exists():  # and nothing on IPv6 any-address
        assert not any(l.split()[1].endswith(":" + port) for l in Path("/proc/net/tcp6").read_text().splitlines()[1:])


# --------------------------------------------------------------------------------------------------
# the command line


@pytest.fixture(autouse=True)
def private_workspace(tmp_path, monkeypatch):
    """Command lines below write caches into a temporary workspace, never the checkout's."""
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "workspace"))


def ccr(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccr_core.cli", *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd or REPO, env={**os.environ, **(env or {})})


def ccr_main(capsys, *args) -> tuple[int, str]:
    """``ccr`` in this process (cheaper than a subprocess): (exit status, stderr)."""
    from ccr_core.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("features ", "text states"))]  # progress bars
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("ccr: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def images(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (32, 32), (len(name) * 40, 10, 10)).save(folder / name)
    return folder


CAPTION_FILES = [  # (file name, content, --format, needle naming file and line)
    ("unknown-lang.csv", "image,lang,text\na.jpg,en,a red square\nb.jpg,xx-bogus,something\n", "auto", "unknown-lang.csv:3: unknown language code 'xx-bogus'"),
    ("empty-text.csv", "image,lang,text\na.jpg,en,a red square\nb.jpg,de,   \n", "auto", "empty-text.csv:3: caption text is empty"),
    ("short-header.csv", "image,text\na.jpg,a red square\n", "auto", "short-header.csv:1: header lacks column"),
    ("extra-field.csv", "image,lang,text\na.jpg,en,a red square,oops\n", "auto", "extra-field.csv:2: more fields than the header"),
    ("latin1.csv", "image,lang,text\na.jpg,de,ein Stra\xdfenbild\n".encode("latin-1"), "auto", "latin1.csv:2: not valid UTF-8"),
    ("number-text.jsonl", '{"image": "a.jpg", "lang": "en", "text": "ok"}\n{"image": "b.jpg", "lang": "en", "text": 5}\n', "auto",
     "number-text.jsonl:2: field 'text' is missing or not a string"),
    ("broken.jsonl", '{"image": "a.jpg", "lang": "en", "text": "ok"}\n{"image": "b.jpg", "lang": \n', "auto", "broken.jsonl:2: not valid JSON"),
    ("array.jsonl", '["a.jpg", "en", "ok"]\n', "auto", "array.jsonl:1: expected a JSON object"),
    ("missing-image.csv", "image,lang,text\na.jpg,en,a red square\nzz.jpg,en,no such picture\n", "auto", "missing-image.csv:3"),
    ("flickr8kcn.txt", "a.jpg#zhc#0 一个红色方块\nb.jpg 没有标签\n", "flickr8kcn", "flickr8kcn.txt:2: expected '<image>#<tag>#<n> <text>'"),
    ("karpathy.json", '{"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"raw": "ok"}]}, {"filename": "b.jpg", "split": "holiday", "sentences": [{"raw": "x"}]}]}',
     "karpathy", "unknown split 'holiday'"),
    ("xflickrco.jsonl", '{"id": "1", "img_path": "a.jpg", "sentences": ["gut"]}\n{"id": "2", "img_path": "b.jpg", "sentences": []}\n', "xflickrco",
     "xflickrco.jsonl:2: field 'sentences' must be a non-empty list"),
]


@pytest.mark.parametrize("name, content, fmt, needle", CAPTION_FILES, ids=[c[0] for c in CAPTION_FILES])
def test_cli_import_names_file_and_line_of_a_malformed_caption_file(capsys, tmp_path, images, name, content, fmt, needle):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    lang = ["--lang", "de"] if fmt == "xflickrco" else []  # (the one format that does not name its language)
    # --strict: a bad line (empty text, absent image) is refused too; without it such lines are skipped (tests/test_import.py)
    code, err = ccr_main(capsys, "data", "import", images, path, tmp_path / "out", "--format", fmt, *lang, "--strict")
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "out").exists()


def test_cli_import_hostile_but_valid_text_round_trips(capsys, tmp_path, images):
    """Emoji, RTL, combining marks and an embedded NUL are text, not errors: they survive import."""
    texts = ["🐶 a dog 👍🏽", "مربع أحمر", "ריבוע אדום", "cafe\u0301 \u202eabc\u202c", "nul\x00inside"]
    rows = [{"image": n, "lang": "en", "text": t} for n, t in zip(["a.jpg", "b.jpg", "c.jpg", "a.jpg", "b.jpg"], texts)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert ccr_main(capsys, "data", "import", images, tmp_path / "c.jsonl", tmp_path / "out")[0] == 0
    from ccr_core.data.bundle import load_bundle

    assert sorted(c.text for c in load_bundle(tmp_path / "out").captions) == sorted(texts)


def _bundle_with(tmp_path: Path, mutate) -> Path:
    from ccr_core.io import sha256_file

    root = make_tiny_bundle(tmp_path / "b", n_images=4)
    mutate(root)
    manifest = json.loads((root / "manifest.json").read_text())
    if isinstance(manifest, dict):
        manifest["files"] = {n: sha256_file(root / n) for n in manifest.get("files", {}) if (root / n).exists()}
        (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _append(name: str, record: dict):
    def mutate(root: Path) -> None:
        with open(root / name, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    return mutate


BUNDLES = [  # kinds tests/test_bundle.py does not cover
    ("manifest-not-an-object", lambda r: (r / "manifest.json").write_text("[1, 2]"), "manifest.json: expected an object"),
    ("items-file-missing", lambda r: (r / "items.jsonl").unlink(), "items.jsonl"),
    ("unknown-item-kind", _append("items.jsonl", {"id": "x", "image": "img0.png", "split": "test", "kind": "hologram"}), "items.jsonl:5: unknown item kind"),
    ("ref-to-no-caption", _append("captions.jsonl", {"id": "c9", "item": "img0", "lang": "de", "text": "t", "source": "mt:x", "split": "train", "ref": "nope"}),
     "'ref' points at no caption"),
    ("noise-label-for-no-caption", lambda r: (r / "noise.jsonl").write_text(json.dumps({"caption": "nope", "label": "clean"}) + "\n"),
     "noise.jsonl:1: noise label for unknown caption"),
]


@pytest.mark.parametrize("mutate, needle", [b[1:] for b in BUNDLES], ids=[b[0] for b in BUNDLES])
def test_cli_stats_refuses_malformed_bundles_in_one_line(capsys, tmp_path, mutate, needle):
    root = _bundle_with(tmp_path, mutate)
    code, err = ccr_main(capsys, "data", "stats", root)
    assert_one_line_error(code, err, needle)


def _feature_cache(tmp_path: Path):
    from ccr_core.backbones.vision import TinyVisual
    from ccr_core.data.bundle import load_bundle
    from ccr_core.features import extract_features

    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", n_images=6))
    cache = tmp_path / "cache"
    extract_features(bundle, TinyVisual(), cache, progress=False)
    return bundle, cache


def _restamp(cache: Path, **meta_changes) -> None:
    from ccr_core.io import sha256_file

    meta = json.loads((cache / "meta.json").read_text())
    meta["sha256"] = {n: sha256_file(cache / n) for n in meta["sha256"]}
    meta.update(meta_changes)
    (cache / "meta.json").write_text(json.dumps(meta))


def _truncate(cache: Path) -> None:
    data = (cache / "features.npy").read_bytes()
    (cache / "features.npy").write_bytes(data[: len(data) // 2])


FEATURE_CACHES = [  # (id, corruption, needle); the corruption re-stamps the hashes where noted, so the content check is what fails
    ("truncated", _truncate, "features.npy: SHA-256 does not match"),
    ("truncated-restamped", lambda c: (_truncate(c), _restamp(c)), "features.npy"),
    ("empty-restamped", lambda c: ((c / "features.npy").write_bytes(b""), _restamp(c)), "features.npy: not a plain NumPy array"),
    ("float64-restamped", lambda c: (np.save(c / "features.npy", np.load(c / "features.npy").astype(np.float64)), _restamp(c)),
     "features.npy: expected float32 or float16 features, found float64"),
    ("wrong-shape-restamped", lambda c: (np.save(c / "features.npy", np.load(c / "features.npy")[:, :5]), _restamp(c)), "features.npy: expected shape"),
    ("object-array-restamped", lambda c: (np.save(c / "features.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True), _restamp(c)),
     "features.npy: not a plain NumPy array"),
    ("meta-missing", lambda c: (c / "meta.json").unlink(), "meta.json is missing"),
    ("meta-not-json", lambda c: (c / "meta.json").write_text('{"kind": "ccr-feature-cache",\n  "ids": ['), "meta.json:2: not valid JSON"),
    ("meta-without-ids", lambda c: _restamp(c, ids=None), "meta.json: incomplete meta"),
]


@pytest.mark.parametrize("corrupt, needle", [f[1:] for f in FEATURE_CACHES], ids=[f[0] for f in FEATURE_CACHES])
def test_malformed_feature_cache_is_refused_naming_the_file(capsys, tmp_path, corrupt, needle):
    from ccr_core.features import FeatureCacheError, load_features

    bundle, cache = _feature_cache(tmp_path)
    corrupt(cache)
    with pytest.raises(FeatureCacheError, match=needle.replace("(", r"\(")):
        load_features(cache)
    # The same through the command line: `ccr features` first loads an existing cache in --out.
    if needle != "meta.json is missing":  # without meta.json the folder is an unfinished extraction: it is redone
        code, err = ccr_main(capsys, "features", "--data", bundle.root, "--backbone", "tiny-visual", "--out", cache, "--quiet")
        assert_one_line_error(code, err, needle, str(cache))


@pytest.mark.parametrize("content, needle", [
    (b"", "not a plain NumPy array"), (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', ", "not a plain NumPy array"),
    (None, "not a plain NumPy array"),  # a pickled object array
    ("1d", "expected a 2-D (N, D) matrix"),
], ids=["empty", "truncated-header", "pickled-objects", "one-dimensional"])
def test_cli_import_of_a_bad_npy_is_one_line(capsys, tmp_path, content, needle):
    bundle = make_tiny_bundle(tmp_path / "b", n_images=3)
    npy = tmp_path / "mine.npy"
    if content is None:
        np.save(npy, np.array([object(), object(), object()], dtype=object), allow_pickle=True)
    elif content == "1d":
        np.save(npy, np.zeros(3, np.float32))
    else:
        npy.write_bytes(content)
    (tmp_path / "ids.txt").write_text("img0\nimg1\nimg2\n")
    code, err = ccr_main(capsys, "features", "--data", bundle, "--from-npy", npy, "--ids", tmp_path / "ids.txt", "--out", tmp_path / "out")
    assert_one_line_error(code, err, needle, str(npy))


def test_cli_unknown_names_and_values_are_one_line(capsys, tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", n_images=6, langs=("en", "de"), with_mt=True)
    assert_one_line_error(*ccr_main(capsys, "features", "--data", bundle, "--backbone", "no-such-net"), "unknown visual backbone 'no-such-net'")
    assert_one_line_error(*ccr_main(capsys, "features", "--data", bundle, "--backbone", "tiny-visual", "--device", "tpu"), "device='tpu'")
    if not torch.cuda.is_available():
        assert_one_line_error(*ccr_main(capsys, "features", "--data", bundle, "--backbone", "tiny-visual", "--device", "cuda"), "no CUDA GPU")
    assert_one_line_error(*ccr_main(capsys, "train", "--method", "magic", "--data", bundle, "--out", tmp_path / "r"), "unknown method 'magic'")
    assert_one_line_error(*ccr_main(capsys, "train", "--method", "baseline", "--data", bundle, "--out", tmp_path / "r", "--quiet",
                                    "text_backbone=tiny-text", "visual_backbone=tiny-visual", "epochs=abc"), "epochs must be a number")
    assert_one_line_error(*ccr_main(capsys, "data", "noise", bundle, tmp_path / "n", "--rate", "5"), "rate must be in [0, 1]")
    assert_one_line_error(*ccr_main(capsys, "eval", bundle / "images"), "manifest.json")


def test_cli_errors_in_a_real_process_have_no_traceback(tmp_path, images):
    """The exit status and stderr of the actual ``python -m ccr_core.cli`` process."""
    (tmp_path / "c.csv").write_bytes(b"image,lang,text\na.jpg,en,fine\nb.jpg,en,bad \xff byte\n")
    result = ccr("data", "import", images, tmp_path / "c.csv", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("ccr: error: ") and "c.csv:3: not valid UTF-8" in result.stderr
    result = ccr("train", "--method", "magic", "--data", make_tiny_bundle(tmp_path / "b", n_images=3))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "unknown method 'magic'" in result.stderr, result.stderr
    result = ccr("data", "stats", tmp_path / "nowhere")
    assert result.returncode == 2 and "no bundle folder" in result.stderr and "Traceback" not in result.stderr
