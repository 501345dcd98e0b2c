"""Scene sampling for the demo world: which objects a picture or clip holds, where, on what background.

A scene is plain data (JSON-serialisable); ``render.py`` draws it and ``grammar/`` describes it, so a
caption can always be checked against the objects that were drawn.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "ring", "hexagon", "diamond")
COLOUR_RGB = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (250, 215, 20),
    "green": (30, 150, 50),
    "blue": (30, 70, 220),
    "light_blue": (120, 200, 250),
    "purple": (135, 50, 185),
    "pink": (250, 130, 190),
    "brown": (125, 75, 30),
    "white": (255, 255, 255),
    "black": (20, 20, 20),
}
COLOURS = tuple(COLOUR_RGB)
SIZES = ("small", "large")
BACKGROUNDS = ("white", "grey", "black", "stripes", "grass", "sky", "sea")
# Object colours that would not stand out from a background; they are never drawn on it.
CLASHES = {
    "white": {"white"},
    "grey": set(),
    "black": {"black", "brown"},
    "stripes": {"white"},
    "grass": {"green"},
    "sky": {"light_blue"},
    "sea": {"blue", "light_blue"},
}
REGIONS = ("left", "right", "top", "bottom", "centre")
RELATIONS = ("left_of", "right_of", "above", "below")
MOTIONS = ("left", "right", "up", "down", "grow", "shrink", "rotate", "bounce")
LAYOUT_WEIGHTS = {"single": 0.25, "pair": 0.35, "group": 0.15, "group_pair": 0.25}
# Shapes that look the same at every angle, so a clip of them spinning would show nothing.
ROTATION_INVARIANT = {"circle", "ring"}
# Shapes that are drawn slightly tilted in still images (a tilted square would read as a diamond).
TILTABLE = {"triangle", "star", "heart", "cross", "hexagon"}

# Radii in pixels of a 128-pixel image (scaled for other sizes): small and large never overlap.
IMAGE_RADII = {"small": (12, 15), "large": (22, 25)}
# Radii in pixels of a 96-pixel clip; grow/shrink clips go between the two ends of GROW_RADII.
VIDEO_RADII = {"small": (11, 13), "large": (17, 19)}
GROW_RADII = (8, 26)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str  # small | large (for grow/shrink clips: the size in the first frame)
    x: float  # centre, pixels of the saved image
    y: float
    r: float  # radius of the circle the shape fits in
    angle: float = 0.0  # degrees, anticlockwise

    def probe(self) -> tuple[int, int]:
        """A pixel surely inside the drawn shape (a ring's centre is a hole, so probe its band)."""
        if self.shape == "ring":
            return round(self.x + 0.74 * self.r), round(self.y)
        return round(self.x), round(self.y)


@dataclass(frozen=True)
class Scene:
    layout: str  # single | pair | group | group_pair | video
    background: str
    variant: int  # which texture of the background (stripe direction, grass pattern ...)
    canvas: int  # width = height in pixels
    objects: tuple[SceneObject, ...]
    count: int = 1  # objects[:count] are the first entity: same shape, colour and size
    region: str | None = None  # single: where the object is
    relation: str | None = None  # pair / group_pair: first entity relative to objects[count]
    motion: str | None = None  # video: what the object does
    frames: tuple[tuple[float, float, float, float], ...] = field(default=())  # video: (x, y, r, angle) per frame

    @property
    def first(self) -> SceneObject:
        return self.objects[0]

    @property
    def second(self) -> SceneObject | None:
        return self.objects[self.count] if len(self.objects) > self.count else None

    def to_json(self) -> dict:
        data = asdict(self)
        data["objects"] = [{**asdict(o), "probe": list(o.probe())} for o in self.objects]
        data["frames"] = [list(f) for f in self.frames]
        return data


def _radius(rng: random.Random, size: str, radii: dict, scale: float) -> float:
    low, high = radii[size]
    return round(rng.uniform(low, high) * scale, 1)


def _pick_look(rng: random.Random, allowed: list[str], avoid: tuple[str, str] | None = None) -> tuple[str, str]:
    """A (shape, colour) pair, different from ``avoid`` so two entities can always be told apart."""
    while True:
        look = (rng.choice(SHAPES), rng.choice(allowed))
        if look != avoid:
            return look


def _jitter(rng: random.Random, point: tuple[float, float], amount: float, scale: float) -> tuple[float, float]:
    return (
        round((point[0] + rng.uniform(-amount, amount)) * scale, 1),
        round((point[1] + rng.uniform(-amount, amount)) * scale, 1),
    )


def _angle(rng: random.Random, shape: str) -> float:
    return round(rng.uniform(-12, 12), 1) if shape in TILTABLE else 0.0


def _mirror(points: list[tuple[float, float]], relation: str) -> list[tuple[float, float]]:
    """Anchor points are given for left_of (first entity on the left); turn them for other relations."""
    if relation == "left_of":
        return points
    if relation == "right_of":
        return [(128 - x, y) for x, y in points]
    if relation == "above":
        return [(y, x) for x, y in points]
    return [(y, 128 - x) for x, y in points]  # below


# Anchor points on a 128-pixel canvas; with the radii above and the jitter below nothing overlaps.
REGION_ANCHORS = {"left": (34, 64), "right": (94, 64), "top": (64, 34), "bottom": (64, 94), "centre": (64, 64)}
PAIR_ANCHORS = [(34, 64), (94, 64)]
GROUP_ANCHORS = {
    2: [(34, 64), (94, 64)],
    3: [(34, 36), (94, 36), (64, 94)],
    4: [(34, 34), (94, 34), (34, 94), (94, 94)],
}
GROUP_PAIR_ANCHORS = [(32, 34), (32, 94), (94, 64)]  # two of the group on the left, the other right


def sample_image_scene(rng: random.Random, canvas: int = 128) -> Scene:
    """One still picture: 1 to 4 objects in one of four layouts on a random background."""
    scale = canvas / 128
    layout = rng.choices(list(LAYOUT_WEIGHTS), weights=list(LAYOUT_WEIGHTS.values()))[0]
    background = rng.choice(BACKGROUNDS)
    variant = rng.randrange(8)
    allowed = [c for c in COLOURS if c not in CLASHES[background]]
    shape, colour = _pick_look(rng, allowed)
    size = rng.choice(SIZES)

    def make(shape, colour, size, point):
        x, y = point
        return SceneObject(shape, colour, size, x, y, _radius(rng, size, IMAGE_RADII, scale), _angle(rng, shape))

    if layout == "single":
        region = rng.choice(REGIONS)
        obj = make(shape, colour, size, _jitter(rng, REGION_ANCHORS[region], 4, scale))
        return Scene(layout, background, variant, canvas, (obj,), region=region)
    if layout == "group":
        count = rng.choices((2, 3, 4), weights=(0.5, 0.3, 0.2))[0]
        anchors = GROUP_ANCHORS[count]
        if count == 2 and rng.random() < 0.5:
            anchors = [(y, x) for x, y in anchors]  # a column instead of a row
        if count == 3 and rng.random() < 0.5:
            anchors = [(x, 128 - y) for x, y in anchors]  # the triangle upside down
        objs = tuple(make(shape, colour, size, _jitter(rng, a, 2, scale)) for a in anchors)
        return Scene(layout, background, variant, canvas, objs, count=count)
    relation = rng.choice(RELATIONS)
    other_shape, other_colour = _pick_look(rng, allowed, avoid=(shape, colour))
    other_size = rng.choice(SIZES)
    if layout == "pair":
        a, b = _mirror(PAIR_ANCHORS, relation)
        first = make(shape, colour, size, _jitter(rng, a, 3, scale))
        second = make(other_shape, other_colour, other_size, _jitter(rng, b, 3, scale))
        return Scene(layout, background, variant, canvas, (first, second), relation=relation)
    a1, a2, b = _mirror(GROUP_PAIR_ANCHORS, relation)
    objs = (
        make(shape, colour, size, _jitter(rng, a1, 2, scale)),
        make(shape, colour, size, _jitter(rng, a2, 2, scale)),
        make(other_shape, other_colour, other_size, _jitter(rng, b, 2, scale)),
    )
    return Scene("group_pair", background, variant, canvas, objs, count=2, relation=relation)


def sample_video_scene(rng: random.Random, canvas: int = 96, n_frames: int = 8) -> Scene:
    """One short clip: a single object that moves, grows, shrinks, spins or bounces."""
    scale = canvas / 96
    background = rng.choice(BACKGROUNDS)
    variant = rng.randrange(8)
    allowed = [c for c in COLOURS if c not in CLASHES[background]]
    motion = rng.choice(MOTIONS)
    shape, colour = _pick_look(rng, allowed)
    while motion == "rotate" and shape in ROTATION_INVARIANT:
        shape = rng.choice(SHAPES)
    size = rng.choice(SIZES)
    r = _radius(rng, size, VIDEO_RADII, scale)
    steps = [t / (n_frames - 1) for t in range(n_frames)]
    frames = []
    if motion in ("left", "right", "up", "down"):
        start, end = 72 * scale, 24 * scale
        if motion in ("right", "down"):
            start, end = end, start
        across = round((48 + rng.uniform(-8, 8)) * scale, 1)
        for s in steps:
            along = round(start + (end - start) * s, 1)
            frames.append((along, across, r, 0.0) if motion in ("left", "right") else (across, along, r, 0.0))
    else:
        x, y = _jitter(rng, (48, 48), 6, scale)
        if motion in ("grow", "shrink"):
            low, high = (g * scale for g in GROW_RADII)
            if motion == "shrink":
                low, high = high, low
            size = "small" if motion == "grow" else "large"
            frames = [(x, y, round(low + (high - low) * s, 1), 0.0) for s in steps]
        elif motion == "rotate":
            start = _angle(rng, shape)
            frames = [(x, y, r, round(start + 12.0 * t, 1)) for t in range(n_frames)]
        else:  # bounce: two hops up from the floor and back
            floor = 70 * scale
            frames = [(x, round(floor - 38 * scale * abs(math.sin(2 * math.pi * s)), 1), r, 0.0) for s in steps]
    x0, y0, r0, a0 = frames[0]
    obj = SceneObject(shape, colour, size, x0, y0, r0, a0)
    return Scene("video", background, variant, canvas, (obj,), motion=motion, frames=tuple(frames))
