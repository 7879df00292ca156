"""RTSTRUCT export: contours traced on voxel edges re-import through pipeline.io.rtstruct.read_rtstruct onto the same
voxels, on synthetic grids of any orientation, on IBSI STS_019 and on the TotalSegmentator DICOM series."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.ndimage import binary_dilation, gaussian_filter

from pipeline.io.dicom import DicomSeries, read_ct_series
from pipeline.io.rtstruct import read_rtstruct
from pipeline.io.rtstruct_export import (
    ReferencedSeries,
    RoiMask,
    RtstructError,
    referenced_series,
    trace_slice,
    write_rtstruct,
)
from tests.dciodvfy import dciodvfy_errors


def _area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_traced_loops_follow_voxel_edges() -> None:
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    loops = trace_slice(ring)
    assert sorted(len(loop) for loop in loops) == [4, 4]  # outer square and hole, collinear vertices dropped
    areas = sorted(_area(loop) for loop in loops)
    assert areas[0] * areas[1] < 0 and sorted(abs(a) for a in areas) == [1.0, 25.0]  # opposite orientations
    assert all(np.all(np.mod(loop, 1.0) == 0.5) for loop in loops)  # on the half-voxel lines
    diagonal = np.eye(3, dtype=bool)
    assert len(trace_slice(diagonal)) == 3  # corner neighbours get separate loops
    assert trace_slice(np.zeros((3, 3), dtype=bool)) == []


def _synthetic_reference(shape: tuple[int, int, int], direction: tuple[float, ...]) -> ReferencedSeries:
    image = sitk.Image(shape[2], shape[1], shape[0], sitk.sitkInt16)
    image.SetSpacing((0.7, 1.3, 2.5))
    image.SetOrigin((-101.3, 44.25, -300.0))
    image.SetDirection(direction)
    sop = tuple(f"1.2.3.{k + 1}" for k in range(shape[0]))
    return ReferencedSeries(image, "1.2.3.100", "1.2.3.200", "1.2.3.300", ("1.2.840.10008.5.1.4.1.1.2",) * shape[0],
                            sop, (("PatientID", "SYN"),))


OBLIQUE = tuple(sitk.VersorTransform((0.3, 0.2, 0.9), 0.4).GetMatrix())
DIRECTIONS = {"identity": (1, 0, 0, 0, 1, 0, 0, 0, 1), "flipped": (-1, 0, 0, 0, -1, 0, 0, 0, 1), "oblique": OBLIQUE}


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_random_masks_round_trip_exactly(direction: str, tmp_path: Path) -> None:
    """Noise blobs with holes, islands in holes, single voxels, diagonal contacts and voxels on the border."""
    rng = np.random.default_rng(7)
    shape = (6, 33, 41)
    reference = _synthetic_reference(shape, DIRECTIONS[direction])
    blobs = gaussian_filter(rng.random(shape), (0, 1.5, 1.5)) > 0.5
    speckle = rng.random(shape) > 0.93
    border = np.zeros(shape, dtype=bool)
    border[:, 0, :] = border[:, :, -1] = True
    rois = [RoiMask("blobs", blobs), RoiMask("speckle", speckle), RoiMask("border", border),
            RoiMask("empty", np.zeros(shape, dtype=np.uint8))]
    path = write_rtstruct(tmp_path / "rs.dcm", rois, reference)
    back = read_rtstruct(path, reference.image, reference.frame_of_reference_uid)
    for roi in rois:
        assert int(np.count_nonzero(back[roi.name] != roi.mask)) == 0, roi.name
    assert dciodvfy_errors(path) == []


@pytest.fixture(scope="module")
def ibsi(shared_data: Path) -> DicomSeries:
    return read_ct_series(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "image")


def test_ibsi_mask_round_trips_and_references_the_ct(ibsi: DicomSeries, shared_data: Path, tmp_path: Path) -> None:
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "ibsi_sts_019" / "nifti" / "CT_mask.nii.gz")))
    grown = binary_dilation(mask, iterations=2) & ~mask.astype(bool)  # a shell: every slice has a hole
    path = write_rtstruct(tmp_path / "rs.dcm", [RoiMask("GTV", mask), RoiMask("shell", grown)],
                          referenced_series(ibsi))
    back = read_rtstruct(path, ibsi.image, ibsi.frame_of_reference_uid)
    assert int(mask.sum()) == 5564
    assert int(np.count_nonzero(back["GTV"] != mask)) == 0
    assert int(np.count_nonzero(back["shell"] != grown)) == 0
    assert dciodvfy_errors(path) == []  # the CT's 17-character Study ID (SH: 16) is not copied

    written = pydicom.dcmread(path)
    assert written.StudyID == "" and written.PositionReferenceIndicator == "OM" and written.OperatorsName == ""
    assert written.Modality == "RTSTRUCT" and written.StudyInstanceUID == ibsi.study_instance_uid
    assert written.PatientID == "STS_019" and written.SeriesInstanceUID != ibsi.series_instance_uid
    frame = written.ReferencedFrameOfReferenceSequence[0]
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert frame.FrameOfReferenceUID == ibsi.frame_of_reference_uid
    assert series.SeriesInstanceUID == ibsi.series_instance_uid
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == list(ibsi.sop_instance_uids)
    for contour in written.ROIContourSequence[0].ContourSequence:
        z = float(contour.ContourData[2])
        k = round((z - ibsi.image.GetOrigin()[2]) / ibsi.image.GetSpacing()[2])
        assert contour.ContourImageSequence[0].ReferencedSOPInstanceUID == ibsi.sop_instance_uids[k]
        assert contour.NumberOfContourPoints * 3 == len(contour.ContourData)


@pytest.fixture(scope="module")
def totalseg(shared_data: Path) -> DicomSeries:
    return read_ct_series(shared_data / "totalsegmentator" / "example_ct_dicom")


def test_totalsegmentator_spleen_round_trips_with_generated_uids(
    totalseg: DicomSeries, shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The series' Study/Series Instance UIDs are empty: refused by default, generated (deterministic) on request."""
    with pytest.raises(RtstructError, match=r"example_ct_dicom: the CT series has no StudyInstanceUID.*"
                                            r"--allow-generated-uids"):
        referenced_series(totalseg)
    seg = sitk.ReadImage(str(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz"))  # y flipped vs the CT
    on_grid = sitk.Resample(seg, totalseg.image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    spleen = (sitk.GetArrayFromImage(on_grid) == 1).astype(np.uint8)
    assert int(spleen.sum()) == 130634
    with caplog.at_level(logging.WARNING, logger="pipeline.io.rtstruct_export"):
        reference = referenced_series(totalseg, allow_generated_uids=True)
    assert "generated StudyInstanceUID and SeriesInstanceUID" in caplog.text
    assert reference.generated == ("StudyInstanceUID", "SeriesInstanceUID")
    assert referenced_series(totalseg, allow_generated_uids=True).study_instance_uid == reference.study_instance_uid
    path = write_rtstruct(tmp_path / "rs.dcm", [RoiMask("QA spleen", spleen)], reference)
    back = read_rtstruct(path, totalseg.image, totalseg.frame_of_reference_uid)
    assert int(np.count_nonzero(back["QA spleen"] != spleen)) == 0
    assert dciodvfy_errors(path) == []
    written = pydicom.dcmread(path)
    assert "had no StudyInstanceUID or SeriesInstanceUID: generated" in written.StructureSetDescription
    series = written.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == list(totalseg.sop_instance_uids)


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    reference = _synthetic_reference((2, 4, 4), DIRECTIONS["identity"])
    with pytest.raises(RtstructError, match="ROI 'a': mask shape"):
        write_rtstruct(tmp_path / "x.dcm", [RoiMask("a", np.zeros((2, 4, 5)))], reference)
    with pytest.raises(RtstructError, match="ROI names must be unique"):
        write_rtstruct(tmp_path / "x.dcm", [RoiMask("a", np.zeros((2, 4, 4)))] * 2, reference)
