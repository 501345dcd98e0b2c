"""The demo world: a procedurally generated, fully offline multilingual image- and video-caption
dataset in the bundle format, with simulated machine translation and labelled noise (CCR setting).

``build_demo_world(out_dir, seed=0)`` writes it; the submodules say how: ``scene`` samples what is in
a picture, ``render`` draws it, ``grammar`` says it in six languages, ``mt`` simulates translation.
"""
from .build import DemoWorldConfig, build_demo_world
from .grammar import BACKGROUND_WORDS, COLOUR_WORDS, LANGUAGES, SHAPE_WORDS, SIZE_WORDS
from .scene import BACKGROUNDS, COLOURS, SHAPES

__all__ = [
    "build_demo_world", "DemoWorldConfig", "COLOUR_WORDS", "SHAPE_WORDS", "SIZE_WORDS", "BACKGROUND_WORDS",
    "LANGUAGES", "SHAPES", "COLOURS", "BACKGROUNDS",
]
