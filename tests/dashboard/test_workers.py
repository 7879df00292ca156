"""Two app processes (gunicorn, as deployed) on one store, SQLite and PostgreSQL: a sign-in on one is a sign-in on the
other (the shared ``QA_SECRET_KEY``), and after a batch writes both show the new data (no per-process cache serves
what the batch replaced): the worklist lists the new case, and the slice browser shows the redone case's new CT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from alembic import command
from sqlalchemy import select

from benchmarks.dashboard import plane_request, worklist_request
from benchmarks.http_client import Browser, callback_body, ensure_user
from benchmarks.served import serving
from pipeline.batch.cases import discover
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import load_model_set_file
from pipeline.store.database import alembic_config, make_engine, session_factory
from pipeline.store.schema import Configuration
from tests.store.conftest import _drop_postgres, _fresh_postgres, write_phantom_case

DEMO_MODELS = Path(__file__).resolve().parents[2] / "models" / "demo" / "manifest.json"
SECRET = "a key both processes share"
START_TIMEOUT = 900  # seconds: under `chrt -i 0` on a busy machine the servers may wait long for a core


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        location = f"sqlite:///{tmp_path / 'store.sqlite3'}"
        command.upgrade(alembic_config(location), "head")
        yield location
        return
    name, location = _fresh_postgres()
    try:
        command.upgrade(alembic_config(location), "head")
        yield location
    finally:
        _drop_postgres(name)


def _batch(url: str, cohort: Path, artifacts: Path) -> list[str]:
    options = BatchOptions(cases=tuple(discover(cohort)), model_set=load_model_set_file(DEMO_MODELS),
                           models_source="demo", database_url=url, artifacts=artifacts, tta=False, progress=False)
    return run_batch(options).done


def _worklist(browser: Browser) -> str:
    response = browser.post(callback_body(*worklist_request("DE", 2.0)))
    assert response.status_code == 200, response.text[:300]
    return response.text


def _axial_ct(browser: Browser, configuration: int, shape: tuple[int, ...]) -> str:
    """The CT picture (a PNG data URI) of the middle axial slice of phantom_9000 in configuration A's figure."""
    middle = {"axial": shape[0] // 2, "coronal": shape[1] // 2, "sagittal": shape[2] // 2}
    response = browser.post(callback_body(*plane_request("axial", middle, configuration, ["entropy"],
                                                         "slice-axial.data", "phantom_9000", 0.02)))
    assert response.status_code == 200, response.text[:300]
    figure = json.loads(response.text)["response"]["view-a-axial"]["figure"]
    return next(trace["source"] for trace in figure["data"] if trace["name"] == "ct")


def _brighten(ct: Path) -> None:
    image = sitk.ReadImage(str(ct))
    changed = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) + np.float32(300))
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(ct))


def test_two_processes_share_sign_ins_and_both_show_what_a_batch_wrote(url: str, tmp_path: Path) -> None:
    cohort, artifacts = tmp_path / "cohort", tmp_path / "artifacts"
    ct, _ = write_phantom_case(cohort, 9000)
    assert _batch(url, cohort, artifacts) == ["phantom_9000"]
    ensure_user(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        de = session.scalars(select(Configuration.id).where(Configuration.name == "DE")).one()
    engine.dispose()
    shape = sitk.GetArrayFromImage(sitk.ReadImage(str(ct))).shape
    environment = {"QA_DATABASE_URL": url, "QA_ARTIFACTS_DIR": str(artifacts), "QA_SECRET_KEY": SECRET}
    with ExitStack() as servers:
        first, second = (servers.enter_context(serving(1, environment, start_timeout=START_TIMEOUT))
                         for _ in range(2))
        browser = Browser(first)
        other = Browser(second)
        other.http.cookies = browser.http.cookies  # the first process's session cookie, sent to the second
        before = [(_worklist(b), _axial_ct(b, de, shape)) for b in (browser, other)]
        assert all("phantom_9000" in w and "phantom_9001" not in w for w, _ in before)
        assert before[0][1] == before[1][1]

        _brighten(ct)
        write_phantom_case(cohort, 9001)
        assert sorted(_batch(url, cohort, artifacts)) == ["phantom_9000", "phantom_9001"]

        after = [(_worklist(b), _axial_ct(b, de, shape)) for b in (browser, other)]
        assert all("phantom_9001" in w for w, _ in after), "a process listed its cached worklist"
        assert after[0][1] == after[1][1]
        assert after[0][1] != before[0][1], "a process showed the redone case's old CT picture"
