"""The dashboard as a server: launched on a free localhost port over the fixture world, every
api_name called with gradio_client, bad input answered with a message, and no file outside the
app's own folders served."""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_dashboard_logic import build_fixture_world

REPO = Path(__file__).resolve().parent.parent


def load_app_module():
    spec = importlib.util.spec_from_file_location("ccr_app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(world_paths: dict, defer_captions: bool = False):
    """(module, world, blocks, url) of a launched app; the caller closes the blocks. ``defer_captions``:
    as ``app.open_world`` loads it (test captions encoded later, by ``app.finish_background``)."""
    from ccr_core.dashboard import leaderboard
    from ccr_core.dashboard.world import load_world

    app = load_app_module()
    start = time.perf_counter()
    world = load_world(world_paths["bundle"], world_paths["checkpoints"], world_paths["workspace"], defer_captions=defer_captions)
    leaderboard.all_results(world)
    demo = app.build_app(world)
    port = free_port()
    app.launch(demo, world, "127.0.0.1", port, block=False)
    demo.startup_seconds = time.perf_counter() - start
    return app, world, demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    paths = build_fixture_world(tmp_path_factory.getbasetemp() / "dashboard-world")
    app, world, demo, url = start_server(paths)
    yield {"app": app, "world": world, "demo": demo, "url": url, "paths": paths}
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server["url"], verbose=False)


ALL = ["baseline", "uml", "one_to_k"]


def test_launch_is_local_private_and_serves_only_its_folders(server):
    demo, world = server["demo"], server["world"]
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and demo.analytics_enabled is False
    assert demo.server_name == "127.0.0.1" and not demo.share
    assert sorted(demo.allowed_paths) == sorted(world.served_dirs())
    assert demo.startup_seconds < 60


def test_every_api_name_is_exposed(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    expected = {"/search", "/pick_caption", "/caption_list", "/image_to_text", "/many_languages", "/instance_texts", "/consistency",
                "/consistency_instance", "/consistency_pick", "/audit", "/audit_page", "/audit_prev", "/audit_next", "/audit_filter", "/projection", "/projection_select",
                "/leaderboard", "/train_start", "/train_status", "/train_stop", "/train_publish", "/train_discard", "/refresh_models", "/find_captions", "/train_plan"}
    assert expected <= names and {f"/pick_result_{i}" for i in range(len(ALL) + 3)} <= names


def test_search_marks_the_ground_truth_and_answers_fast(client, server):
    from ccr_core.dashboard import search

    status, summary, *outputs = client.predict("de caption 5", "auto", ALL, 5, api_name="/search")
    galleries = outputs[: len(outputs) // 2]  # then each gallery's heading
    assert "img5#de#0" in status and summary["headers"][1] == "ground-truth rank"
    direct = search.text_search(server["world"], "de caption 5", "auto", ALL, 5)
    assert [row[1] for row in summary["data"]] == [m.target_rank for m in direct.methods]
    shown = [g for g in galleries if g.get("visible")]
    assert len(shown) == len(ALL) and all(len(g["value"]) == 5 for g in shown)
    assert any("✓ ground truth" in e["caption"] for g in shown for e in g["value"]) == any(m.target_rank <= 5 for m in direct.methods)
    # Each card: rank and score (the top one's, then the gap from it), then the image's English caption; no file id.
    world = server["world"]
    for e, h in zip(shown[0]["value"], direct.methods[0].hits):
        head, english, *others = e["caption"].split("\n")
        assert head.endswith(f"#{h.rank} · " + (f"{h.score:.3f}" if h.rank == 1 else search.score_gap(h.score - direct.methods[0].hits[0].score)))
        assert english == next(world.captions[i].text for i in world.captions_of_item[h.item_id] if world.captions[i].lang == "en")
        assert h.item_id not in e["caption"].replace(english, "") and {o.split(":")[0] for o in others} == {"de", "zh"}
    truth = [e for g in shown for e in g["value"] if e["caption"].startswith("✓ ground truth")]
    assert all(e["image"]["path"].endswith("-truth.jpg") for e in truth)  # the tile has its border drawn in
    t = time.perf_counter()
    for query in ("ein rotes Quadrat", "一个蓝色的圆", "a green star"):
        client.predict(query, "auto", ALL, 8, api_name="/search")
    assert (time.perf_counter() - t) / 3 < 5.0  # round trip incl. thumbnails; the logic itself takes milliseconds


@pytest.mark.parametrize("query, lang, methods, k, needle", [
    ("", "auto", ALL, 5, "empty"), ("   ", "auto", ALL, 5, "empty"), ("x", "auto", [], 5, "at least one method"),
    ("x", "auto", ALL, 0, "between 1 and 50"), ("x", "auto", ALL, 500, "between 1 and 50"),
])
def test_search_bad_inputs_answer_with_a_message(client, query, lang, methods, k, needle):
    status, *_ = client.predict(query, lang, methods, k, api_name="/search")
    assert status.startswith("⚠") and needle in status


def test_huge_query_is_truncated_with_a_note(client):
    status, *_ = client.predict("ä" * 100_000, "auto", ["baseline"], 3, api_name="/search")
    assert "first 2,000 of 100,000 characters" in status


def test_caption_browser_and_pick(client, server):
    choices = client.predict("zh", api_name="/caption_list")["choices"]
    assert choices and all(c[0].startswith("[zh]") for c in choices)
    out = client.predict(choices[0][1], ALL, 4, api_name="/pick_caption")
    text, lang, status = out[:3]  # (the caption id goes to a gr.State, which clients do not see)
    assert lang == "zh" and choices[0][1] in status and "framed in yellow" in status and "编号" in text
    assert client.predict("no-such-caption", ALL, 4, api_name="/pick_caption")[2].startswith("⚠")


def test_image_to_text_by_id_upload_and_bad_files(client, server, tmp_path):
    from gradio_client import handle_file

    world = server["world"]
    item = world.gallery[2].id
    status, preview, table = client.predict(item, None, ALL, 2, api_name="/image_to_text")
    assert item in status and len(table["data"]) == len(ALL) * 3 * 2 and Path(preview).exists()
    status, preview, table = client.predict("", handle_file(str(world.bundle.image_path(item))), ["baseline"], 2, api_name="/image_to_text")
    assert "uploaded picture" in status and len(table["data"]) == 3 * 2
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    status, *_ = client.predict("", handle_file(str(bad)), ["baseline"], 2, api_name="/image_to_text")
    assert status.startswith("⚠")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    status, *_ = client.predict("", handle_file(str(broken)), ["baseline"], 2, api_name="/image_to_text")
    assert status.startswith("⚠") and "Could not read" in status
    assert client.predict("", None, ["baseline"], 2, api_name="/image_to_text")[0].startswith("⚠")
    assert client.predict(item, None, ["baseline"], 99, api_name="/image_to_text")[0].startswith("⚠")
    # A gallery click needs a selection: without one the answer is a message, not an error page.
    assert client.predict(ALL, 2, api_name="/pick_result_0")[2].startswith("⚠")


def test_many_languages(client, server):
    item = server["world"].gallery[4].id
    en, de, zh, status = client.predict(item, api_name="/instance_texts")
    assert en.startswith("en caption") and de.startswith("de caption") and "编号" in zh
    status, plot, table, thumb = client.predict(item, ALL, en, de, zh, api_name="/many_languages")
    assert "3 languages" in status and plot["type"] == "plotly" and len(table["data"]) == len(ALL)
    assert "spread (σ, MRV)" in table["headers"] and Path(thumb).stat().st_size > 0  # the instance's picture beside it
    assert client.predict("", ALL, "", " ", "", api_name="/many_languages")[0].startswith("⚠")
    # An added language (not one of the world's) gets its own rank of the same image.
    status, plot, table, _ = client.predict(item, ALL, en, de, zh, "es", "un cuadrado de colores", api_name="/many_languages")
    assert "4 languages" in status and "Spanish" in status and "rank es" in table["headers"]
    # A typed line whose language is not chosen is said to be left out, not silently ignored.
    status, *_ = client.predict(item, ALL, en, de, zh, "", "un cuadrado de colores", api_name="/many_languages")
    assert "3 languages" in status and "Left out “un cuadrado de colores”" in status


def test_enter_submits_the_search_boxes(server):
    """Enter searches: the query box is one line that grows (Gradio submits on Enter there, Shift+Enter adds a line)."""
    config = server["demo"].get_config_file()
    boxes = {c["props"].get("elem_id"): c for c in config["components"] if c.get("type") == "textbox"}
    for elem_id in ("query", "i2t-item", "ml-text-en", "ml-text-zh"):
        props = boxes[elem_id]["props"]
        assert props["lines"] == 1 and (props.get("max_lines") or 20) > 1, elem_id  # a multi-line box submits on Shift+Enter only
    submits = {(t[0], t[1]) for d in config["dependencies"] for t in d["targets"] if t[1] == "submit"}
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]}
    assert {(ids["query"], "submit"), (ids["i2t-item"], "submit"), (ids["ml-text-de"], "submit")} <= submits


def test_caption_search_is_server_side(client, server):
    world = server["world"]
    hits = client.predict("CAPTION 1", "de", api_name="/find_captions")  # every word, in any case
    expected = {c.id for c in world.captions if c.lang == "de" and "caption" in c.text and "1" in c.text + c.id}
    assert hits and {cid for _, cid in hits} == expected and all(label.startswith("[de]") for label, _ in hits)
    assert client.predict("IMG8#zh#0", "all", api_name="/find_captions")[0][1] == "img8#zh#0"  # by id
    assert client.predict("no such words", "all", api_name="/find_captions") == []
    # A typed text that is not an id picks its first match.
    text, lang, status, *_ = client.predict("编号 14", ALL, 3, api_name="/pick_caption")
    assert lang == "zh" and "编号14" in text and "framed in yellow" in status


def test_search_in_a_language_the_world_lacks(client):
    status, *_ = client.predict("un perro corriendo en la nieve", "auto", ["baseline"], 3, api_name="/search")
    assert "Spanish (es, detected)" in status
    status, *_ = client.predict("a query", "nl", ["baseline"], 3, api_name="/search")
    assert "Dutch (nl)" in status


def test_every_tab_opens_with_something_to_look_at(server):
    config = server["demo"].get_config_file()
    props = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c["props"].get("elem_id")}
    assert "languages" in props["ml-status"]["value"]  # Many languages: its opening result ...
    assert not props["ml-plot"].get("value") and not props["about"].get("value")  # ... drawn at page load (test_browser), not carried in the config
    assert len(props["lang"]["choices"]) == 1 + len(server["world"].languages)  # the ~90 languages come at page load too
    assert all(props[f"ml-text-{l}"]["value"] for l in ("en", "de", "zh"))
    assert props["i2t-table"]["value"]["headers"][0] == "method"  # its rows come at page load (browser test)
    assert props["search-summary"]["value"]["headers"] == ["method", "ground-truth rank", "top-1 image", "top-1 score", "UML uncertainty"]
    assert "New here?" in props["search-status"]["value"]
    assert props["ex-plan"]["value"] == ""  # written at each page load, as of then (a build-time text goes stale)


def test_consistency_views(client, server):
    status, summary, hist, worst, instance = client.predict("t2i", "baseline", True, api_name="/consistency")
    assert [row[0] for row in summary["data"]] == ALL and hist["type"] == "plotly" and worst["data"]
    item = worst["data"][0][0]
    caps, heat, text, thumb = client.predict(item, "i2t", True, api_name="/consistency_instance")
    caps, heat, thumb = (v["value"] if isinstance(v, dict) and "__type__" in v else v for v in (caps, heat, thumb))  # shown now: updates
    assert len(caps["data"]) == 3 and heat["type"] == "plotly" and item in text and Path(thumb).stat().st_size > 0  # its picture too
    assert client.predict("nope", "t2i", True, api_name="/consistency_instance")[2].startswith("⚠")
    assert client.predict("t2i", api_name="/consistency_pick")[3].startswith("⚠")  # no row selected


def test_audit_views(client):
    status, hist, curves, precision, kinds, _kind_pick, start, gallery, table, page = client.predict("uml", 0, 6, "all", "all", api_name="/audit")
    assert "AUROC" in status and hist["type"] == curves["type"] == "plotly" and precision["data"]
    assert {row[0] for row in kinds["data"]} == {"noisy-correspondence", "clean (false alarms)"}
    assert "English source" in table["headers"]
    assert len(gallery) == 6 and len(table["data"]) == 6 and "highest DECL score first" in page and "AUROC" in status and status.count("AUROC") >= 2
    start, gallery, table, page = client.predict("uml", 0, 6, "all", "all", api_name="/audit_next")
    assert start == 6 and table["data"][0][0] == 7
    start, *_ = client.predict("uml", 6, 6, "all", "all", api_name="/audit_prev")
    assert start == 0
    assert client.predict("uml", 3, 2, "all", "all", api_name="/audit_page")[0] == 3
    assert client.predict("uml", 9999, 6, "all", "all", api_name="/audit_page")[3].startswith("⚠")
    assert client.predict("baseline", 0, 6, "all", "all", api_name="/audit")[0].startswith("⚠")
    start, gallery, table, page = client.predict("uml", 0, 6, "de", "noisy-correspondence", api_name="/audit_filter")
    assert {row[table["headers"].index("language")] for row in table["data"]} == {"de"} and "kind noisy-correspondence" in page


def test_projection_and_its_cache(client):
    status, left, right = client.predict("baseline", "uml", ["en", "de"], "PCA", 10, 15, 0.1, True, False, api_name="/projection")
    assert left["type"] == right["type"] == "plotly" and "baseline" in status
    status, *_ = client.predict("baseline", "uml", ["en", "de"], "PCA", 10, 15, 0.1, False, False, api_name="/projection")
    assert status.count("memory") == 2
    assert client.predict("baseline", "uml", [], "PCA", 10, 15, 0.1, False, False, api_name="/projection")[0].startswith("⚠")
    status, *_ = client.predict("baseline", "uml", ["en", "de"], "PCA", 10, 15, 0.1, False, True, api_name="/projection")
    assert "One shared PCA fit" in status
    # Selecting instances (what a click or lasso in a map sends) shows them with their captions.
    status, grid, table, *_ = client.predict("img2 img5", ["en", "de"], api_name="/projection_select")
    assert "2 instances selected" in status and len(grid) == 2 and {row[0] for row in table["data"]} == {"img2", "img5"}
    assert client.predict("", ["en"], api_name="/projection_select")[0].startswith("⚠")


def test_experiment_plan_says_what_a_run_will_do(client):
    plan = client.predict("baseline", 0.3, 40, api_name="/train_plan")
    assert "`baseline` for **40 steps**" in plan and "30%" in plan and "training pairs" in plan
    assert client.predict("magic", 0.3, 40, api_name="/train_plan").startswith("⚠")


def test_leaderboard_and_downloads(client):
    status, table, bars, mrv, csv_file, json_file, intervals, noise, ranking, ranking_plot, curves, curves_note = client.predict(
        "SumR", "SumR", ["en", "de", "zh"], True, api_name="/leaderboard")
    assert curves is None and "No learning curve recorded for this world yet" in curves_note  # the tiny world has no records
    assert len(table["data"]) == len(ALL) * 3 and bars["type"] == mrv["type"] == ranking_plot["type"] == "plotly"
    assert [row[1] for row in ranking["data"]] and len(ranking["data"]) == len(ALL)  # one row per model
    assert {row[ranking["headers"].index("verdict")] for row in ranking["data"]} == {"no seeds run"}  # the tiny world has no grid: said, not left blank
    assert "No equal-budget grid has been run for this world yet" in status and not intervals["data"]  # the tiny world has no grid
    assert Path(csv_file).read_text().startswith("model,method,train noise,group")
    assert '"world": "tiny"' in Path(json_file).read_text()
    status, table, *_ = client.predict("MRV mean", "t2i_R@1", ["de"], True, api_name="/leaderboard")
    assert {row[3] for row in table["data"]} == {"de"}


def test_a_training_run_is_private_to_its_session_until_published(client, server):
    from gradio_client import Client

    other = Client(server["url"], verbose=False)  # a second browser session
    # A long run first: while it trains, the machine's one training slot is taken for every session.
    long_job, status, *_ = client.predict("baseline", 0.0, 1000, False, api_name="/train_start")
    assert long_job and "baseline" in status
    assert other.predict("baseline", 0.0, 6, False, api_name="/train_start")[1].startswith("⚠")
    assert other.predict(long_job, api_name="/train_status")[0].startswith("⚠")  # not even its status
    assert "discarded" in client.predict(long_job, False, api_name="/train_stop")
    deadline = time.time() + 60  # the stopped run ends after its current step, then the slot is free
    while True:
        job, status, progress, plot, _timer = client.predict("baseline", 0.0, 6, False, api_name="/train_start")
        if not status.startswith("⚠") or time.time() > deadline:
            break
        time.sleep(0.5)
    assert job and "baseline" in status, status
    deadline = time.time() + 120
    while time.time() < deadline:
        out = client.predict(job, api_name="/train_status")
        if "Finished" in out[0] or "Failed" in out[0]:
            break
        time.sleep(0.5)
    assert "Finished" in out[0], out[0]
    name = out[0].split("**")[3]
    assert name.startswith("my-baseline") and "private" in out[0]
    from gradio_client.exceptions import AppError

    assert name not in str(other.predict(api_name="/refresh_models"))  # what a page load of another session lists
    with pytest.raises(AppError, match="not in the list of choices"):
        other.predict("de caption 5", "de", ["baseline", name], 3, api_name="/search")
    assert other.predict(job, api_name="/train_publish")[0].startswith("⚠")
    assert "published" in client.predict(job, api_name="/train_publish")[0]
    assert name in str(other.predict(api_name="/refresh_models"))  # a page loaded now lists it
    status, summary, *_ = other.predict("de caption 5", "de", ["baseline", name], 3, api_name="/search")
    assert [row[0] for row in summary["data"]] == ["baseline", f"{name} (trained here)"]
    assert client.predict("magic", 0.0, 6, False, api_name="/train_start")[1].startswith("⚠")
    # Sliders are bounds-checked by Gradio itself, which answers with its own one-line message.
    with pytest.raises(AppError, match="greater than maximum"):
        client.predict("baseline", 0.0, 5000, False, api_name="/train_start")
    assert client.predict("nope", api_name="/train_status")[0].startswith("⚠")
    assert "Stopping" in client.predict(job, False, api_name="/train_stop")
    assert len(client.predict(api_name="/refresh_models")) == 6  # five pickers before, and the Instance tab's models


@pytest.mark.parametrize("path", [
    "/gradio_api/file=/etc/passwd", "/gradio_api/file=../../../../etc/passwd", "/gradio_api/file=%2Fetc%2Fpasswd",
    "/gradio_api/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/file=/etc/passwd",
    "/gradio_api/file=/proc/self/environ",
])
def test_no_file_outside_the_app_is_served(server, path):
    import httpx

    response = httpx.get(server["url"].rstrip("/") + path, follow_redirects=True)
    assert response.status_code in (403, 404) and "root:" not in response.text


def test_workspace_files_are_not_served_but_thumbnails_are(server):
    import httpx

    world = server["world"]
    base = server["url"].rstrip("/")
    for secret in (world.bundle.root / "captions.jsonl", server["paths"]["checkpoints"] / "baseline" / "config.json", REPO / "app.py"):
        assert httpx.get(f"{base}/gradio_api/file={secret}").status_code in (403, 404)
    thumb = world.thumbs[world.gallery[0].id]
    assert httpx.get(f"{base}/gradio_api/file={thumb}").status_code == 200


def test_cli_explains_how_to_build_a_missing_world(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "app.py"), "--world", "flickr8k-ml", "--workspace", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "CCR_WORKSPACE": str(tmp_path)})
    assert result.returncode == 2 and "ccr data build flickr8k-ml" in result.stderr and "Traceback" not in result.stderr


def build_big_world(base: Path, fixture: dict, n_images: int = 600, per_lang: int = 4) -> dict:
    """A world of ``n_images`` test images with ``per_lang`` captions in each of en/de/zh (7,200 test
    captions by default: the old pickers would have put 1,000 captions and 600 instances into the page),
    over the fixture's tiny checkpoints."""
    from PIL import Image

    from ccr_core.data.bundle import Caption, Item, Manifest, save_bundle

    root = base / "bundle"
    if (base / "READY").exists():
        return {"bundle": root, "checkpoints": fixture["checkpoints"], "workspace": base / "ws"}
    (root / "images").mkdir(parents=True, exist_ok=True)
    items, captions = [], []
    for i in range(n_images):
        Image.new("RGB", (36, 36), ((37 * i) % 256, (91 * i) % 256, (13 * i) % 256)).save(root / "images" / f"p{i}.png")
        items.append(Item(f"p{i}", f"p{i}.png", "test"))
        for lang in ("en", "de", "zh"):
            for n in range(per_lang):
                captions.append(Caption(f"p{i}#{lang}#{n}", f"p{i}", lang, f"{lang} photo {i} variant {n} of a coloured square", "human", "test"))
    save_bundle(root, Manifest("big", languages=["en", "de", "zh"]), items, captions)
    (base / "READY").write_text("ok")
    return {"bundle": root, "checkpoints": fixture["checkpoints"], "workspace": base / "ws"}


def test_page_config_stays_small_on_a_world_with_many_captions(tmp_path_factory, server, client):
    import httpx

    small = len(httpx.get(server["url"] + "config", timeout=60).content)  # the 15-image fixture world
    paths = build_big_world(tmp_path_factory.getbasetemp() / "big-world", server["paths"])
    app, world, demo, url = start_server(paths)
    try:
        assert len(world.captions) == 7_200
        config = httpx.get(url + "config", timeout=60)
        assert config.status_code == 200
        size = len(config.content)
        assert size <= 200_000, f"page config is {size:,} bytes"
        assert size - small < 25_000, f"the page grows with the world: {small:,} -> {size:,} bytes"
        # the pickers hold one page of choices; the rest are found by typing
        components = {c["props"].get("elem_id"): c for c in config.json()["components"]}
        assert len(components["caption-pick"]["props"]["choices"]) <= 50 and len(components["ml-instance"]["props"]["choices"]) <= 51
        assert "api_info" not in components["gallery-0"]  # the page never reads it; /info (gradio_client) still has it
    finally:
        demo.close()
    # The API description the client reads is intact: a search still returns its galleries.
    status, summary, *outputs = client.predict("de caption 5", "auto", ALL, 5, api_name="/search")
    assert len([g for g in outputs[: len(outputs) // 2] if g.get("visible")]) == len(ALL)


def test_a_fresh_workspace_serves_search_while_the_training_pairs_are_prepared(server, tmp_path):
    from gradio_client import Client

    paths = {**server["paths"], "workspace": tmp_path / "ws"}  # nothing cached yet
    app, world, demo, url = start_server(paths, defer_captions=True)
    try:
        assert world.pending_training
        config = demo.get_config_file()
        status = next(c for c in config["components"] if c["props"].get("elem_id") == "audit-status")
        assert status["props"]["value"] == ""  # no status is baked into the page: it is read at each load
        fresh = Client(url, verbose=False)
        assert "img5#de#0" in fresh.predict("de caption 5", "auto", ALL, 3, api_name="/search")[0]  # search works at once
        assert "Preparing the training pairs" in fresh.predict("uml", 0, 6, "all", "all", api_name="/audit")[0]
        # The test captions' text states were left for later too: a caption query is encoded on the spot
        # (same answer as from the cache later), and the caption-side views say they are on their way.
        assert world.pending_captions and not world.captions_ready.is_set()
        early = fresh.predict("de caption 5", "auto", ALL, 3, api_name="/search")[1]
        item = world.gallery[0].id
        assert "test captions" in fresh.predict(item, None, ALL, 2, api_name="/image_to_text")[0]
        assert "test captions" in fresh.predict("t2i", "baseline", api_name="/consistency")[0]
        app.finish_background(world)  # what the background thread of app.main runs
        assert not world.pending_captions and world.captions_ready.is_set()
        assert all(m.captions is not None and m.captions.shape[0] == len(world.captions) for m in world.model_list())
        assert fresh.predict("de caption 5", "auto", ALL, 3, api_name="/search")[1] == early
        assert not world.pending_training and "AUROC" in fresh.predict("uml", 0, 6, "all", "all", api_name="/audit")[0]
    finally:
        demo.close()
