"""kill -9 during a batch, then a re-run, leaves exactly the rows of an uninterrupted run (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from pipeline.batch.cases import discover
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import load_model_set_file
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import (
    Artifact,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    MetricValue,
    Processing,
    ReliabilityBin,
    Run,
    StructureResult,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _snapshot(url: str) -> dict[str, Any]:
    """Every stored row that a run's outcome determines, keyed by names instead of ids and rounded floats."""
    engine = make_engine(url)
    snapshot: dict[str, Any] = {}
    with session_factory(engine)() as session:
        names = {i.id: i.name for i in session.scalars(select(Image))}
        configurations = {c.id: c.name for c in session.scalars(select(Configuration))}
        results = {r.id: (names[r.image_id], configurations[r.configuration_id]) for r in
                   session.scalars(select(CaseResult))}
        snapshot["processings"] = sorted((names[p.image_id], p.input_hash, p.forward_passes)
                                         for p in session.scalars(select(Processing)))
        snapshot["results"] = sorted((*results[r.id], r.has_reference, r.roi_voxels, r.error_voxels)
                                     for r in session.scalars(select(CaseResult)))
        snapshot["values"] = sorted((*results[v.result_id], v.class_index, v.name, round(v.value or 0, 6))
                                    for v in session.scalars(select(MetricValue)))
        snapshot["curves"] = sorted((*results[p.result_id], p.budget_index, round(p.ueo or 0, 6))
                                    for p in session.scalars(select(CurvePoint)))
        snapshot["bins"] = sorted((*results[b.result_id], b.group, b.bin, b.count)
                                  for b in session.scalars(select(ReliabilityBin)))
        snapshot["structures"] = sorted((*results[s.result_id], s.class_index, round(s.dsc or 0, 6))
                                        for s in session.scalars(select(StructureResult)))
        snapshot["artifacts"] = sorted((names[a.image_id], a.kind, a.path) for a in session.scalars(select(Artifact)))
    engine.dispose()
    return snapshot


def _processings(url: str) -> int:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        count = int(session.scalar(select(func.count()).select_from(Processing)) or 0)
    engine.dispose()
    return count


def test_kill_9_then_rerun_equals_an_uninterrupted_run(
    store_url: str, tmp_path: Path, phantom_folder: Path, smoke_run: tuple[Path, dict[str, Any]]
) -> None:
    manifest = smoke_run[0] / "manifest.json"
    model_set = load_model_set_file(manifest)
    cases = discover(phantom_folder, "phantom")
    reference_url = f"sqlite:///{tmp_path / 'uninterrupted.sqlite3'}"
    from alembic import command

    from pipeline.store.database import alembic_config

    command.upgrade(alembic_config(reference_url), "head")

    def options(url: str, artifacts: Path) -> BatchOptions:
        return BatchOptions(cases=tuple(cases), model_set=model_set, models_source=str(manifest), database_url=url,
                            artifacts=artifacts, tta=False, progress=False)

    run_batch(options(reference_url, tmp_path / "reference_artifacts"))
    expected = _snapshot(reference_url)

    artifacts = tmp_path / "artifacts"
    environment = os.environ | {"QA_DATABASE_URL": store_url, "QA_ARTIFACTS_DIR": str(artifacts), "CI": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(phantom_folder), "--models", str(manifest), "--cohort",
         "phantom", "--no-tta", "--no-progress"],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while _processings(store_url) < 1:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the batch ended or stalled before its first case: {process.stderr.read()[-2000:]!r}")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()

    partial = _snapshot(store_url)
    done = {name for name, _, _ in partial["processings"]}
    assert 1 <= len(done) < len(cases), "the kill must land mid-run for this test to mean anything"
    assert partial["results"] == [r for r in expected["results"] if r[0] in done], "a killed run left partial rows"
    assert partial["curves"] == [c for c in expected["curves"] if c[0] in done]

    run_batch(options(store_url, artifacts))
    assert _snapshot(store_url) == expected
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        statuses = sorted(r.status for r in session.scalars(select(Run)))
    engine.dispose()
    assert statuses == ["interrupted", "succeeded"]
