"""The dashboard in a real browser (Playwright + Debian chromium, headless): search in German and in
Chinese, a gallery per selected method, image -> text by clicking a result, the many-languages view,
and every tab's plot or table rendering. Screenshots go to tests/screenshots/ (gitignored), and also
to docs/screenshots/ when CCR_SAVE_SCREENSHOTS=1 (for the README)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_app_api import start_server
from test_dashboard_logic import build_fixture_world

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "tests" / "screenshots"
DOC_SHOTS = REPO / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT = 30_000  # ms; the machine is shared


@pytest.fixture(scope="module")
def page(chromium, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    paths = build_fixture_world(tmp_path_factory.getbasetemp() / "dashboard-world")
    _, world, demo, url = start_server(paths)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT)
        pg.goto(url)
        pg.get_by_text(f"CCR Lab · {world.name}").first.wait_for()
        yield pg
        browser.close()
    demo.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("CCR_SAVE_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOC_SHOTS / path.name)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def wait_plot(page, elem_id: str) -> None:
    page.locator(f"#{elem_id} .js-plotly-plot").first.wait_for(state="visible")


def visible_text(page, elem_id: str, text: str) -> None:
    # Gradio's dataframe keeps hidden copies of its cells (for measuring); wait for a shown one.
    page.locator(f"#{elem_id}").get_by_text(text).locator("visible=true").first.wait_for()


def search(page, text: str) -> None:
    page.locator("#query textarea").fill(text)
    page.locator("#search-btn").click()


def test_search_in_german_shows_a_gallery_per_method(page):
    search(page, "de caption 5")
    page.locator("#search-status").get_by_text("German").wait_for()
    for i in range(3):  # baseline, uml, one_to_k
        page.locator(f"#gallery-{i} img").first.wait_for(state="visible")
        assert page.locator(f"#gallery-{i} img").count() >= 8
    assert page.locator("#gallery-3").is_hidden()
    assert page.get_by_text("ground truth at rank").count() >= 1
    shot(page, "search-german")


def test_search_in_chinese_and_click_a_result(page):
    search(page, "一个彩色方块，编号7")
    page.locator("#search-status").get_by_text("Chinese").wait_for()
    page.locator("#gallery-0 img").first.wait_for(state="visible")
    shot(page, "search-chinese")
    page.locator("#gallery-0 img").first.click()
    page.locator("#i2t-status").get_by_text("Closest captions").wait_for()
    assert page.locator("#i2t-table").get_by_text("彩色方块").count() >= 1
    shot(page, "image-to-text")


def test_many_languages_view(page):
    open_tab(page, "Many languages")
    page.locator("#ml-text-en textarea").fill("en caption 8")
    page.locator("#ml-text-de textarea").fill("de caption 8")
    page.locator("#ml-text-zh textarea").fill("一个彩色方块，编号8")
    page.locator("#ml-btn").click()
    wait_plot(page, "ml-plot")
    page.locator("#ml-status").get_by_text("3 languages").wait_for()
    assert page.locator("#ml-table").get_by_text("spread").count() >= 1
    shot(page, "many-languages")


def test_consistency_tab(page):
    open_tab(page, "Consistency")
    wait_plot(page, "cons-hist")
    visible_text(page, "cons-summary", "baseline")
    page.locator("#cons-worst [role=gridcell]").locator("visible=true").first.click()
    wait_plot(page, "cons-heat")
    shot(page, "consistency")


def test_audit_tab(page):
    open_tab(page, "Uncertainty audit")
    wait_plot(page, "audit-hist")
    wait_plot(page, "audit-curves")
    page.locator("#audit-status").get_by_text("AUROC").first.wait_for()
    shot(page, "audit")


def test_embedding_tab(page):
    open_tab(page, "Embedding space")
    page.locator("#proj-algo").get_by_text("PCA").click()
    page.locator("#proj-btn").click()
    wait_plot(page, "proj-a")
    wait_plot(page, "proj-b")
    shot(page, "embedding-space")


def test_leaderboard_tab(page):
    open_tab(page, "Leaderboard")
    wait_plot(page, "lb-ranking-plot")
    wait_plot(page, "lb-mrv")
    visible_text(page, "lb-ranking", "one_to_k")
    shot(page, "leaderboard")


def test_experiment_and_about_tabs(page):
    open_tab(page, "Experiment")
    page.locator("#ex-start").wait_for(state="visible")
    shot(page, "experiment")
    open_tab(page, "About")
    page.locator("#about").get_by_text("KDD 2024").first.wait_for()
    assert page.locator("#about .katex").count() > 0  # formulas rendered, not raw LaTeX
    shot(page, "about")


def test_bad_input_shows_a_message_not_an_error_page(page):
    open_tab(page, "Search")
    search(page, "   ")
    page.locator("#search-status").get_by_text("empty").wait_for()


def platform_fonts(page, selector: str) -> dict[str, int]:
    """The fonts Chromium really drew a node's text with (family -> glyphs), via the DevTools protocol."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, f"no element {selector}"
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cdp.detach()
    return {f["familyName"]: f["glyphCount"] for f in fonts}


def test_enter_searches_and_czech_renders_in_the_declared_latin_font(page):
    open_tab(page, "Search")
    box = page.locator("#query textarea")
    box.fill("Muž v modré košili")
    box.press("Shift+Enter")  # adds a line, does not search
    assert box.input_value() == "Muž v modré košili\n"
    box.press("Backspace")
    box.press("Enter")  # searches
    page.locator("#search-status").get_by_text("Czech (cs, detected)").wait_for()
    page.locator("#gallery-0 img").first.wait_for(state="visible")
    family = page.locator("#search-status p").first.evaluate("el => getComputedStyle(el).fontFamily")
    assert family.startswith('"Noto Sans"'), family
    drawn = platform_fonts(page, "#search-status p")
    assert "Noto Sans" in drawn and not any("CJK" in f for f in drawn), drawn  # "Muž" with its own Latin glyphs
    shot(page, "search-czech")


def test_search_opens_with_a_hint_and_one_click_examples(page):
    page.goto(page.url)  # a fresh visit
    page.locator("#search-status").get_by_text("New here?").wait_for()
    example = page.locator("#examples button").first
    label = example.inner_text()
    example.click()
    page.locator("#gallery-0 img").first.wait_for(state="visible")
    assert page.locator("#query textarea").input_value()[:20] in label
    assert page.locator("#i2t-table").get_by_text("own caption").count() >= 1  # image -> text opens filled, real headers


def test_caption_picker_searches_on_the_server(page):
    open_tab(page, "Search")
    page.get_by_text("…or pick a test caption").click()  # behind an accordion: the galleries come first
    page.locator("#caption-find textarea, #caption-find input").first.press_sequentially("编号14", delay=30)
    page.wait_for_timeout(1500)  # the matches come from the server
    page.locator("#caption-pick input").click()
    options = page.get_by_role("option")
    options.first.wait_for()
    assert options.count() == 1  # only the match is in the page
    options.filter(has_text="编号14").first.click()
    page.locator("#search-status").get_by_text("img14#zh#0").wait_for()


def test_many_languages_opens_drawn_and_adds_a_language(page):
    open_tab(page, "Many languages")
    wait_plot(page, "ml-plot")  # drawn before any click
    page.locator("#ml-status").get_by_text("3 languages").wait_for()
    assert page.locator("#ml-text-zh textarea").input_value()
    page.locator("#ml-add").click()
    page.locator("#ml-extra-0").wait_for(state="visible")
    page.locator("#ml-extra-lang-0 input").click()
    page.locator("#ml-extra-lang-0 input").fill("Spanish")
    page.get_by_role("option", name="Spanish (es)").click()
    page.locator("#ml-extra-text-0 textarea").fill("un cuadrado de colores")
    page.locator("#ml-extra-text-0 textarea").press("Enter")
    page.locator("#ml-status").get_by_text("4 languages").wait_for()
    visible_text(page, "ml-table", "rank es")
    shot(page, "many-languages-added")


def test_experiment_says_what_a_run_will_do(page):
    open_tab(page, "Experiment")
    page.locator("#ex-plan").get_by_text("A run will").wait_for()
