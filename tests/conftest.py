"""Shared fixtures: the location of the real data in ``../shared/data`` (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real CT / DICOM data with its SOURCES.md; a missing folder fails the test loudly."""
    if not (SHARED_DATA / "SOURCES.md").is_file():
        pytest.fail(f"real test data not found at {SHARED_DATA}; set QA_SHARED_DATA to the shared/data folder")
    return SHARED_DATA
