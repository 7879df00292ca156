"""pipeline.io.dicom and pipeline.io.rtstruct on the real DICOM data in ``../shared/data`` (see its SOURCES.md)
and on damaged copies of it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from pipeline.io.dicom import DicomError, DicomSeries, read_ct_series
from pipeline.io.rtstruct import Clipping, rasterise_rtstruct, read_rtstruct

IBSI_ROI = "GTV_Mass_CT"


def _at(path: Path) -> str:
    """A regex matching a message that starts with ``path``."""
    return "^" + re.escape(str(path))


def _shoelace(xy: np.ndarray) -> float:
    """Area of a simple polygon (N, 2)."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _inside_pnpoly(px: float, py: float, polygon: np.ndarray) -> bool:
    """Independent oracle: W. R. Franklin's scalar PNPOLY crossing test (scans rows, not columns)."""
    inside = False
    n = len(polygon)
    for a in range(n):
        xa, ya = polygon[a]
        xb, yb = polygon[a - 1]
        if (ya > py) != (yb > py) and px < (xb - xa) * (py - ya) / (yb - ya) + xa:
            inside = not inside
    return inside


def _contours(path: Path, roi_name: str) -> list[np.ndarray]:
    """The (N, 3) patient-coordinate points of every contour of one ROI, read with plain pydicom."""
    dataset = pydicom.dcmread(path)
    number = next(int(r.ROINumber) for r in dataset.StructureSetROISequence if r.ROIName == roi_name)
    item = next(i for i in dataset.ROIContourSequence if int(i.ReferencedROINumber) == number)
    return [np.asarray(c.ContourData, dtype=float).reshape(-1, 3) for c in item.ContourSequence]


@pytest.fixture(scope="module")
def ibsi_dir(shared_data: Path) -> Path:
    return shared_data / "ibsi_sts_019"


@pytest.fixture(scope="module")
def ibsi(ibsi_dir: Path) -> DicomSeries:
    return read_ct_series(ibsi_dir / "dicom" / "CT" / "image")


@pytest.fixture(scope="module")
def ibsi_reference_mask(ibsi_dir: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(ibsi_dir / "nifti" / "CT_mask.nii.gz")))


# ---------------------------------------------------------------- IBSI STS_019: CT and RTSTRUCT vs the NIfTI export


def test_ibsi_ct_matches_the_nifti_export(ibsi: DicomSeries, ibsi_dir: Path) -> None:
    nifti = sitk.ReadImage(str(ibsi_dir / "nifti" / "CT_image.nii.gz"))
    image = ibsi.image
    assert image.GetSize() == nifti.GetSize() == (136, 134, 47)
    np.testing.assert_allclose(image.GetOrigin(), nifti.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), nifti.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), nifti.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(nifti))  # HU, exactly


def test_ibsi_uids_and_slice_order(ibsi: DicomSeries) -> None:
    assert ibsi.frame_of_reference_uid == "1.3.6.1.4.1.14519.5.2.1.5168.1900.126999735194270704602831283400"
    assert ibsi.study_instance_uid and ibsi.series_instance_uid
    assert len(ibsi.sop_instance_uids) == len(set(ibsi.sop_instance_uids)) == len(ibsi.files) == 47
    origin_z, spacing_z = ibsi.image.GetOrigin()[2], ibsi.image.GetSpacing()[2]
    for k, (path, uid) in enumerate(zip(ibsi.files, ibsi.sop_instance_uids, strict=True)):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        assert header.SOPInstanceUID == uid
        assert float(header.ImagePositionPatient[2]) == pytest.approx(origin_z + k * spacing_z, abs=1e-3)


def test_ibsi_slice_order_does_not_depend_on_file_names(ibsi: DicomSeries, tmp_path: Path) -> None:
    for k, path in enumerate(ibsi.files):  # names now sort head-to-feet instead of feet-to-head
        shutil.copy(path, tmp_path / f"slice_{len(ibsi.files) - k:03d}.dcm")
    again = read_ct_series(tmp_path)
    assert again.sop_instance_uids == ibsi.sop_instance_uids
    assert again.image.GetOrigin() == ibsi.image.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again.image), sitk.GetArrayFromImage(ibsi.image))


def test_ibsi_rtstruct_reproduces_the_nifti_mask_exactly(
    ibsi: DicomSeries, ibsi_dir: Path, ibsi_reference_mask: np.ndarray
) -> None:
    masks = read_rtstruct(ibsi_dir / "dicom" / "CT" / "mask" / "RS.dcm", ibsi.image, ibsi.frame_of_reference_uid)
    assert list(masks) == [IBSI_ROI]
    mask = masks[IBSI_ROI]
    assert mask.dtype == np.uint8 and mask.shape == ibsi_reference_mask.shape == (47, 134, 136)
    differences = int(np.count_nonzero(mask != ibsi_reference_mask))
    assert differences == 0, (
        f"{differences} voxels differ from CT_mask.nii.gz ({int(mask.sum())} vs {int(ibsi_reference_mask.sum())})"
    )
    assert int(mask.sum()) == 5564


def test_ibsi_rtstruct_on_a_flipped_grid_is_the_flipped_mask(
    ibsi: DicomSeries, ibsi_dir: Path, ibsi_reference_mask: np.ndarray
) -> None:
    """Same physical grid, rows and slices stored in reverse: the direction cosines must be honoured."""
    image = ibsi.image
    flipped = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    flipped.SetSpacing(image.GetSpacing())
    _, ny, nz = image.GetSize()
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint((0, ny - 1, nz - 1)))
    flipped.SetDirection((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0))
    mask = read_rtstruct(ibsi_dir / "dicom" / "CT" / "mask" / "RS.dcm", flipped)[IBSI_ROI]
    np.testing.assert_array_equal(mask, ibsi_reference_mask[::-1, ::-1, :])


def test_ibsi_contour_off_the_image_names_the_roi(ibsi: DicomSeries, ibsi_dir: Path) -> None:
    cropped = ibsi.image[:, :, :25]  # the GTV has contours up to slice 30
    with pytest.raises(DicomError, match=rf"RS\.dcm: ROI '{IBSI_ROI}' has a contour at z = .* not fall on a slice"):
        read_rtstruct(ibsi_dir / "dicom" / "CT" / "mask" / "RS.dcm", cropped)


# ---------------------------------------------------------------- TotalSegmentator: DICOM series vs its NIfTI output


@pytest.fixture(scope="module")
def totalseg(shared_data: Path) -> DicomSeries:
    return read_ct_series(shared_data / "totalsegmentator" / "example_ct_dicom")


def test_totalsegmentator_series_geometry_matches_its_segmentation_in_physical_space(
    totalseg: DicomSeries, shared_data: Path
) -> None:
    """example_seg_dicom.nii.gz is TotalSegmentator's output for this series, stored with the y axis flipped."""
    image = totalseg.image
    seg = sitk.ReadImage(str(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz"))
    assert image.GetSize() == seg.GetSize() == (512, 512, 20)
    assert image.GetSpacing() == pytest.approx((0.9765625, 0.9765625, 2.0))  # 2 mm apart, though 3 mm thick
    assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert seg.GetDirection() == pytest.approx((1, 0, 0, 0, -1, 0, 0, 0, 1))
    corner = seg.TransformIndexToPhysicalPoint((0, 0, 0))  # first row of the NIfTI = last row of the DICOM
    assert image.TransformIndexToPhysicalPoint((0, 511, 0)) == pytest.approx(corner)
    on_ct_grid = sitk.Resample(seg, image, sitk.Transform(), sitk.sitkNearestNeighbor, 255)
    labels = sitk.GetArrayFromImage(on_ct_grid)
    assert not np.any(labels == 255)  # every CT voxel is covered by the segmentation
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(seg)[:, ::-1, :])

    hu = sitk.GetArrayFromImage(image)
    spleen = labels == 1
    assert spleen.sum() == 130634
    assert 40 <= np.median(hu[spleen]) <= 150  # contrast-enhanced spleen
    naive = sitk.GetArrayFromImage(seg) == 1  # ignoring the flip puts the "spleen" in fat/air
    assert np.median(hu[naive]) < 0


def test_totalsegmentator_hu_is_the_rescaled_stored_value(totalseg: DicomSeries) -> None:
    hu = sitk.GetArrayFromImage(totalseg.image)
    assert totalseg.image.GetPixelID() == sitk.sitkInt16 and hu.min() == -1024
    for k in (0, 10, 19):
        dataset = pydicom.dcmread(totalseg.files[k])  # JPEG 2000 lossless, decoded by pydicom independently of GDCM
        expected = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
        np.testing.assert_array_equal(hu[k], expected)
        assert float(dataset.ImagePositionPatient[2]) == pytest.approx(totalseg.image.GetOrigin()[2] + 2.0 * k)


def test_totalsegmentator_deidentified_uids(totalseg: DicomSeries, caplog: pytest.LogCaptureFixture) -> None:
    """The files have empty Study/Series/SOP Instance UIDs; the SOP UIDs come from the file meta instead."""
    assert totalseg.study_instance_uid == "" and totalseg.series_instance_uid == ""
    assert totalseg.frame_of_reference_uid == "1.3.12.2.1107.5.1.4.60064.30000022120807274275100000041"
    assert all(path.name == f"CT.{uid}" for path, uid in zip(totalseg.files, totalseg.sop_instance_uids, strict=True))
    with caplog.at_level("WARNING", logger="pipeline.io.dicom"):
        read_ct_series(totalseg.folder)
    assert "no SeriesInstanceUID" in caplog.text and "MediaStorageSOPInstanceUID" in caplog.text


# ---------------------------------------------------------------- rt-utils mock data: a square with a hole


def test_rt_utils_rtstruct_with_a_hole(shared_data: Path) -> None:
    folder = shared_data / "rt_utils" / "mock_data"
    series = read_ct_series(folder)  # rt.dcm in the same folder is not a CT and is ignored
    assert series.image.GetSize() == (512, 512, 2) and series.image.GetSpacing()[2] == pytest.approx(5.0)

    # the mock RTSTRUCT references these very CT slices but carries a different FrameOfReferenceUID
    referenced = pydicom.dcmread(folder / "rt.dcm").ReferencedFrameOfReferenceSequence[0]
    series_item = referenced.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert [i.ReferencedSOPInstanceUID for i in series_item.ContourImageSequence] == list(series.sop_instance_uids)
    with pytest.raises(DicomError, match=r"rt\.dcm: ROI 'ROI-1' is in frame of reference 1\.2\.826\.0\.1\.3680043"):
        read_rtstruct(folder / "rt.dcm", series.image, series.frame_of_reference_uid)

    mask = read_rtstruct(folder / "rt.dcm", series.image)["ROI-1"]
    assert mask[1].sum() == 0  # both contours lie on the first slice (z = 60 mm)
    outer, hole = (c[:, :2] for c in _contours(folder / "rt.dcm", "ROI-1"))
    assert _shoelace(hole) < _shoelace(outer)

    # oracle: XOR of both polygons, tested voxel centre by voxel centre with PNPOLY in index coordinates
    origin, spacing = np.asarray(series.image.GetOrigin()[:2]), np.asarray(series.image.GetSpacing()[:2])
    outer_ij, hole_ij = (outer - origin) / spacing, (hole - origin) / spacing
    expected = np.zeros((512, 512), dtype=np.uint8)
    lo, hi = np.floor(outer_ij.min(axis=0)).astype(int), np.ceil(outer_ij.max(axis=0)).astype(int)
    for j in range(lo[1], hi[1] + 1):
        for i in range(lo[0], hi[0] + 1):
            expected[j, i] = _inside_pnpoly(i, j, outer_ij) != _inside_pnpoly(i, j, hole_ij)
    np.testing.assert_array_equal(mask[0], expected)
    centre = np.round(hole_ij.mean(axis=0)).astype(int)
    assert mask[0, centre[1], centre[0]] == 0  # the hole is a hole
    area = mask.sum() * spacing.prod()
    assert area == pytest.approx(_shoelace(outer) - _shoelace(hole), rel=0.03)  # 351.5 mm²


# ---------------------------------------------------------------- dicompyler-core breast case vs dicompyler's volume


def test_dicompyler_single_slice_folder(shared_data: Path) -> None:
    folder = shared_data / "dicompyler_core"  # ct.0.dcm + rtss.dcm + rtplan.dcm + a licence text file
    series = read_ct_series(folder)
    assert series.image.GetSize() == (512, 512, 1)
    assert series.image.GetSpacing()[2] == pytest.approx(3.0)  # one slice: its SliceThickness
    assert series.series_instance_uid == "2.16.840.1.113662.2.12.0.3057.1241703565.43"
    with pytest.raises(DicomError, match=r"rtss\.dcm: ROI 'BODY' has a contour at z = -122\.44"):
        read_rtstruct(folder / "rtss.dcm", series.image, series.frame_of_reference_uid)


def test_dicompyler_rtstruct_volumes(shared_data: Path) -> None:
    """All 98 contour planes, rasterised on the CT's in-plane grid extended to the 98 slices the RTSTRUCT references."""
    folder = shared_data / "dicompyler_core"
    series = read_ct_series(folder)
    grid = sitk.Image(512, 512, 98, sitk.sitkUInt8)
    grid.SetSpacing((*series.image.GetSpacing()[:2], 3.0))
    grid.SetDirection(series.image.GetDirection())
    x, y, z = series.image.GetOrigin()  # ct.0.dcm is the most cranial of the 98 slices
    grid.SetOrigin((x, y, z - 97 * 3.0))
    masks = read_rtstruct(folder / "rtss.dcm", grid, series.frame_of_reference_uid)
    assert set(masks) == {"BODY", "Areola", "Borders", "Breast", "Heart", "Lt Lung", "Nodes", "Scar", "Tumor Bed",
                          "Tumor Bed Block"}
    assert masks["Areola"].sum() == 0  # no contours in the file
    pixel_mm2 = grid.GetSpacing()[0] * grid.GetSpacing()[1]

    heart = sorted(_contours(folder / "rtss.dcm", "Heart"), key=lambda c: c[0, 2])  # one contour per plane
    areas = np.array([_shoelace(c[:, :2]) for c in heart])
    slice_areas = masks["Heart"].sum(axis=(1, 2)) * pixel_mm2
    occupied = np.flatnonzero(slice_areas)
    assert occupied.tolist() == [round((c[0, 2] - grid.GetOrigin()[2]) / 3.0) for c in heart]
    np.testing.assert_allclose(slice_areas[occupied], areas, rtol=0.03)  # pixelisation, plane by plane
    assert slice_areas.sum() == pytest.approx(areas.sum(), rel=0.002)

    # dicompyler's CalculateStructureVolume (its test expects 432.84104445 cm³ for the Heart) sums area × 3 mm but
    # counts area // 2 for the first and last plane of its keys str(round(z, 2)) + "0" sorted as *strings*
    keys = [str(round(float(c[0, 2]), 2)) + "0" for c in heart]
    ends = {keys.index(min(keys)), keys.index(max(keys))}

    def dicompyler_volume(plane_areas: np.ndarray) -> float:
        return sum(a // 2 if k in ends else a for k, a in enumerate(plane_areas)) * 3.0 / 1000

    assert dicompyler_volume(areas) == pytest.approx(432.84104445, abs=1e-6)  # same contours, same areas
    assert dicompyler_volume(slice_areas[occupied]) == pytest.approx(432.84104445, rel=0.005)

    voxel_cm3 = pixel_mm2 * 3.0 / 1000
    assert masks["BODY"].sum() * voxel_cm3 == pytest.approx(14880.7, rel=0.005)  # Σ shoelace area × 3 mm
    assert masks["BODY"].any(axis=(1, 2)).all()  # the BODY is contoured on every one of the 98 slices
    for name in ("Heart", "Lt Lung", "Breast", "Tumor Bed"):  # organs lie inside the body contour
        assert np.count_nonzero(masks[name] & masks["BODY"]) == masks[name].sum()


# ---------------------------------------------------------------- bad input: every error names the folder or file


@pytest.fixture
def ibsi_copy(ibsi: DicomSeries, tmp_path: Path) -> Path:
    folder = tmp_path / "ct"
    folder.mkdir()
    for path in ibsi.files:
        shutil.copy(path, folder / path.name)
    return folder


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match=_at(tmp_path) + r": no CT series in this folder \(no DICOM files\)"):
        read_ct_series(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match=_at(tmp_path / "nope") + r": not a folder"):
        read_ct_series(tmp_path / "nope")


def test_folder_without_ct(shared_data: Path, tmp_path: Path) -> None:
    shutil.copy(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "mask" / "RS.dcm", tmp_path)
    (tmp_path / "notes.txt").write_text("not DICOM")
    expected = _at(tmp_path) + r": no CT series in this folder \(modalities found: RTSTRUCT\)"
    with pytest.raises(DicomError, match=expected):
        read_ct_series(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:300], "corrupt DICOM file"),  # header cut short
        (lambda data: data[:-5000], "corrupt or unreadable pixel data"),  # pixel data cut short
        (lambda data: b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(3000), "corrupt DICOM file"),
        (lambda data: b"", "empty file"),
    ],
    ids=["truncated-header", "truncated-pixels", "garbage-after-preamble", "zero-bytes"],
)
def test_corrupt_slice_is_named(ibsi_copy: Path, damage: Callable[[bytes], bytes], message: str) -> None:
    victim = ibsi_copy / "000010.dcm"
    victim.write_bytes(damage(victim.read_bytes()))
    with pytest.raises(DicomError, match=_at(victim) + rf": {message}"):
        read_ct_series(ibsi_copy)


def test_missing_slice_is_refused(ibsi_copy: Path) -> None:
    (ibsi_copy / "000010.dcm").unlink()
    with pytest.raises(DicomError, match=_at(ibsi_copy) + r": slices are not evenly spaced \(6\.540 mm between"):
        read_ct_series(ibsi_copy)


def test_two_series_need_a_choice(ibsi: DicomSeries, ibsi_copy: Path, shared_data: Path) -> None:
    for path in (shared_data / "rt_utils" / "mock_data").glob("ct_*.dcm"):
        shutil.copy(path, ibsi_copy)
    with pytest.raises(DicomError, match=_at(ibsi_copy) + r": 2 CT series found, pass series_uid") as error:
        read_ct_series(ibsi_copy)
    assert ibsi.series_instance_uid in str(error.value)
    assert "2.16.840.1.114362.1.11940992.23790159890.563423471.893.88" in str(error.value)
    chosen = read_ct_series(ibsi_copy, series_uid=ibsi.series_instance_uid)
    assert chosen.sop_instance_uids == ibsi.sop_instance_uids
    with pytest.raises(DicomError, match=r"no CT series with SeriesInstanceUID 1\.2\.3;"):
        read_ct_series(ibsi_copy, series_uid="1.2.3")


def test_rtstruct_in_another_frame_of_reference(ibsi: DicomSeries, ibsi_dir: Path, tmp_path: Path) -> None:
    dataset = pydicom.dcmread(ibsi_dir / "dicom" / "CT" / "mask" / "RS.dcm")
    dataset.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.4"
    for roi in dataset.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = "1.2.3.4"
    moved = tmp_path / "other_frame.dcm"
    dataset.save_as(moved)
    expected = _at(moved) + rf": ROI '{IBSI_ROI}' is in frame of reference 1\.2\.3\.4, the image is in"
    with pytest.raises(DicomError, match=expected):
        read_rtstruct(moved, ibsi.image, ibsi.frame_of_reference_uid)
    assert read_rtstruct(moved, ibsi.image)[IBSI_ROI].sum() == 5564  # without the check it still rasterises


def test_bad_rtstruct_files(ibsi: DicomSeries, ibsi_dir: Path, tmp_path: Path) -> None:
    data = (ibsi_dir / "dicom" / "CT" / "mask" / "RS.dcm").read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DicomError, match=_at(truncated) + r": corrupt DICOM file"):
        read_rtstruct(truncated, ibsi.image)
    text = tmp_path / "notes.dcm"
    text.write_text("not DICOM at all")
    with pytest.raises(DicomError, match=_at(text) + r": not a DICOM file"):
        read_rtstruct(text, ibsi.image)
    with pytest.raises(DicomError, match=_at(ibsi.files[0]) + r": not an RTSTRUCT \(Modality CT\)"):
        read_rtstruct(ibsi.files[0], ibsi.image)
    with pytest.raises(DicomError, match=_at(tmp_path / "absent.dcm") + r": no such file"):
        read_rtstruct(tmp_path / "absent.dcm", ibsi.image)


# ---------------------------------------------------------------- integrity: preamble, damaged .dcm, contours outside


@pytest.mark.parametrize("victim", ["000046.dcm", "000020.dcm"], ids=["last-slice", "middle-slice"])
def test_slice_without_preamble_is_read_as_dicom(ibsi: DicomSeries, ibsi_copy: Path, victim: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Skipped with a warning before: as the last slice, the series came back one slice short without an error."""
    path = ibsi_copy / victim
    path.write_bytes(path.read_bytes()[132:])  # no 128-byte preamble, no "DICM"
    with caplog.at_level("WARNING", logger="pipeline.io.dicom"):
        series = read_ct_series(ibsi_copy)
    assert "no DICOM preamble" in caplog.text and victim in caplog.text
    assert series.image.GetSize() == ibsi.image.GetSize() == (136, 134, 47)
    assert series.sop_instance_uids == ibsi.sop_instance_uids
    np.testing.assert_array_equal(sitk.GetArrayFromImage(series.image), sitk.GetArrayFromImage(ibsi.image))


def test_slice_without_preamble_or_file_meta_is_read_too(ibsi: DicomSeries, ibsi_copy: Path) -> None:
    path = ibsi_copy / "000046.dcm"
    dataset = pydicom.dcmread(path)
    del dataset.file_meta
    dataset.preamble = None
    dataset.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    series = read_ct_series(ibsi_copy)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(series.image), sitk.GetArrayFromImage(ibsi.image))


def test_dcm_file_that_is_not_dicom_is_refused(ibsi_copy: Path) -> None:
    (ibsi_copy / "000046.dcm").write_text("a note saved over the last slice\n")
    with pytest.raises(DicomError, match=_at(ibsi_copy / "000046.dcm") + r": not a DICOM file though named \.dcm"):
        read_ct_series(ibsi_copy)
    (ibsi_copy / "000046.dcm").unlink()
    (ibsi_copy / "notes.txt").write_text("not DICOM")  # other names are skipped with a warning, as before
    assert read_ct_series(ibsi_copy).image.GetSize() == (136, 134, 46)


def test_uneven_spacing_names_the_positions(ibsi_copy: Path) -> None:
    (ibsi_copy / "000030.dcm").unlink()
    with pytest.raises(DicomError, match=r"positions along the slice normal: …, -137\.340, -134\.070, -130\.800, "
                                         r"-124\.260, -120\.990, -117\.720, … \(46 slices, -225\.630 to -75\.210 mm\)"):
        read_ct_series(ibsi_copy)


def test_series_over_the_voxel_limit_is_refused_before_its_pixels(ibsi_dir: Path) -> None:
    with pytest.raises(DicomError, match=r": the header declares 136x134x47 = 856528 values, over the limit of 856527"):
        read_ct_series(ibsi_dir / "dicom" / "CT" / "image", max_voxels=856527)


def _shifted_rtstruct(ibsi_dir: Path, folder: Path, dx: float) -> Path:
    dataset = pydicom.dcmread(ibsi_dir / "dicom" / "CT" / "mask" / "RS.dcm")
    for contour in dataset.ROIContourSequence[0].ContourSequence:
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3) + np.array([dx, 0.0, 0.0])
        contour.ContourData = [f"{v:.6f}" for v in points.ravel()]
    path = folder / f"shifted_{dx:g}.dcm"
    dataset.save_as(path)
    return path


def test_contour_partly_outside_is_clipped_and_reported(
    ibsi: DicomSeries, ibsi_dir: Path, ibsi_reference_mask: np.ndarray, tmp_path: Path,
    caplog: pytest.LogCaptureFixture
) -> None:
    """Moved by 60 voxels to the right the GTV crosses the image's edge: the mask is the part inside, and the ROI's
    volume inside and in all (all = the unmoved mask's 5564 voxels) are returned and logged."""
    dx = 60 * ibsi.image.GetSpacing()[0]  # whole voxels: the moved mask is the reference mask shifted
    with caplog.at_level("WARNING", logger="pipeline.io.rtstruct"):
        masks, clipped = rasterise_rtstruct(_shifted_rtstruct(ibsi_dir, tmp_path, dx), ibsi.image)
    expected = np.zeros_like(ibsi_reference_mask)
    expected[:, :, 60:] = ibsi_reference_mask[:, :, :-60]
    np.testing.assert_array_equal(masks[IBSI_ROI], expected)
    voxel_ml = float(np.prod(ibsi.image.GetSpacing())) / 1000
    assert clipped == [Clipping(IBSI_ROI, pytest.approx(int(expected.sum()) * voxel_ml),
                                pytest.approx(5564 * voxel_ml))]
    assert int(expected.sum()) < 5564
    assert f"ROI '{IBSI_ROI}' lies partly outside the image: {clipped[0].inside_ml:.2f} of its 17.35 mL" in caplog.text
    assert rasterise_rtstruct(ibsi_dir / "dicom" / "CT" / "mask" / "RS.dcm", ibsi.image)[1] == []


def test_contour_entirely_outside_is_an_error_naming_the_roi(ibsi: DicomSeries, ibsi_dir: Path,
                                                               tmp_path: Path) -> None:
    moved = _shifted_rtstruct(ibsi_dir, tmp_path, 500.0)
    with pytest.raises(DicomError, match=_at(moved) + rf": ROI '{IBSI_ROI}' lies entirely outside the image: its "
                                         r"contours enclose 17\.35 mL, none of it inside the image's 136 x 134"):
        read_rtstruct(moved, ibsi.image)
