"""The CT-like phantoms: seeded, anatomically plausible, written as valid nnU-Net raw data with the real spacing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from pipeline.phantoms.ct import (
    BACKGROUND,
    LABELS,
    LYMPH_NODES,
    SPLEEN,
    Phantom,
    case_identifier,
    generate_phantom,
    write_nnunet_raw,
)

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    return [generate_phantom(seed) for seed in SEEDS]


def millilitres(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    return float(mask.sum()) * float(np.prod(spacing)) / 1000.0


def test_same_seed_same_phantom_other_seed_other_phantom() -> None:
    first, again, other = generate_phantom(5), generate_phantom(5), generate_phantom(6)

    for name in ("ct", "labels", "truth"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert not np.array_equal(first.ct, other.ct)
    assert not np.array_equal(first.labels, other.labels)


def test_types_shapes_and_label_values(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        assert phantom.ct.dtype == np.int16 and phantom.ct.shape == (48, 64, 64)
        assert phantom.labels.dtype == np.uint8 and phantom.truth.dtype == np.uint8
        assert phantom.labels.shape == phantom.truth.shape == phantom.ct.shape
        assert set(np.unique(phantom.labels)) == {BACKGROUND, LYMPH_NODES, SPLEEN}
        assert phantom.spacing == (12.0, 7.0, 7.0)


def test_spleen_and_node_volumes_are_plausible(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        spleen = phantom.labels == SPLEEN
        assert 80.0 < millilitres(spleen, phantom.spacing) < 800.0
        assert ndimage.label(spleen)[1] <= 2  # one organ (a lobulated edge may split off a voxel or two)
        components, count = ndimage.label(phantom.labels == LYMPH_NODES)
        assert count >= 8, f"seed {phantom.seed}: only {count} node components"
        sizes = np.bincount(components.ravel())[1:] * np.prod(phantom.spacing) / 1000.0
        assert np.median(sizes) < 80.0  # nodes, not organs (mL)


def test_reference_is_a_perturbed_truth(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        assert not np.array_equal(phantom.labels, phantom.truth)
        for label in (SPLEEN, LYMPH_NODES):
            reference, truth = phantom.labels == label, phantom.truth == label
            dice = 2 * (reference & truth).sum() / (reference.sum() + truth.sum())
            assert 0.7 < dice < 1.0, f"seed {phantom.seed}, label {label}: Dice {dice:.3f}"


def test_hounsfield_units_are_ct_like(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        ct = phantom.ct.astype(np.float64)
        assert ct.min() >= -1024 and ct.max() <= 3071
        assert abs(ct[:, :3, :3].mean() + 1000.0) < 10.0  # air in the corners
        assert ct.max() > 500.0  # bone
        upper = ct[5:20, 10:-10, 10:-10]
        assert (upper < -700).mean() > 0.05  # lungs in the chest
        spleen = ct[(phantom.truth == SPLEEN) & ndimage.binary_erosion(phantom.truth == SPLEEN)]
        nodes = ct[phantom.truth == LYMPH_NODES]
        assert 100.0 < spleen.mean() < 160.0
        assert 60.0 < np.median(nodes) < 120.0
        assert spleen.mean() - np.median(nodes) > 15.0  # the enhanced spleen stands out
        noise = ct[:, :3, :3].std()
        assert 4.0 < noise < 30.0


def test_other_geometries_still_hold_both_structures() -> None:
    phantom = generate_phantom(11, shape=(40, 56, 56), spacing=(9.0, 8.0, 8.0))

    assert phantom.ct.shape == (40, 56, 56)
    assert (phantom.labels == SPLEEN).any() and (phantom.labels == LYMPH_NODES).any()


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError, match="spacing"):
        generate_phantom(0, spacing=(0.0, 7.0, 7.0))
    with pytest.raises(ValueError, match="shape"):
        generate_phantom(0, shape=(48, 64))  # type: ignore[arg-type]


def test_nnunet_raw_dataset_has_real_spacing_and_valid_dataset_json(tmp_path: Path, phantoms: list[Phantom]) -> None:
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    folder = write_nnunet_raw(tmp_path / "raw", phantoms[:2], 987, "PhantomTest", "ph")

    assert folder == tmp_path / "raw" / "Dataset987_PhantomTest"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "CT"}
    assert dataset_json["labels"] == LABELS == {"background": 0, "lymph_nodes": 1, "spleen": 2}
    assert dataset_json["numTraining"] == 2 and dataset_json["file_ending"] == ".nii.gz"
    found = get_filenames_of_train_images_and_targets(str(folder), dataset_json)
    assert sorted(found) == [case_identifier("ph", p.seed) for p in phantoms[:2]] == ["ph_00000", "ph_00001"]
    for phantom in phantoms[:2]:
        name = case_identifier("ph", phantom.seed)
        image = sitk.ReadImage(str(folder / "imagesTr" / f"{name}_0000.nii.gz"))
        labels = sitk.ReadImage(str(folder / "labelsTr" / f"{name}.nii.gz"))
        assert image.GetSpacing() == pytest.approx((7.0, 7.0, 12.0))  # SimpleITK's (x, y, z)
        assert labels.GetSpacing() == pytest.approx((7.0, 7.0, 12.0))
        assert np.array_equal(sitk.GetArrayFromImage(image), phantom.ct)
        assert np.array_equal(sitk.GetArrayFromImage(labels), phantom.labels)


def test_nnunet_integrity_check_accepts_the_dataset(tmp_path: Path, phantoms: list[Phantom]) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folder = write_nnunet_raw(tmp_path / "raw", phantoms[:2], 987, "PhantomTest", "ph")

    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any inconsistency


def test_duplicate_seeds_are_refused(tmp_path: Path, phantoms: list[Phantom]) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        write_nnunet_raw(tmp_path, [phantoms[0], phantoms[0]], 987, "PhantomTest", "ph")
