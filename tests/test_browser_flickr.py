"""The Start here lesson on real photos (issue 30, item 6: "every lesson step on both worlds shows its target picture
whole"), in Chromium at 1024x768: real photos (whatever their size: the mirror's are 224 x 224, upstream's vary, and the
check compares each rendered box with its own picture's aspect ratio), real captions and real machine translations.

The world is the real flickr8k-ml bundle built from ``../shared/data`` and cut to a few hundred photos (the shipped
flickr8k-ml models, real captions in five languages, real machine translations with their English sources), so the
app's background work takes seconds instead of minutes; the lesson's steps choose their instances from the ranks
of this gallery, as they do on the whole one."""
from __future__ import annotations

import pytest

from conftest import cut_bundle
from test_browser import browser, walk_the_lesson  # noqa: F401  (fixture: one browser for this module)

pytestmark = [pytest.mark.browser, pytest.mark.shared_data]

PER_SPLIT = {"train": 60, "val": 10, "test": 60}  # photos kept per split


@pytest.fixture(scope="module")
def flickr_server(flickr8k_ml_built, tmp_path_factory):
    from test_app_api import start_server

    from ccr_core.data.bundle import load_bundle
    from ccr_core.paths import CHECKPOINTS_DIR

    root = tmp_path_factory.mktemp("flickr-lesson")
    full = load_bundle(flickr8k_ml_built[0])
    bundle = cut_bundle(full, root / "flickr8k-ml", PER_SPLIT)
    app, world, demo, url = start_server({"bundle": bundle, "checkpoints": CHECKPOINTS_DIR / "flickr8k-ml", "workspace": root / "ws"})
    app.finish_background(world)  # what the app does after the page is up: captions, training pairs, the audit's scores
    yield {"world": world, "url": url}
    demo.close()


def test_the_cut_world_is_real_photos_of_every_language(flickr_server, shared_data):
    world = flickr_server["world"]
    assert world.bundle.manifest.name == "flickr8k-ml" and len(world.gallery) == PER_SPLIT["test"]
    assert {"en", "zh"} <= set(world.languages)
    assert world.bundle.image_path(world.gallery[0]).resolve().is_relative_to(shared_data.resolve())  # the real photos, referenced


def test_every_lesson_step_on_real_photos_shows_its_picture_whole(browser, flickr_server):  # noqa: F811
    walk_the_lesson(browser, flickr_server, "start-here-flickr")
