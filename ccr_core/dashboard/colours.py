"""One colour per method family, the same in every chart, from the Okabe-Ito palette (distinguishable
with the common colour-vision deficiencies); a variant of a method (``-noise0.4``, ``-ft``, trained
here) keeps its family's hue, lighter, and is told apart by a dash or bar pattern rather than by a
second colour. Also the chart font size and the colour-blind-safe continuous scales the tabs use."""
from __future__ import annotations

from ccr_core.methods import METHODS, REFERENCE, main_methods, method_sort_key, ordered_methods
from ccr_core.study.plots import FAMILY_COLOURS, OKABE_ITO, family_colour

# The palette and each family's colour are defined once, beside the study's figures (RESULTS.md uses them too).
OTHER_COLOUR = OKABE_ITO["black"]
# What the charts and pickers show before "show variants": the main methods but the floor (drawn as a reference line).
MAIN_METHODS = tuple(n for n in main_methods() if n != REFERENCE)
SEQUENTIAL_SCALE = "Cividis"  # heatmaps: light-dark, readable without telling red from green
CHART_FONT = 15  # px; chart text stays readable on a projector at 1024x768
NOISY_PATTERN = "/"  # bar pattern of a model trained with injected noise
NOISY_DASH = "dash"  # its line style


def family(method: str) -> str:
    """The method family of a registry name or a model name (``uml-noise0.4`` -> ``uml``)."""
    base = method.split(" (", 1)[0]
    if base in METHODS:
        return base
    for suffix in ("-noise", "-ft", "@", "+"):
        head = base.split(suffix, 1)[0]
        if head in METHODS:
            return head
    order = method_sort_key(base)[0]
    return next((f for f in ordered_methods(plugins=False) if method_sort_key(f)[0] == order), base)


def _lighter(hex_colour: str, share: float) -> str:
    """``hex_colour`` mixed with ``share`` of white."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    mix = [round(c + (255 - c) * share) for c in (r, g, b)]
    return "#" + "".join(f"{c:02X}" for c in mix)


def method_colour(method: str, noise: float = 0.0) -> str:
    """The colour of a method (or a model of it): its family's, lighter when trained with noise."""
    base = family_colour(family(method)) or OTHER_COLOUR
    return _lighter(base, 0.35) if noise > 0 else base


def model_style(model) -> dict:
    """Colour, dash and bar pattern of a :class:`~ccr_core.dashboard.models.ModelEntry` (or anything with
    ``method`` and ``noise``)."""
    noisy = float(getattr(model, "noise", 0.0) or 0.0) > 0
    return {"colour": method_colour(model.method, float(getattr(model, "noise", 0.0) or 0.0)),
            "dash": NOISY_DASH if noisy else "solid", "pattern": NOISY_PATTERN if noisy else ""}


def is_main(model) -> bool:
    """Whether a model is one of the main methods' default models (no injected noise, shipped)."""
    return model.method in MAIN_METHODS and not model.noise and getattr(model, "shipped", True)


def main_models(models: list) -> list:
    """The default view: per main method its first shipped noise-free model (display order kept)."""
    seen, out = set(), []
    for m in models:
        if is_main(m) and m.method not in seen:
            seen.add(m.method)
            out.append(m)
    return out


def chart_layout(**overrides) -> dict:
    """Plotly layout settings every chart shares (white template, readable font, legend below)."""
    layout = dict(template="plotly_white", font=dict(size=CHART_FONT), legend=dict(orientation="h", y=-0.25),
                  margin=dict(t=60, l=60, r=20, b=50), hoverlabel=dict(font_size=CHART_FONT))
    layout.update(overrides)
    return layout
