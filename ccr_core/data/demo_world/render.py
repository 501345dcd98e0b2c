"""Deterministic PIL drawing of demo-world scenes: backgrounds, shapes, still pictures and clip frames.

Shapes are drawn at twice the size and reduced with a box filter, which smooths the edges while
leaving every interior pixel exactly the object's colour (tests sample those pixels).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .scene import COLOUR_RGB, Scene, SceneObject

SUPERSAMPLE = 2
PLAIN = {"white": (255, 255, 255), "grey": (150, 150, 150), "black": (15, 15, 15)}
BACKGROUNDS_SEED = {"stripes": 1, "grass": 2, "sky": 3, "sea": 4}  # textures depend on these only
STRIPE_PALETTES = (((236, 226, 200), (250, 244, 230)), ((200, 215, 232), (232, 238, 246)))


def _unit_polygon(shape: str) -> list[tuple[float, float]] | None:
    """Outline of a shape that fits the unit circle, y pointing down; None for circle and ring."""
    if shape == "square":
        h = 0.72
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        return [(math.cos(a), math.sin(a)) for a in (math.radians(d) for d in (-90, 30, 150))]
    if shape == "star":
        points = []
        for k in range(10):
            radius = 1.0 if k % 2 == 0 else 0.45
            a = math.radians(-90 + 36 * k)
            points.append((radius * math.cos(a), radius * math.sin(a)))
        return points
    if shape == "heart":
        points = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            points.append((x / 16.5, (y - 2.5) / 16.5))  # y spans -12..17: centre it
        return points
    if shape == "cross":
        w, l = 0.32, 0.95
        return [(-w, -l), (w, -l), (w, -w), (l, -w), (l, w), (w, w), (w, l), (-w, l), (-w, w), (-l, w), (-l, -w), (-w, -w)]
    if shape == "hexagon":
        return [(math.cos(math.radians(60 * k)), math.sin(math.radians(60 * k))) for k in range(6)]
    if shape == "diamond":
        return [(0, -1), (0.65, 0), (0, 1), (-0.65, 0)]
    return None


def draw_object(draw: ImageDraw.ImageDraw, shape: str, colour: str, x: float, y: float, r: float, angle: float, scale: float) -> None:
    """Draw one shape centred at (x, y) with radius r (image pixels) on a canvas ``scale`` times larger."""
    fill = COLOUR_RGB[colour]
    cx, cy, cr = x * scale, y * scale, r * scale
    if shape == "circle":
        draw.ellipse((cx - 0.95 * cr, cy - 0.95 * cr, cx + 0.95 * cr, cy + 0.95 * cr), fill=fill)
        return
    if shape == "ring":
        draw.ellipse((cx - 0.95 * cr, cy - 0.95 * cr, cx + 0.95 * cr, cy + 0.95 * cr), outline=fill, width=max(2, round(0.42 * cr)))
        return
    a = math.radians(-angle)  # anticlockwise on screen, where y points down
    cos_a, sin_a = math.cos(a), math.sin(a)
    points = [(cx + cr * (px * cos_a - py * sin_a), cy + cr * (px * sin_a + py * cos_a)) for px, py in _unit_polygon(shape)]
    draw.polygon(points, fill=fill)


@lru_cache(maxsize=64)
def _background_array(name: str, variant: int, size: int) -> np.ndarray:
    """The background as an (H, W, 3) uint8 array; textures are seeded by (name, variant) only."""
    if name in PLAIN:
        return np.full((size, size, 3), PLAIN[name], dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (H, W) in [0, 1)
    if name == "stripes":
        light, dark = (np.array(c, dtype=np.float32) for c in STRIPE_PALETTES[(variant // 4) % 2])
        coord = (yy, xx, (xx + yy) / math.sqrt(2), (xx - yy + 1) / math.sqrt(2))[variant % 4]
        band = (np.floor(coord * 10) % 2)[..., None]  # (H, W, 1): ten stripes across the picture
        return (light * band + dark * (1 - band)).astype(np.uint8)
    rng = np.random.default_rng([7, BACKGROUNDS_SEED[name], variant % 4])
    if name == "sky":
        top, bottom = np.array((90, 160, 230), np.float32), np.array((175, 215, 245), np.float32)
        return (top + (bottom - top) * yy[..., None]).astype(np.uint8)
    if name == "grass":
        streaks = rng.normal(0, 1, size=(-(-size // 6), size)).astype(np.float32)  # short vertical blades
        streaks = np.repeat(streaks, 6, axis=0)[:size]
        shade = np.clip(1.0 + 0.18 * streaks, 0.6, 1.4)[..., None]
        base = np.array((70, 140, 55), np.float32) * (0.9 + 0.2 * yy[..., None])
        return np.clip(base * shade, 0, 255).astype(np.uint8)
    if name == "sea":
        phase = rng.uniform(0, 2 * math.pi)
        wave = (yy * 9 + 0.35 * np.sin(xx * 2 * math.pi * 3 + phase)) % 1.0
        crest = (wave < 0.18)[..., None]
        deep, light = np.array((20, 85, 150), np.float32), np.array((70, 140, 200), np.float32)
        return np.where(crest, light, deep).astype(np.uint8)
    raise ValueError(f"unknown background {name!r}")



def render_frame(scene: Scene, objects: list[tuple[str, str, float, float, float, float]]) -> Image.Image:
    """Draw (shape, colour, x, y, r, angle) objects on the scene's background."""
    big = scene.canvas * SUPERSAMPLE
    image = Image.fromarray(_background_array(scene.background, scene.variant, big).copy())
    draw = ImageDraw.Draw(image)
    for shape, colour, x, y, r, angle in objects:
        draw_object(draw, shape, colour, x, y, r, angle, SUPERSAMPLE)
    return image.reduce(SUPERSAMPLE)


def render_image(scene: Scene) -> Image.Image:
    return render_frame(scene, [(o.shape, o.colour, o.x, o.y, o.r, o.angle) for o in scene.objects])


def render_clip(scene: Scene) -> list[Image.Image]:
    obj: SceneObject = scene.first
    return [render_frame(scene, [(obj.shape, obj.colour, x, y, r, angle)]) for x, y, r, angle in scene.frames]


def save_png(image: Image.Image, path: Path) -> None:
    """PNG with fixed settings (Pillow writes no timestamp), so the bytes depend only on the pixels."""
    image.save(path, format="PNG", compress_level=3)


def render_to(task: tuple[Scene, str]) -> None:
    """Render one scene to a PNG file (an image) or a folder of 000.png, 001.png ... (a clip)."""
    scene, target = task
    target = Path(target)
    if scene.layout == "video":
        target.mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(render_clip(scene)):
            save_png(frame, target / f"{index:03d}.png")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        save_png(render_image(scene), target)
