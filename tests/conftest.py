"""Shared fixtures. Tests that need ../shared/data or Chromium skip on a user's machine when those
are missing, but fail in CI, where .ci/run sets CCR_REQUIRE_SHARED_DATA=1 and CCR_REQUIRE_BROWSER=1."""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from ccr_core.paths import shared_data_dir

CHROMIUM = "/usr/bin/chromium"


def _missing(what: str, env: str) -> None:
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required here ({env}=1) but missing", pytrace=False)
    pytest.skip(f"{what} not available (set {env}=1 to make this a failure)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data mirror; skip (or fail in CI) when absent."""
    root = shared_data_dir()
    if not (root / "flickr8k" / "images").is_dir():
        _missing(f"the real-data mirror {root}", "CCR_REQUIRE_SHARED_DATA")
    return root


@pytest.fixture(scope="session")
def flickr8k_ml_built(shared_data, tmp_path_factory) -> tuple[Path, float]:
    """The real flickr8k-ml bundle built once per session from the mirror (tests must not change it), and the seconds the
    build took."""
    import time

    from ccr_core.data.flickr8k_ml import build_flickr8k_ml

    started = time.perf_counter()
    root = build_flickr8k_ml(shared_data, tmp_path_factory.mktemp("flickr8k-ml"), progress=False)
    return root, time.perf_counter() - started


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium; skip (or fail in CI) when absent."""
    path = os.environ.get("CCR_CHROMIUM", CHROMIUM)
    if not (Path(path).exists() or shutil.which(path)):
        _missing(f"chromium ({path})", "CCR_REQUIRE_BROWSER")
    return path


def cut_bundle(full, out: Path, per_split: dict) -> Path:
    """``full`` (a loaded bundle) cut to the first ``per_split[split]`` images of each split, with their captions and
    noise labels: a real world small enough for a browser test's app to encode in seconds."""
    from ccr_core.data.bundle import save_bundle

    kept = [item for split, n in per_split.items() for item in full.items_in(split, "image")[:n]]
    ids = {it.id for it in kept}
    captions = [c for c in full.captions if c.item in ids]
    names = {c.id for c in captions}
    manifest = dataclasses.replace(full.manifest, image_root=str(full.image_root.resolve()))  # the pictures stay where they are
    return save_bundle(out, manifest, kept, captions, {k: v for k, v in full.noise.items() if k in names})


def make_tiny_bundle(root: Path, n_images: int = 10, n_videos: int = 0, frames: int = 3, langs=("en", "de"), with_mt: bool = False) -> Path:
    """A small valid bundle of coloured squares (and optional frame-folder videos) for fast tests."""
    from PIL import Image

    from ccr_core.data.bundle import Caption, Item, Manifest, save_bundle

    rng = __import__("random").Random(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    items, captions = [], []
    splits = ["train", "val", "test"]
    for i in range(n_images):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        Image.new("RGB", (40 + i, 36), colour).save(root / "images" / f"img{i}.png")
        split = splits[i % 3]
        items.append(Item(f"img{i}", f"img{i}.png", split))
        for lang in langs:
            captions.append(Caption(f"img{i}#{lang}#0", f"img{i}", lang, f"{lang} caption {i}", "human", split))
        if with_mt and split == "train":
            for lang in langs[1:]:
                mt = f"img{i}#{lang}-mt#0"
                captions.append(Caption(mt, f"img{i}", lang, f"{lang} mt of caption {i}", "mt:sim", split, f"img{i}#en#0"))
                captions.append(Caption(f"{mt}-bt", f"img{i}", "en", f"en back of {lang} {i}", "back-translation:sim", split, mt))
    for v in range(n_videos):
        folder = root / "images" / f"vid{v}"
        folder.mkdir(exist_ok=True)
        for f in range(frames):
            Image.new("RGB", (32, 32), (20 * f, 100, 30 * v)).save(folder / f"{f:03d}.png")
        split = splits[v % 3]
        items.append(Item(f"vid{v}", f"vid{v}", split, "video"))
        captions.append(Caption(f"vid{v}#en#0", f"vid{v}", "en", f"a clip {v}", "human", split))
    save_bundle(root, Manifest("tiny", languages=list(langs)), items, captions)
    return root


@pytest.fixture
def tiny_bundle(tmp_path):
    from ccr_core.data.bundle import load_bundle

    return load_bundle(make_tiny_bundle(tmp_path / "bundle", n_images=10, n_videos=2))


# --------------------------------------------------------------------------------------------------
# the dashboard as its own process (tests/test_bad_input.py, tests/test_load.py)

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def launch_app_process(bundle: Path, checkpoints: Path, workspace: Path, log_path: Path, extra_env: dict | None = None,
                       timeout: float = 180.0) -> dict:
    """Start ``python app.py`` on a free localhost port and wait until it answers.

    Returns ``{"url", "port", "proc", "log"}``; stop it with :func:`stop_app_process`."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(log_path.parent / f"gradio-tmp-{port}"), **(extra_env or {})}
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--world", str(bundle), "--checkpoints", str(checkpoints),
                             "--workspace", str(workspace), "--port", str(port), "--no-warm"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            log.close()
            raise RuntimeError(f"app.py exited with status {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    return {"url": url, "port": port, "proc": proc, "log": log_path, "_log_handle": log}


def stop_app_process(app: dict) -> None:
    import subprocess

    proc = app["proc"]
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    app["_log_handle"].close()


@pytest.fixture(scope="session")
def app_process(tmp_path_factory):
    """``python app.py`` in its own process over the dashboard fixture world (tests/test_dashboard_logic.py):
    ``{"url", "port", "proc", "log", "paths"}``. Shared by every test module of the session that asks for it."""
    from test_dashboard_logic import build_fixture_world

    base = tmp_path_factory.getbasetemp()
    paths = build_fixture_world(base / "dashboard-world")
    app = launch_app_process(paths["bundle"], paths["checkpoints"], paths["workspace"], base / "app-process.log")
    app["paths"] = paths
    yield app
    stop_app_process(app)
