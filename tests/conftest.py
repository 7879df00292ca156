"""Shared fixtures: the location of the real data in ``../shared/data`` (never copied into the repository), and the
smoke run's tiny nnU-Net models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.inference.model_set import ModelSet, load_model_set_file
from pipeline.nnunet.compat import ensure_torchvision_importable

ensure_torchvision_importable()  # torchmetrics (an oracle) imports torchvision, a CUDA build beside the CPU torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real CT / DICOM data with its SOURCES.md; a missing folder fails the test loudly."""
    if not (SHARED_DATA / "SOURCES.md").is_file():
        pytest.fail(f"real test data not found at {SHARED_DATA}; set QA_SHARED_DATA to the shared/data folder")
    return SHARED_DATA


def _train_smoke(root: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    """Run ``train-demo-models --smoke`` (plus ``extra`` arguments) into ``root``; its models folder and manifest."""
    out = root / "models"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "train-demo-models", "--smoke", "--out", str(out), "--workdir",
         str(root / "work"), *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One ``train-demo-models --smoke`` run (real nnU-Net models, barely trained) shared by the whole session."""
    return _train_smoke(tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="session")
def smoke_run_2d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One ``train-demo-models --smoke --configuration 2d`` run (a 2-D ``2d_tiny`` model set, barely trained; about
    30 s of CPU, most of it planning) shared by the whole session."""
    return _train_smoke(tmp_path_factory.mktemp("smoke_2d"), "--configuration", "2d")


@pytest.fixture(scope="module")
def model_set(smoke_run: tuple[Path, dict[str, Any]]) -> ModelSet:
    """The smoke run's model set (its manifest); the 2-D tests override it with ``smoke_run_2d``'s."""
    return load_model_set_file(smoke_run[0] / "manifest.json")
