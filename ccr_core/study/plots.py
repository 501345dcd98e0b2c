"""The grid's figures: target SumR against the noise rate, one line per method (mean ± 95% interval over runs),
rendered to docs/protocol-<world>.png by headless Chromium."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

from ccr_core.io import read_json
from ccr_core.methods import METHODS, REFERENCE, method_sort_key, ordered_methods
from ccr_core.study import records
from ccr_core.study.grid import PROTOCOL
from ccr_core.study.stats import cells

PLOT_DIR = Path(__file__).resolve().parents[2] / "docs"
# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "grey": "#999999"}


def family_colour(method: str) -> str | None:
    """A registered method's chart colour (its class's ``colour``, a name in :data:`OKABE_ITO`); None for a name
    that is not registered or a method without one."""
    colour = METHODS.get(method).colour if method in METHODS else None
    if colour is not None and colour not in OKABE_ITO:
        raise ValueError(f"method {method!r}: colour {colour!r} is not one of {sorted(OKABE_ITO)}")
    return OKABE_ITO[colour] if colour else None


# Each method family's colour, from the methods registered at import (a later --plugin: family_colour).
FAMILY_COLOURS = {name: family_colour(name) for name in ordered_methods() if family_colour(name)}


def noise_figure(world: str, results: list[dict], setting: str = "common"):
    """Plotly figure: target SumR (mean ± 95% interval over runs) against the noise rate, one line per method."""
    import plotly.graph_objects as go  # plotly is needed for figures only

    table = cells(records.for_tables(results, world))
    fig = go.Figure()
    for method in sorted({k[1] for k in table}, key=method_sort_key):
        keys = sorted(k for k in table if k[1] == method and (k[0] == setting or method == REFERENCE))
        if not keys:
            continue
        stats = [table[k]["stats"].get("target SumR", (float("nan"), float("nan"))) for k in keys]
        fig.add_trace(go.Scatter(x=[k[2] for k in keys], y=[s[0] for s in stats], name=method, mode="lines+markers",
                                 line={"dash": "dash" if method == REFERENCE else "solid", "color": family_colour(method)},
                                 error_y={"type": "data", "array": [0 if math.isnan(s[1]) else s[1] for s in stats], "visible": True}))
    fig.update_layout(title=f"{world}, {setting} setting: target-language SumR under noisy correspondence (mean ± 95% CI over runs)",
                      xaxis_title="injected noise rate", yaxis_title="target SumR (mean over non-English languages)",
                      width=900, height=520, template="plotly_white", font={"size": 15})
    return fig


def curve_figure(world: str, runs: list[dict], steps: int | None = None):
    """Plotly figure: validation target SumR against optimiser steps, one line per run (method in its family colour;
    dashed: 40% noise; one panel per setting), and the grid's budget as a vertical line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    settings = sorted({r["setting"] for r in runs if r.get("curve")})
    fig = make_subplots(rows=1, cols=max(len(settings), 1), subplot_titles=[f"{s} setting" for s in settings], shared_yaxes=True)
    shown = set()
    for col, setting in enumerate(settings, 1):
        for r in sorted((r for r in runs if r["setting"] == setting and r.get("curve")), key=lambda r: (method_sort_key(r["method"]), r["noise_rate"])):
            points = records.curve_values(r)
            name = r["method"] + (f" @ {r['noise_rate']:g} noise" if r["noise_rate"] else "")
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=name, mode="lines+markers",
                                     legendgroup=name, showlegend=name not in shown, marker={"size": 4},
                                     line={"color": FAMILY_COLOURS.get(r["method"]), "dash": "dash" if r["noise_rate"] else "solid"}),
                          row=1, col=col)
            shown.add(name)
        if steps:
            fig.add_vline(x=steps, line={"color": "#444", "dash": "dot"}, row=1, col=col)
    fig.update_layout(title=f"{world}: validation target SumR during training (dotted: the grid's budget)",
                      width=1100, height=520, template="plotly_white", font={"size": 14})
    fig.update_xaxes(title_text="optimiser steps")
    fig.update_yaxes(title_text="validation target SumR", col=1)
    return fig


def _figures(results_dir: Path, worlds):
    """``(png name, figure)`` of every figure the results have: the noise figure and the pilot's curves per world."""
    for world in worlds:
        path = results_dir / f"protocol-{world}.json"
        if path.exists():
            yield f"protocol-{world}.png", noise_figure(world, read_json(path))
        pilot = results_dir / f"pilot-{world}.json"
        if pilot.exists():
            yield f"pilot-{world}.png", curve_figure(world, read_json(pilot), PROTOCOL[world].steps)


def write_plots(results_dir: Path, worlds) -> list[Path]:
    """docs/protocol-<world>.png and docs/pilot-<world>.png for every world with records: plotly figures rendered by chromium."""
    from playwright.sync_api import sync_playwright  # a browser is needed for figures only

    out = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1140, "height": 560})
        for name, figure in _figures(results_dir, worlds):
            html = Path(tmp) / f"{name}.html"
            figure.write_html(html, include_plotlyjs=True, full_html=True)
            page.goto(html.as_uri())
            page.wait_for_selector(".main-svg")
            target = PLOT_DIR / name
            page.locator(".plotly-graph-div").screenshot(path=str(target))
            out.append(target)
        browser.close()
    return out
