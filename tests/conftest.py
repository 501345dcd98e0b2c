"""Shared fixtures. Tests that need ../shared/data or Chromium skip on a user's machine when those
are missing, but fail in CI, where .ci/run sets CCR_REQUIRE_SHARED_DATA=1 and CCR_REQUIRE_BROWSER=1."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ccr_core.paths import shared_data_dir

CHROMIUM = "/usr/bin/chromium"


def _missing(what: str, env: str) -> None:
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required here ({env}=1) but missing", pytrace=False)
    pytest.skip(f"{what} not available (set {env}=1 to make this a failure)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data mirror; skip (or fail in CI) when absent."""
    root = shared_data_dir()
    if not (root / "flickr8k" / "images").is_dir():
        _missing(f"the real-data mirror {root}", "CCR_REQUIRE_SHARED_DATA")
    return root


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium; skip (or fail in CI) when absent."""
    path = os.environ.get("CCR_CHROMIUM", CHROMIUM)
    if not (Path(path).exists() or shutil.which(path)):
        _missing(f"chromium ({path})", "CCR_REQUIRE_BROWSER")
    return path
