"""Screenshots of the dashboard on the real demo world for the README, at 1024x768 (a classroom
projector): start `python app.py` (the default world and shipped checkpoints), drive it with
Playwright + Debian chromium, save PNGs into docs/screenshots/. Each tab is shot after the action a
person would take there (a search, a lesson step, a lasso in the maps ...).

Usage: python docs/make_screenshots.py [--port 7871] [--world demo-world]"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1024, "height": 768}
SETTLE = 2.0  # seconds for plots and thumbnails to finish drawing before a shot


def wait_for_server(url: str, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the dashboard did not answer at {url} within {seconds:.0f} s")


def take(page) -> None:
    """Every screenshot, in page order."""

    def shot(name: str, full: bool = True) -> None:
        time.sleep(SETTLE)
        page.screenshot(path=str(OUT / f"{name}.png"), full_page=full)

    def tab(name: str) -> None:
        page.get_by_role("tab", name=name).click()

    def search(text: str) -> None:
        page.locator("#query textarea").fill(text)
        page.locator("#search-btn").click()
        page.locator("#search-status").get_by_text("Query").wait_for()
        page.locator("#gallery-0 img").first.wait_for(state="visible")

    page.locator("#query textarea").wait_for()
    # A test caption as the query, so its own image is framed: the first screen, as a visitor sees it.
    page.get_by_text("…or pick a test caption").click()
    page.locator("#caption-find textarea, #caption-find input").first.press_sequentially("Ein großer", delay=20)
    time.sleep(2)
    page.locator("#caption-pick input").click()
    page.get_by_role("option").nth(2).click()
    page.locator("#gallery-0 img").first.wait_for(state="visible")
    page.evaluate("window.scrollTo(0, 0)")
    shot("search-german", full=False)
    page.goto(page.url)  # a fresh page: free text, language detected
    page.locator("#query textarea").wait_for()
    search("一个红色的圆形在一颗蓝色星星的左边")
    page.evaluate("window.scrollTo(0, 0)")
    shot("search-chinese", full=False)

    tab("Start here")
    page.locator("#lesson-step-1").click()
    page.locator("#lesson-gallery img").first.wait_for(state="visible")
    shot("start-here")
    page.locator("#lesson-step-4").click()
    page.locator("#lesson-text").get_by_text("UML flags a bad pair").first.wait_for()
    shot("start-here-uml")

    tab("Languages")
    page.locator("#ml-plot .js-plotly-plot").wait_for()
    shot("many-languages")

    tab("Consistency")
    page.locator("#cons-hist .js-plotly-plot").wait_for()
    page.locator("#cons-worst [role=gridcell]").locator("visible=true").first.click()
    page.locator("#cons-heat .js-plotly-plot").wait_for()
    shot("consistency")

    tab("Audit")
    page.locator("#audit-hist .js-plotly-plot").wait_for(timeout=300_000)
    shot("audit")

    tab("Maps")
    try:  # the default UMAP maps, once the app's warm-up has cached them
        page.locator("#proj-a .js-plotly-plot").wait_for(timeout=30_000)
    except Exception:  # noqa: BLE001 -- not cached yet: draw PCA maps (a second) instead of waiting for UMAP
        page.locator("#proj-algo").get_by_text("PCA").click()
        page.locator("#proj-btn").click()
        page.locator("#proj-a .js-plotly-plot").wait_for()
    plot = page.locator("#proj-a .js-plotly-plot")
    plot.scroll_into_view_if_needed()
    page.wait_for_function("() => { const g = document.querySelector('#proj-a .js-plotly-plot'); return g && g.__ccrEv; }")
    box = page.locator("#proj-a .nsewdrag").first.bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.40 * w, y + 0.40 * h)
    page.mouse.down()
    for fx, fy in ((0.55, 0.40), (0.55, 0.55), (0.40, 0.55), (0.40, 0.41)):  # a small lasso in the middle of the left map
        page.mouse.move(x + fx * w, y + fy * h, steps=6)
    page.mouse.up()
    page.locator("#proj-sel-status").get_by_text("selected").wait_for()
    page.locator("#proj-grid img").first.wait_for(state="visible")
    page.evaluate("window.scrollTo(0, 0)")
    shot("embedding")

    # Error analysis, as docs/dashboard.md walks through it: the finder's disagreement filter, a row's instance view,
    # a map coloured by one model's rank.
    def choose(elem_id: str, option: str) -> None:
        page.locator(f"#{elem_id} input").click()
        page.get_by_role("option", name=option, exact=True).locator("visible=true").first.click()

    tab("Finder")
    page.locator("#find-status").get_by_text("rows").first.wait_for()
    choose("find-lang", "German (de)")
    choose("find-a-model", "nrccr")
    choose("find-b-model", "baseline")
    page.locator("#find-btn").click()
    page.locator("#find-status").get_by_text("match").first.wait_for()
    page.evaluate("window.scrollTo(0, 0)")
    shot("finder-disagreement", full=False)
    rows = page.locator("#find-table [role=gridcell]").locator("visible=true")
    if rows.count():
        rows.first.click()
        page.locator("#inst-ranks .ccr-inst-tile img").first.wait_for(state="visible")
        page.evaluate("window.scrollTo(0, 0)")
        shot("instance", full=False)

    page.goto(page.url.split("?")[0])  # a fresh page: no selection ringed from the lasso above
    page.locator("#query textarea").wait_for()
    tab("Maps")
    page.locator("#proj-a .js-plotly-plot").wait_for(timeout=120_000)
    choose("proj-colour", "rank by nrccr")
    page.wait_for_function("""() => { const g = document.querySelector('#proj-a .js-plotly-plot');
        return g && g.data.some(t => t.marker && t.marker.showscale); }""", timeout=120_000)
    page.locator("#proj-a .js-plotly-plot").scroll_into_view_if_needed()
    shot("map-by-rank", full=False)

    tab("Leaderboard")
    page.locator("#lb-ranking-plot .js-plotly-plot").wait_for()
    shot("leaderboard")

    tab("Experiment")
    page.locator("#ex-plan").get_by_text("A run will").wait_for()
    shot("experiment")

    tab("About")
    page.locator("#about").get_by_role("heading", name="In plain words").wait_for()
    shot("about", full=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7871)
    parser.add_argument("--world", default="demo-world")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(args.port), "--world", args.world], cwd=REPO)
    url = f"http://127.0.0.1:{args.port}/"
    try:
        wait_for_server(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=ARGS)
            page = browser.new_page(viewport=VIEWPORT, locale="en-GB")
            page.set_default_timeout(90_000)
            page.goto(url)
            take(page)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
