"""``python -m ccr_core.setup_demo --world W --full`` (``make prepare``): a world's dashboard caches computed before the
app starts, so the app opens with nothing left for its background passes (issue 30, item 8)."""
from __future__ import annotations

import shutil

import pytest

from ccr_core import setup_demo
from ccr_core.dashboard.world import load_world
from test_dashboard_logic import build_fixture_world


@pytest.fixture
def fresh_world(tmp_path, tmp_path_factory, monkeypatch):
    """The dashboard fixture world's bundle and checkpoints, beside an empty workspace."""
    paths = build_fixture_world(tmp_path_factory.getbasetemp() / "dashboard-world")
    bundle, checkpoints = tmp_path / "bundle", tmp_path / "checkpoints"
    shutil.copytree(paths["bundle"], bundle)
    shutil.copytree(paths["checkpoints"], checkpoints)
    workspace = tmp_path / "ws"
    monkeypatch.setenv("CCR_WORKSPACE", str(workspace))
    return bundle, checkpoints, workspace


def _pending(bundle, checkpoints, workspace):
    world = load_world(bundle, checkpoints, workspace, defer_captions=True)  # what app.py does at start
    return sorted(what for what, pending in (("captions", world.pending_captions), ("training", world.pending_training)) if pending)


def test_full_leaves_the_app_nothing_to_compute(fresh_world, capsys):
    bundle, checkpoints, workspace = fresh_world
    assert setup_demo.main(["--world", str(bundle), "--checkpoints", str(checkpoints)]) == 0
    assert "computed by the dashboard in the background" in capsys.readouterr().out
    assert _pending(bundle, checkpoints, workspace) == ["captions", "training"]  # without --full: left to the app
    assert setup_demo.main(["--world", str(bundle), "--checkpoints", str(checkpoints), "--full"]) == 0
    out = capsys.readouterr().out
    assert "dashboard caches ready" in out and "background" not in out
    assert _pending(bundle, checkpoints, workspace) == []


def test_an_unbuilt_world_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    with pytest.raises(SystemExit, match=r"no bundle folder 'nowhere'.*ccr data build"):
        setup_demo.main(["--world", "nowhere"])
