"""Dashboard cold start and first search, measured from outside like a user would.

``python app.py --port P`` (the default demo world, checkpoints/demo-world) is started as a
subprocess; the clock starts just before the launch. The page counts as served at the first HTTP
200 of ``/`` (polled every 0.1 s); the UI counts as usable when, after that, a ``gradio_client``
connected (it reads the app's config and API info, as the page does) and its first ``/search`` --
a free-text query, not a cached caption, for the five methods -- has answered. The first search
is timed on its own client-side: HTTP + queue + e5 + heads + search + Gradio's post-processing of
the result galleries (it copies each thumbnail into its file cache) + the JSON answer; the
thumbnail bytes themselves are not downloaded (``download_files=False``). Then 10 more searches
give the steady round trip. Run once with ``--no-warm`` (no background warm-up competing for the
two cores) and once as plain ``python app.py`` (the warm-up thread computes the consistency table
and each model's default UMAP projection, or loads them from the disk cache). The subprocess is
always killed at the end (SIGTERM to its process group, then SIGKILL).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.common import Result

REPO = Path(__file__).resolve().parent.parent
METHODS = ("baseline", "nrccr", "cl2cm", "uml", "one_to_k")
START_TARGET_S = 15.0
FIRST_SEARCH_TARGET_S = 1.0
TIMEOUT_S = 180.0
CONFIG_TARGET_KB = 200
QUERIES = ["ein kleines rotes Dreieck links von einem blauen Kreis", "a big green cross under a small black square",
           "un petit cercle jaune", "malý modrý kruh vpravo", "红色的大三角形", "小さい緑の十字", "two small blue squares and a circle",
           "zwei große schwarze Kreuze", "un grand triangle vert au-dessus", "蓝色的圆和黑色的正方形", "three red circles"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PHOTO_QUERIES = ["un perro corriendo en la nieve", "a dog runs through the snow", "两个孩子在海滩上玩", "ein Mann fährt Fahrrad",
                 "une femme en robe rouge", "a group of people standing in front of a building", "een meisje met een bal",
                 "кошка на диване", "two men playing soccer", "一只黑狗在草地上跑", "a surfer riding a wave"]


def present_methods(world: str = "demo-world") -> list[str]:
    from ccr_core.paths import CHECKPOINTS_DIR

    folder = CHECKPOINTS_DIR / world
    names = [name for m in METHODS for name in (m, m + "-ft")]  # the real-photo world ships <method>-ft (fine-tuned tops)
    return [n for n in names if (folder / n / "manifest.json").exists() or (folder / n / "best" / "manifest.json").exists()]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            resp.read()
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)  # its own session / process group (start_new_session)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def page_sizes(url: str) -> tuple[int, int]:
    """Bytes of the page config (``/config``, what the page loads) and of the API description (``/gradio_api/info``)."""
    sizes = []
    for path in ("config", "gradio_api/info"):
        with urllib.request.urlopen(url + path, timeout=30) as resp:
            sizes.append(len(resp.read()))
    return sizes[0], sizes[1]


# The app's log lines that say a background pass is over (app.finish_background): what each lets work.
READY_LINES = {"captions": "test captions ready", "training": "training pairs ready"}


def measure(methods: list[str], warm: bool, world: str | None = None, queries=QUERIES, extra_env: dict | None = None,
            timeout: float = TIMEOUT_S, wait_ready: float = 0.0) -> dict:
    """Start the app, time the page and the first searches, always kill it. ``extra_env`` (e.g. a fresh
    ``CCR_WORKSPACE``) is added to the app's environment; ``timeout`` bounds the wait for the page. With
    ``wait_ready`` > 0, then wait up to that many seconds for the background passes' log lines (``READY_LINES``):
    ``ready_s[name]`` is the time from start at which each appeared (absent: not within the wait)."""
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "app.py", "--port", str(port)] + ([] if warm else ["--no-warm"]) + (["--world", world] if world else [])
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})})

    def reader():
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip()))

    threading.Thread(target=reader, daemon=True).start()
    out: dict = {"cmd": " ".join(cmd[1:])}
    try:
        while not _http_ok(url):
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with {proc.returncode}: {' | '.join(l for _, l in lines[-5:])}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"no HTTP 200 from {url} within {timeout:.0f} s")
            time.sleep(0.1)
        out["http_s"] = time.perf_counter() - start
        out["config_bytes"], out["info_bytes"] = page_sizes(url)
        t = time.perf_counter()
        client = Client(url, verbose=False, download_files=False)
        out["client_s"] = time.perf_counter() - t
        t = time.perf_counter()
        status, *_ = client.predict(queries[0], "auto", methods, 8, api_name="/search")
        out["first_search_s"] = time.perf_counter() - t
        out["usable_s"] = time.perf_counter() - start
        out["first_status"] = status.splitlines()[0] if status else ""
        rest = []
        for q in queries[1:]:
            t = time.perf_counter()
            client.predict(q, "auto", methods, 8, api_name="/search")
            rest.append(time.perf_counter() - t)
        out["next_p50_s"] = float(np.median(rest))
        deadline = time.perf_counter() + wait_ready
        out["ready_s"] = {}
        while wait_ready > 0:
            out["ready_s"] = {name: next(ts for ts, l in list(lines) if text in l)
                              for name, text in READY_LINES.items() if any(text in l for _, l in list(lines))}
            if len(out["ready_s"]) == len(READY_LINES) or time.perf_counter() > deadline or proc.poll() is not None:
                break
            time.sleep(1.0)
        loaded = [(ts, l) for ts, l in lines if "world loaded in" in l]
        if loaded:
            out["world_line_s"] = loaded[0][0]
            out["world_load_s"] = float(loaded[0][1].split("world loaded in", 1)[1].split()[0])
        try:
            client.close()
        except Exception:  # noqa: BLE001 -- older clients have no close()
            pass
    finally:
        _stop(proc)
    return out


def run() -> list[Result]:
    methods = present_methods()
    missing = [m for m in METHODS if m not in methods]
    if not methods:
        return [Result("dashboard: no demo-world checkpoints", float("nan"), "s", f"<= {START_TARGET_S:g} s", False, "checkpoints/demo-world is empty")]
    rows = []
    for warm in (False, True):
        label = "python app.py" + ("" if warm else " --no-warm")
        m = measure(methods, warm)
        where = (f"world loaded (log line) at {m['world_line_s']:.1f} s (load_world {m['world_load_s']:.1f} s of it); "
                 if "world_line_s" in m else "")
        rows.append(Result(f"{label}: start -> page HTTP 200", round(m["http_s"], 2), "s",
                           note=where + "from Popen to the first 200 of / (polled every 0.1 s)"))
        rows.append(Result(f"{label}: start -> usable (page + client connected + first search answered)", round(m["usable_s"], 2), "s",
                           f"<= {START_TARGET_S:g} s", m["usable_s"] <= START_TARGET_S,
                           f"gradio_client connect {m['client_s'] * 1e3:.0f} ms, first search {m['first_search_s'] * 1e3:.0f} ms"))
        rows.append(Result(f"{label}: first search after start (client round trip)", round(m["first_search_s"], 3), "s",
                           f"<= {FIRST_SEARCH_TARGET_S:g} s", m["first_search_s"] <= FIRST_SEARCH_TARGET_S,
                           f"free text, lang auto, {len(methods)} methods{' (MISSING ' + ', '.join(missing) + ')' if missing else ''}, k=8; "
                           "HTTP + queue + search + Gradio gallery post-processing + JSON, thumbnails not downloaded"))
        rows.append(Result(f"{label}: next 10 searches, client round trip p50", round(m["next_p50_s"] * 1e3, 1), "ms",
                           note="same client, free-text queries in 6 languages"))
    rows.append(Result("page config (GET /config)", round(m["config_bytes"] / 1000, 1), "KB", f"<= {CONFIG_TARGET_KB} KB",
                       m["config_bytes"] <= CONFIG_TARGET_KB * 1000, "demo world; the JSON the page loads before it draws"))
    rows.append(Result("API description (GET /gradio_api/info)", round(m["info_bytes"] / 1000, 1), "KB",
                       note="what gradio_client (and the page's 'Use via API') read"))
    rows += photo_world()
    return rows


def photo_world() -> list[Result]:
    """The real-photo world, where it is built and its caches exist: start -> usable and the page config
    (issue 15: config <= 200 KB on both worlds). Not a fresh-workspace time: its caches are already there."""
    from ccr_core.paths import bundle_dir, workspace_dir

    world = "flickr8k-ml"
    methods = present_methods(world)
    if not (bundle_dir(world) / "manifest.json").exists() or not methods:
        return [Result(f"{world}: not built or no checkpoints", float("nan"), "", note=f"`ccr data build {world}` (and train/ship its models) first")]
    if not any((workspace_dir() / "features" / world).glob("*/meta.json")):
        return [Result(f"{world}: caches not built", float("nan"), "", note=f"open it once (`python app.py --world {world}`) first")]
    m = measure(methods, warm=False, world=world, queries=PHOTO_QUERIES)
    return [Result(f"{world}, caches built: start -> usable (page + client + first search)", round(m["usable_s"], 2), "s",
                   note=f"python app.py --world {world} --no-warm; features and text states already cached (not a fresh workspace); "
                        f"first search {m['first_search_s'] * 1e3:.0f} ms, next p50 {m['next_p50_s'] * 1e3:.0f} ms, {len(methods)} methods"),
            Result(f"{world}: page config (GET /config)", round(m["config_bytes"] / 1000, 1), "KB", f"<= {CONFIG_TARGET_KB} KB",
                   m["config_bytes"] <= CONFIG_TARGET_KB * 1000, f"{world}; {m['info_bytes'] / 1000:.1f} KB API description")]


if __name__ == "__main__":
    for row in run():
        print(f"{row.name}: {row.value} {row.unit}  {row.target} {row.met}  ({row.note})")
