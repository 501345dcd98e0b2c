"""Screenshots of the dashboard on the real demo world for the README: start `python app.py` (the
default world and shipped checkpoints), drive it with Playwright + Debian chromium, save PNGs into
docs/screenshots/. Usage: python docs/make_screenshots.py [--port 7871]"""
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7871)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(args.port)], cwd=REPO)
    url = f"http://127.0.0.1:{args.port}/"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator("#query textarea").wait_for()

            def search(text):
                page.locator("#query textarea").fill(text)
                page.locator("#search-btn").click()
                page.locator("#gallery-0 img").first.wait_for(state="visible")
                time.sleep(1.5)

            search("Ein großer roter Kreis links neben einem kleinen blauen Stern")
            page.screenshot(path=str(OUT / "search-german.png"), full_page=True)
            search("一个红色的圆形在一颗蓝色星星的左边")
            page.screenshot(path=str(OUT / "search-chinese.png"), full_page=True)
            page.get_by_role("tab", name="Many languages").click()
            page.get_by_label("Intended image (test instance)").click()
            page.get_by_role("option").nth(3).click()
            time.sleep(2)
            page.get_by_role("button", name="Compare languages").click()
            page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
            time.sleep(2)
            page.screenshot(path=str(OUT / "many-languages.png"), full_page=True)
            for tab, name in (("Consistency", "consistency"), ("Uncertainty audit", "audit"),
                              ("Embedding space", "embedding"), ("Leaderboard", "leaderboard")):
                page.get_by_role("tab", name=tab).click()
                try:
                    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
                except Exception:  # a tab without a plot until the user acts: screenshot it as it is
                    pass
                time.sleep(2)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
