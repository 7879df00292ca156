"""The bad-input corpus (``tests/io_corpus``) against ``python -m pipeline evaluate``, ``run`` and ``predict``.

Every bad input is answered with its exact exit code and one-line message (exit 2: the ``error:`` line; a ``run``
whose case fails: exit 1 and the case's reason in ``case_failures``), never a traceback, and a ``run`` leaves the
store's row counts as they were but for that run and its failure. The commands run in-process
(:func:`pipeline.cli.main`); a few run as real processes. Good inputs beside them still pass.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from pipeline.cli import main
from pipeline.settings import Settings
from pipeline.store.database import alembic_config, make_engine, session_factory
from pipeline.store.schema import CaseFailure, Image
from tests.conftest import REPO_ROOT
from tests.io_corpus.build import DEMO_MANIFEST, Bad, Good, Inputs, truncate
from tests.io_corpus.dicom_inputs import DICOM
from tests.io_corpus.evaluate_inputs import EVALUATE
from tests.io_corpus.run_inputs import PREDICT, RUN

CORPUS = EVALUATE + RUN + DICOM + PREDICT
FAILED_CASE_ROWS = {"runs": 1, "case_failures": 1}


@dataclass(frozen=True)
class Store:
    """A migrated SQLite store that already holds the demo model set (so a run adds only its own rows)."""

    url: str
    artifacts: Path

    def settings(self, folder: Path) -> Settings:
        return Settings(database_url=self.url, artifacts_dir=self.artifacts, exports_dir=folder / "exports")


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as connection:
        tables = [t for t in inspect(connection).get_table_names() if t != "alembic_version"]
        counts = {t: int(connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()) for t in tables}
    engine.dispose()
    return counts


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Good:
    return Good(tmp_path_factory.mktemp("good"), shared_data)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    folder = tmp_path_factory.mktemp("store")
    created = Store(f"sqlite:///{folder / 'qa.sqlite3'}", folder / "artifacts")
    command.upgrade(alembic_config(created.url), "head")
    manifest = folder / "absent.csv"
    manifest.write_text(f"case,ct\nnone,{folder / 'absent.nii.gz'}\n")
    assert main(["run", str(manifest), "--models", str(DEMO_MANIFEST), "--no-tta", "--dry-run"],
                created.settings(folder)) == 1  # the dry run stores the model set and its grid, nothing else
    return created


@pytest.mark.parametrize("bad", CORPUS, ids=[bad.name for bad in CORPUS])
def test_bad_input_is_answered_in_one_line(bad: Bad, good: Good, store: Store, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [str(a) for a in bad.build(Inputs(good, tmp_path))]
    before = _counts(store.url)
    settings: Settings | None = store.settings(tmp_path)
    if bad.env:
        settings = None
        environment = {"QA_DATABASE_URL": store.url, "QA_ARTIFACTS_DIR": str(store.artifacts)} | dict(bad.env)
        for name, value in environment.items():
            monkeypatch.setenv(name, value.format(folder=tmp_path))
    capsys.readouterr()

    code = main(argv, settings)

    out, err = capsys.readouterr()
    assert "Traceback" not in err and not any(record.exc_info for record in caplog.records), err
    answers = [line for line in err.splitlines() if line.startswith(("error: ", "internal error"))]
    assert code == bad.exit_code, (code, err, out)
    expected = dict(before)
    if bad.exit_code == 2:
        assert len(answers) == 1 and re.fullmatch("error: " + bad.message, answers[0]), answers
    else:
        assert answers == [], answers
        expected = {t: n + FAILED_CASE_ROWS.get(t, 0) for t, n in before.items()}
        failure = _newest_failure(store.url)
        assert failure.stage == bad.stage and re.fullmatch(bad.message, failure.reason), (failure.stage,
                                                                                          failure.reason)
        assert f"  FAILED bad ({bad.stage}): {failure.reason}" in out.splitlines()
    if bad.verb == "run":
        assert _counts(store.url) == expected


def _newest_failure(url: str) -> CaseFailure:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        failure = session.scalars(select(CaseFailure).order_by(CaseFailure.id.desc()).limit(1)).one()
    engine.dispose()
    return failure


def test_the_corpus_is_large_and_names_are_unique() -> None:
    names = [bad.name for bad in CORPUS]
    assert len(names) == len(set(names)) and len(names) >= 87


# ---------------------------------------------------------------- good inputs beside the bad ones


def test_good_spleen_map_scores_one(good: Good, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The untruncated reference the truncation entries start from: DSC 1.0 (a half file gave 0.833 before)."""
    probs, reference = good.spleen
    assert main(["evaluate", "--probs", str(probs), "--reference", str(reference)]) == 0
    assert json.loads(capsys.readouterr().out)["dsc"]["1"] == pytest.approx(1.0)


def test_rtstruct_partly_outside_is_processed_and_reported(good: Good, store: Store, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The GTV moved 60 mm along x, over the image's edge: the part outside is clipped, the run says so and the
    case's reference note keeps it."""
    dataset = pydicom.dcmread(good.ibsi / "mask" / "RS.dcm")
    dataset.StructureSetROISequence[0].ROIName = "spleen"
    for contour in dataset.ROIContourSequence[0].ContourSequence:
        contour.ContourData = [f"{float(v) + (60.0 if k % 3 == 0 else 0.0):.4f}"
                               for k, v in enumerate(contour.ContourData)]
    dataset.save_as(tmp_path / "rs.dcm")
    argv = Inputs(good, tmp_path).run(good.ibsi / "image", tmp_path / "rs.dcm")
    argv[1] = str(tmp_path / "clipped.csv")
    (tmp_path / "clipped.csv").write_text((tmp_path / "cases.csv").read_text().replace("\nbad,", "\nclipped,"))

    assert main(argv, store.settings(tmp_path)) == 0

    note = r"ROI 'spleen' lies partly outside the image: \d+\.\d\d of its 17\.3\d mL inside \(clipped to the image\)"
    assert re.search(r"  NOTE clipped: " + note, capsys.readouterr().out)
    engine = make_engine(store.url)
    with session_factory(engine)() as session:
        stored = session.scalars(select(Image.reference_note).where(Image.name == "clipped")).one()
    engine.dispose()
    assert stored is not None and re.fullmatch(note, stored)


# ---------------------------------------------------------------- the real process


def _process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env=os.environ | (env or {}))


def test_real_process_truncated_reference_in_evaluate(good: Good, tmp_path: Path) -> None:
    probs, reference = good.spleen
    cut = truncate(Inputs(good, tmp_path).copy(reference))
    done = _process("evaluate", "--probs", str(probs), "--reference", str(cut))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [f"error: {cut}: the gzip stream ends before its end-of-stream marker "
                                        "(truncated file)"]


def test_real_process_run_refuses_before_any_case(good: Good, store: Store, tmp_path: Path) -> None:
    """An unwritable QA_ARTIFACTS_DIR (17-35 traceback lines before): exit 2, the answer last, nothing stored."""
    argv = Inputs(good, tmp_path).run(good.phantom[0])
    before = _counts(store.url)
    done = _process(*argv, env={"QA_DATABASE_URL": store.url, "QA_ARTIFACTS_DIR": "/etc/hostname/artifacts"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error")] == [
        "error: QA_ARTIFACTS_DIR /etc/hostname/artifacts: cannot write there (Not a directory)"]
    assert _counts(store.url) == before


def test_real_process_run_records_a_truncated_ct(good: Good, store: Store, tmp_path: Path) -> None:
    ct = truncate(Inputs(good, tmp_path).copy(good.shared / "totalsegmentator" / "example_ct_sm.nii.gz"))
    before = _counts(store.url)
    done = _process(*Inputs(good, tmp_path).run(ct), env={"QA_DATABASE_URL": store.url,
                                                          "QA_ARTIFACTS_DIR": str(store.artifacts)})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    reason = f"{ct}: the gzip stream ends before its end-of-stream marker (truncated file)"
    assert f"  FAILED bad (read): {reason}" in done.stdout.splitlines()
    assert _counts(store.url) == {t: n + FAILED_CASE_ROWS.get(t, 0) for t, n in before.items()}
