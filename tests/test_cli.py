"""``python -m pipeline evaluate``: real files in, JSON out; bad files get one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from pipeline.metrics import MetricSettings, evaluate_case
from pipeline.metrics.pooling import softmax
from tests.conftest import REPO_ROOT

REQUIRED_KEYS = {
    "dsc", "dsc_mean_fg", "ece", "brier", "ueo_auc", "fp_tp_auc", "fn_tn_auc",
    "budgets", "ueo_curve", "roi_voxels", "error_voxels",
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def spleen_case(shared_data: Path) -> tuple[np.ndarray, sitk.Image]:
    """Spleen (label 1 of TotalSegmentator's prediction on the real 2 mm DICOM-derived CT) and a blurred
    two-class probability map of it, shaped (2, Z, Y, X) float32."""
    reference = sitk.ReadImage(str(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz"))
    spleen = (sitk.GetArrayFromImage(reference) == 1).astype(np.uint8)
    assert spleen.any(), "the real segmentation must hold spleen voxels"
    logit = 8.0 * (gaussian_filter(spleen.astype(np.float32), sigma=(0.7, 2.0, 2.0)) - 0.45)
    probs = softmax(np.stack([np.zeros_like(logit), logit]).astype(np.float32))
    label_image = sitk.GetImageFromArray(spleen)
    label_image.CopyInformation(reference)
    return probs, label_image


def test_nifti_inputs_use_header_spacing(tmp_path: Path, shared_data: Path) -> None:
    probs, label_image = spleen_case(shared_data)
    probs_image = sitk.GetImageFromArray(probs, isVector=False)
    probs_image.SetSpacing((*label_image.GetSpacing(), 1.0))
    probs_image.SetOrigin((*label_image.GetOrigin(), 0.0))  # on the reference's grid: another grid is refused
    direction = np.eye(4)
    direction[:3, :3] = np.reshape(label_image.GetDirection(), (3, 3))
    probs_image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(probs_image, str(tmp_path / "probs.nii.gz"))
    sitk.WriteImage(label_image, str(tmp_path / "ref.nii.gz"))
    out = tmp_path / "out.json"

    done = run_cli("evaluate", "--probs", str(tmp_path / "probs.nii.gz"), "--reference", str(tmp_path / "ref.nii.gz"),
                   "--json", str(out))

    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document.keys() >= REQUIRED_KEYS
    spacing_xyz = label_image.GetSpacing()
    assert document["spacing_mm"] == pytest.approx([spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]])
    expected = evaluate_case(probs, sitk.GetArrayFromImage(label_image), document["spacing_mm"]).metrics
    assert document["ece"] == pytest.approx(expected.ece, abs=1e-12)
    assert document["roi_voxels"] == expected.roi_voxels
    assert len(document["budgets"]) == len(document["ueo_curve"]) == MetricSettings().budget_points


def test_npy_inputs_with_spacing_and_temperature(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = np.zeros((12, 20, 20), dtype=np.uint8)
    labels[3:8, 5:12, 5:12] = 1
    logits = rng.normal(size=(2, 12, 20, 20)).astype(np.float32)
    logits[1] += 4.0 * labels - 2.0
    probs = softmax(logits)
    np.save(tmp_path / "p.npy", probs)
    np.save(tmp_path / "l.npy", labels)

    done = run_cli("evaluate", "--probs", str(tmp_path / "p.npy"), "--reference", str(tmp_path / "l.npy"),
                   "--spacing", "2.5,1,1", "--temperature", "1.7")

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    expected = evaluate_case(probs, labels, (2.5, 1.0, 1.0), temperature=1.7).metrics
    assert document["temperature"] == 1.7
    assert document["brier"] == pytest.approx(expected.brier, abs=1e-12)
    assert document["dsc"] == {str(c): pytest.approx(d) for c, d in enumerate(expected.dsc)}


@pytest.mark.parametrize(
    ("probs_name", "extra", "message"),
    [
        ("corrupt.npy", ["--spacing", "1,1,1"], "not a .npy file"),
        ("missing.npy", ["--spacing", "1,1,1"], "no such file"),
        ("unnormalised.npy", ["--spacing", "1,1,1"], "must sum to 1"),
        ("labels.npy", ["--spacing", "1,1,1"], "must be 4-D"),
        ("good.npy", [], "no spacing"),
        ("good.npy", ["--spacing", "1,-1,1"], "--spacing"),
        ("good.npy", ["--spacing", "1,1,1", "--temperature", "0"], "temperature"),
        ("good.npy", ["--spacing", "1,1,1", "--temperature", "inf"], "temperature"),
        ("good.npy", ["--spacing", "1,1,1", "--temperature", "nan"], "temperature"),
        ("corrupt.nii.gz", [], "not a readable NIfTI"),
        ("good.txt", ["--spacing", "1,1,1"], "unsupported file type"),
        ("good.npy", ["--spacing", "1,1,1", "--settings", "missing.json"], "not a readable JSON file"),
        ("good.npy", ["--spacing", "1,1,1", "--settings", "unknown.json"], "unknown metric settings ['roi_radius']"),
        ("good.npy", ["--spacing", "1,1,1", "--settings", "invalid.json"], "MetricSettings.ece_mode must be one of"),
        ("good.npy", ["--spacing", "1,1,1", "--settings", "wrong_type.json"], "roi_radius_mm must be a float"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(tmp_path: Path, probs_name: str, extra: list[str], message: str) -> None:
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[1:3, 1:4, 1:4] = 1
    good = np.stack([1.0 - 0.8 * labels, 0.8 * labels]).astype(np.float32)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "unnormalised.npy", good * 2)
    (tmp_path / "corrupt.npy").write_bytes(b"not numpy at all")
    (tmp_path / "corrupt.nii.gz").write_bytes(b"not nifti at all")
    (tmp_path / "good.txt").write_text("0.5")
    (tmp_path / "unknown.json").write_text('{"roi_radius": 10}')
    (tmp_path / "invalid.json").write_text('{"ece_mode": "sometimes"}')
    (tmp_path / "wrong_type.json").write_text('{"roi_radius_mm": "ten"}')

    probs_file, labels_file = str(tmp_path / probs_name), str(tmp_path / "labels.npy")
    extra = [str(tmp_path / e) if e.endswith(".json") else e for e in extra]
    done = run_cli("evaluate", "--probs", probs_file, "--reference", labels_file, *extra)

    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_bad_member_temperature_is_bad_input(tmp_path: Path, value: str) -> None:
    """Under per_member the temperature scales each member while pooling: a bad one is the user's (it was an internal
    error there, and inf was accepted)."""
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[1:3, 1:4, 1:4] = 1
    member = np.stack([1.0 - 0.8 * labels, 0.8 * labels]).astype(np.float32)
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, member)
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "per_member.json").write_text('{"temperature_mode": "per_member"}')
    done = run_cli("evaluate", "--probs", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--reference",
                   str(tmp_path / "labels.npy"), "--spacing", "1,1,1", "--settings", str(tmp_path / "per_member.json"),
                   f"--temperature={value}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "--temperature" in done.stderr


def test_metric_settings_come_from_a_file_and_are_reported(tmp_path: Path) -> None:
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[2:5, 5:12, 5:12] = 1
    probs = softmax(np.stack([np.zeros(labels.shape), 3.0 * labels - 1.0]).astype(np.float32))
    np.save(tmp_path / "p.npy", probs)
    np.save(tmp_path / "l.npy", labels)
    (tmp_path / "s.json").write_text('{"roi_radius_mm": 4, "ece_mode": "classwise"}')

    done = run_cli("evaluate", "--probs", str(tmp_path / "p.npy"), "--reference", str(tmp_path / "l.npy"),
                   "--spacing", "2,1,1", "--settings", str(tmp_path / "s.json"))

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    settings = MetricSettings(roi_radius_mm=4.0, ece_mode="classwise")
    expected = evaluate_case(probs, labels, (2.0, 1.0, 1.0), settings).metrics
    assert document["roi_voxels"] == expected.roi_voxels != evaluate_case(probs, labels, (2, 1, 1)).metrics.roi_voxels
    assert document["ece"] == pytest.approx(expected.ece, abs=1e-12)
    assert document["settings"]["roi_radius_mm"] == 4 and document["settings"]["ece_mode"] == "classwise"


def test_geometry_mismatch_is_named(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.full((2, 4, 5, 6), 0.5, dtype=np.float32))
    np.save(tmp_path / "l.npy", np.zeros((4, 5, 7), dtype=np.uint8))

    done = run_cli("evaluate", "--probs", str(tmp_path / "p.npy"), "--reference", str(tmp_path / "l.npy"),
                   "--spacing", "1,1,1")

    assert done.returncode == 2
    assert "labels must have the spatial shape (4, 5, 6)" in done.stderr


def test_precomputed_members_are_pooled(tmp_path: Path) -> None:
    """Members from nnU-Net's --save_probabilities (.npz) and a NIfTI map pool into one evaluation."""
    rng = np.random.default_rng(5)
    labels = np.zeros((10, 16, 16), dtype=np.uint8)
    labels[2:7, 4:11, 4:11] = 1
    members = []
    for k in range(2):
        logits = rng.normal(size=(2, 10, 16, 16)).astype(np.float32)
        logits[1] += (3.0 + k) * labels - 1.5
        members.append(softmax(logits))
    np.savez_compressed(tmp_path / "member0.npz", probabilities=members[0])
    image = sitk.GetImageFromArray(members[1], isVector=False)
    image.SetSpacing((1.0, 1.0, 3.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "member1.nii.gz"))
    np.save(tmp_path / "ref.npy", labels)

    done = run_cli("evaluate", "--probs", str(tmp_path / "member0.npz"), str(tmp_path / "member1.nii.gz"),
                   "--reference", str(tmp_path / "ref.npy"), "--spacing", "3,1,1")

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    pooled = (members[0] + members[1]) / 2
    expected = evaluate_case(pooled, labels, (3.0, 1.0, 1.0)).metrics
    assert document["members"] == 2
    assert document["ece"] == pytest.approx(expected.ece, abs=1e-6)
    assert document["brier"] == pytest.approx(expected.brier, abs=1e-6)


def test_per_member_settings_scale_each_member_before_pooling(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    labels = np.zeros((8, 14, 14), dtype=np.uint8)
    labels[2:6, 3:10, 3:10] = 1
    logits = []
    for k in range(2):
        member = rng.normal(size=(2, 8, 14, 14)).astype(np.float32)
        member[1] += (2.0 + 3.0 * k) * labels - 1.0
        logits.append(member)
        np.save(tmp_path / f"m{k}.npy", softmax(member))
    np.save(tmp_path / "ref.npy", labels)
    (tmp_path / "s.json").write_text('{"temperature_mode": "per_member"}')

    done = run_cli("evaluate", "--probs", str(tmp_path / "m0.npy"), str(tmp_path / "m1.npy"), "--reference",
                   str(tmp_path / "ref.npy"), "--spacing", "2,1,1", "--settings", str(tmp_path / "s.json"),
                   "--temperature", "2.5")

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    scaled = (softmax(logits[0], 2.5) + softmax(logits[1], 2.5)) / 2
    expected = evaluate_case(scaled, labels, (2.0, 1.0, 1.0)).metrics
    after_pooling = evaluate_case((softmax(logits[0]) + softmax(logits[1])) / 2, labels, (2.0, 1.0, 1.0),
                                  temperature=2.5).metrics
    assert abs(expected.nll - after_pooling.nll) > 1e-3, "the two modes differ on these members"
    assert document["nll"] == pytest.approx(expected.nll, abs=1e-5)
    assert document["ece"] == pytest.approx(expected.ece, abs=1e-5)


@pytest.mark.parametrize(
    ("models", "ct", "message"),
    [
        ("missing_folder", "ct.nii.gz", "results folder missing"),
        ("model_set.json", "not_a_ct.nii.gz", "not a readable CT"),
    ],
)
def test_predict_bad_input_gets_one_line_and_exit_2(tmp_path: Path, models: str, ct: str, message: str) -> None:
    (tmp_path / "not_a_ct.nii.gz").write_bytes(b"garbage")
    folder = tmp_path / "Trainer__Plans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"w")
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1}}))
    (folder / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}}))
    (tmp_path / "model_set.json").write_text(
        json.dumps({"model_set": {"results_folder": folder.name, "folds": [0]}})
    )

    done = run_cli("predict", "--models", str(tmp_path / models), "--ct", str(tmp_path / ct),
                   "--out", str(tmp_path / "out"))

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("cluster", "database", "message"),
    [
        ("local:0", "sqlite", "--cluster must be local:N"),
        ("local:two", "sqlite", "--cluster must be local:N"),
        ("local:2:0", "sqlite", "local:N:T with T torch threads"),
        ("10.0.0.5:8786", "sqlite", "or tcp://HOST:PORT"),
        ("tcp://10.0.0.5:8786", "sqlite", "a SQLite store cannot serve workers on other machines"),
        ("tcp://127.0.0.1:1", "postgresql", "no Dask scheduler answers there"),
    ],
)
def test_run_refuses_a_bad_cluster_in_one_line(tmp_path: Path, cluster: str, database: str, message: str) -> None:
    """A malformed --cluster, a SQLite store for a multi-machine cluster, a scheduler that does not answer: one line,
    exit 2, before any case is read."""
    url = (f"sqlite:///{tmp_path / 'qa.sqlite3'}" if database == "sqlite"
           else "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    (tmp_path / "cohort" / "images").mkdir(parents=True)
    (tmp_path / "cohort" / "images" / "case_1.nii.gz").write_bytes(b"never read")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(tmp_path / "cohort"), "--models", "models/demo/manifest.json",
         "--cluster", cluster], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "QA_DATABASE_URL": url, "QA_ARTIFACTS_DIR": str(tmp_path / "artifacts")})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
