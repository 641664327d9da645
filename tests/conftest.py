"""Shared fixtures: where the real Omniglot files are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_OMNIGLOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """``<repo>/../shared/data/omniglot``; skipped when absent, a failure when ``CML_REQUIRE_SHARED_DATA=1`` (CI)."""
    if not (SHARED_OMNIGLOT / "images_background_small1.zip").is_file():
        message = (
            f"real Omniglot not found at {SHARED_OMNIGLOT}; put images_background_small1.zip and "
            f"images_background_small2.zip there (brendenlake/omniglot, python/) to run the tests that read it"
        )
        if os.environ.get("CML_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_OMNIGLOT
