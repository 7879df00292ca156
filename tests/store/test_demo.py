"""The README's demo on real (smoke-trained) nnU-Net models: phantoms and the real CT into the embedded store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from pipeline.cli import main
from pipeline.demo_study import SIMULATED_STUDY
from pipeline.io.acquisition import Acquisition
from pipeline.settings import Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.references import final_clinical_images
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image, Protocol, Run, StructureResult
from pipeline.store.study_schema import Study
from tests.conftest import REPO_ROOT


def test_demo_fills_an_empty_store_and_prints_the_cohort_table(
    smoke_run: tuple[Path, dict[str, Any]], tmp_path: Path, shared_data: Path, empty_store_url: str
) -> None:
    """From nothing (no tables) to a filled store, on SQLite and, with QA_DATABASE_URL set, on PostgreSQL."""
    url = empty_store_url
    environment = os.environ | {"QA_DATABASE_URL": url, "QA_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
                                "QA_SHARED_DATA": str(shared_data), "CI": "true"}
    command = [sys.executable, "-m", "pipeline", "demo", "--models", str(smoke_run[0] / "manifest.json"),
               "--cases", "2", "--repeats", "2", "--no-tta", "--workdir", str(tmp_path / "demo")]
    done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Phantom cohort, 2 repeats" in done.stdout and "DE+TS" in done.stdout
    assert "Cost and benefit (phantom test cases" in done.stdout
    assert "Real CT (reference: TotalSegmentator model prediction" in done.stdout
    assert "Demo accounts: demo-admin (admin), demo-reviewer (reviewer), demo-approver (approver)" in done.stdout
    _the_shift_table_is_recomputed(done.stdout, url, tmp_path / "artifacts")
    _the_simulated_study_is_there(done.stdout, url, tmp_path)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        images = {i.name: i for i in session.scalars(select(Image))}
        assert set(images) == {"phantom_9000", "phantom_9001", "real_ct_totalsegmentator"}
        assert images["real_ct_totalsegmentator"].reference_note.startswith("TotalSegmentator model prediction")
        first, second = (Acquisition.from_record(images[f"phantom_900{k}"].acquisition) for k in (0, 1))
        assert first.scanner() == "SimCT Alpha 64" and second.scanner() == "VoxelWorks Beta 16", (
            "the manifest's acquisition columns are stored; half of two phantoms on the second scanner")
        assert (first.get("slice_thickness_mm"), second.get("slice_thickness_mm")) == (12.0, 24.0)
        assert images["real_ct_totalsegmentator"].acquisition is None
        real = session.scalars(select(CaseResult).join(Configuration, Configuration.id == CaseResult.configuration_id)
                               .where(CaseResult.image_id == images["real_ct_totalsegmentator"].id,
                                      Configuration.sweep.is_(False))).all()
        assert len(real) == 6, "the real CT gets every grid configuration, TS with the deployed temperatures"
        assert len(session.scalars(select(Protocol)).all()) == 1
        dsc = session.execute(select(Image.name, Configuration.name, StructureResult.class_index, StructureResult.dsc)
                              .join(CaseResult, CaseResult.id == StructureResult.result_id)
                              .join(Image, Image.id == CaseResult.image_id)
                              .join(Configuration, Configuration.id == CaseResult.configuration_id)).all()
        plain = {(case, name, c): value for case, name, c, value in dsc if not name.endswith("+TS")}
        scaled = [(case, name.removesuffix("+TS"), c, value) for case, name, c, value in dsc if name.endswith("+TS")]
        assert len(scaled) >= 3 * 3 * 3, "TS rows of the protocol's repeats and of the deployment, 3 classes each"
        assert all(plain[(case, twin, c)] == value for case, twin, c, value in scaled), (
            "TS never changes a DSC: the protocol's TS rows equal their twins' to the last bit")
    engine.dispose()

    again = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 processed, 2 unchanged" in again.stdout, "a second demo run redoes no inference"
    assert _cohort_table(again.stdout) == _cohort_table(done.stdout), "the final contours attached changed no number"
    assert _study_line(again.stdout) == _study_line(done.stdout), "the simulated study is left as it was"
    with session_factory(engine)() as session:
        assert len(session.scalars(select(Run)).all()) == 4
        assert len(session.scalars(select(Protocol)).all()) == 1, "the refitted protocol replaces the first"
    engine.dispose()
    _a_night_in_the_clinic(smoke_run[0] / "manifest.json", tmp_path / "demo" / "night", environment, url)


def _cohort_table(stdout: str) -> str:
    return stdout.split("Phantom cohort")[1].split("Cost and benefit")[0]


def _study_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("Simulated review study"))


def _the_simulated_study_is_there(stdout: str, url: str, tmp_path: Path) -> None:
    """The demo's last line points at the simulated study (closed, both phantoms read, final contours attached) and
    its report is written from the store."""
    line = _study_line(stdout)
    assert f"/study/{SIMULATED_STUDY}, 2 readings, primary endpoint edited-ml-per-minute: B − A = " in line
    settings = Settings(database_url=url, artifacts_dir=tmp_path / "artifacts", exports_dir=tmp_path / "exports")
    assert main(["study-report", SIMULATED_STUDY, "--out", str(tmp_path / "report")], settings) == 0
    assert (tmp_path / "report" / f"study_{SIMULATED_STUDY}.pdf").read_bytes().startswith(b"%PDF")
    engine = make_engine(url)
    with session_factory(engine)() as session:
        closed = session.scalar(select(Study.closed_at).where(Study.name == SIMULATED_STUDY))
        final = session.scalars(select(Image.name).where(Image.id.in_(final_clinical_images()))).all()
    engine.dispose()
    assert closed is not None and sorted(final) == ["phantom_9000", "phantom_9001"]


def _a_night_in_the_clinic(models: Path, night: Path, environment: dict[str, str], url: str) -> None:
    """The README's walk-through on the night the demo leaves: the new patients are stored without a reference, then
    a final contour is attached (by case, then by manifest) and their results carry the reference."""
    assert sorted(p.name for p in (night / "images").iterdir()) == ["phantom_9100.nii.gz", "phantom_9101.nii.gz"]
    assert not (night / "references").exists(), "the night's contours must not reach the batch"
    pipeline = [sys.executable, "-m", "pipeline"]
    done = subprocess.run([*pipeline, "run", str(night), "--models", str(models), "--cohort", "night", "--no-tta",
                           "--no-progress"], cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processed" in done.stdout and "0 failed" in done.stdout
    engine = make_engine(url)
    with session_factory(engine)() as session:
        night_results = select(CaseResult.has_reference).join(Image, Image.id == CaseResult.image_id).where(
            Image.cohort == "night")
        assert session.scalars(night_results).all() and not any(session.scalars(night_results))
    one = subprocess.run([*pipeline, "attach-reference", "phantom_9100", "--kind", "final_clinical", "--reference",
                          str(night / "final_contours" / "phantom_9100.nii.gz")], cwd=REPO_ROOT, env=environment,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    (night / "attach.csv").write_text("case,reference,kind\nphantom_9101,final_contours/phantom_9101.nii.gz,"
                                      "final_clinical\n")
    manifest = subprocess.run([*pipeline, "attach-reference", "--manifest", str(night / "attach.csv")],
                              cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert manifest.returncode == 0, manifest.stderr[-3000:]
    assert "attach-reference: 1 attached, 0 failed" in manifest.stdout + manifest.stderr
    with session_factory(engine)() as session:
        assert all(session.scalars(night_results))
    engine.dispose()


def _the_shift_table_is_recomputed(stdout: str, url: str, artifacts: Path) -> None:
    """Base's row of the out-of-distribution table is the stored score, which is the mean of the stored entropy map
    over the CT above -500 HU; two phantoms are too few reference cases to rank the real CT."""
    table = stdout.split("Out of distribution? Mean entropy over the body (CT > -500 HU)")[1]
    base = next(line.split() for line in table.splitlines()[2:] if line.split()[:1] == ["Base"])
    store, engine = ArtifactStore(artifacts), make_engine(url)
    values: dict[str, float] = {}
    with session_factory(engine)() as session:
        for image in session.scalars(select(Image)):
            ct = store.read(session.scalars(select(Artifact.path).where(
                Artifact.image_id == image.id, Artifact.kind == "ct")).one())
            result, entropy_path = session.execute(
                select(CaseResult, Artifact.path).join(Artifact, Artifact.result_id == CaseResult.id)
                .join(Configuration, Configuration.id == CaseResult.configuration_id)
                .where(CaseResult.image_id == image.id, Configuration.name == "Base",
                       Artifact.kind == "entropy")).one()
            entropy = store.read(entropy_path)
            expected = float(np.mean(entropy[ct > -500], dtype=np.float64))
            assert result.ood_entropy == pytest.approx(expected, rel=1e-9)
            assert result.ood_percentile is None and result.ood_flag is None
            values[image.cohort if image.cohort == "real" else image.name] = expected
    engine.dispose()
    phantoms = [v for k, v in values.items() if k != "real"]
    assert base[1] == f"{values['real']:.3f}"
    assert base[2] == f"{min(phantoms):.3f}–{max(phantoms):.3f}"
    assert base[3:] == ["—", "2", "not", "enough", "reference", "cases"]
