"""DICOM RTSTRUCT out: masks on a CT grid as CLOSED_PLANAR contours referencing the original CT series.

Contours follow voxel edges. On each axial slice, every boundary edge between a mask voxel and a non-mask voxel (or
the image border) becomes a segment on the half-voxel lines; the segments are chained into closed loops (at a
corner shared by two diagonal voxels the loop keeps to the voxel it came along, so diagonal neighbours get separate
loops) and collinear vertices are dropped. Outer boundaries and holes are separate loops; combined by the even-odd
rule they enclose exactly the mask's voxel centres, and no centre lies on an edge, so
:func:`pipeline.io.rtstruct.read_rtstruct` re-imports the mask voxel for voxel (tested on IBSI STS_019 and the
TotalSegmentator CT). The outlines are staircases on the voxel grid, not smoothed curves: they show what was
flagged, exactly.

Vertices go to patient coordinates through the image's origin, direction and spacing (any orientation), written
with 10 significant digits (DS allows 16 characters).

UIDs: the structure set is a new series in the CT's study, in its frame of reference, and every contour names the
SOP instance of its slice. A CT without a FrameOfReferenceUID is refused. De-identified series without a
StudyInstanceUID or SeriesInstanceUID (the TotalSegmentator example) are refused too unless the caller allows
generated UIDs: then deterministic UIDs (a hash of the frame of reference and the slices' SOP instance UIDs, so
every export of the series gets the same ones) stand in for them, the structure set's description says so, and a
warning is logged. A planning system then links the contours to the CT by frame of reference and SOP instance UIDs.

The file passes dicom3tools' ``dciodvfy`` without an error (the tests run it on every export kind): every Type 2
attribute of its modules is present, empty where the CT has none, and a value copied from the CT that is invalid
for its VR (a Study ID over 16 characters) is left empty with a warning rather than copied or truncated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import validate_value

from pipeline.errors import InputError
from pipeline.io.dicom import DicomSeries, read_dicom_header

log = logging.getLogger(__name__)

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"  # the classic Detached Study Management SOP class of RT references
PATIENT_AND_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                     "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
                     "PositionReferenceIndicator")
#: Type 2 attributes of the RTSTRUCT's modules (patient, general study, RT series, frame of reference): present,
#: empty when the CT has no valid value
TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
          "AccessionNumber", "ReferringPhysicianName", "OperatorsName", "PositionReferenceIndicator")
DISCLAIMER = "Uncertainty QA review regions; research / QA support, not a medical device, not for planning."


class RtstructError(InputError):
    """A structure set that cannot be written; the message names the series or ROI."""


@dataclass(frozen=True)
class ReferencedSeries:
    """What an RTSTRUCT must copy from the CT it references.

    ``sop_class_uids[k]``/``sop_instance_uids[k]`` belong to slice k of ``image``; ``generated`` names the UIDs
    that were generated because the CT left them empty.
    """

    image: sitk.Image
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uids: tuple[str, ...]
    sop_instance_uids: tuple[str, ...]
    patient: tuple[tuple[str, object], ...]
    generated: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoiMask:
    """One ROI to write: a name, a (Z, Y, X) mask on the referenced grid and a display colour."""

    name: str
    mask: NDArray[np.generic]
    color: tuple[int, int, int] = (255, 0, 0)


def _valid_copy(folder: Path, header: Dataset, keyword: str) -> object:
    """The CT's value of ``keyword`` when valid for its VR, else "" (logged): the exported file must pass dciodvfy
    (e.g. a 17-character Study ID, over SH's 16, is not copied; truncating it would make up another ID)."""
    value = header.get(keyword)
    try:
        validate_value(dictionary_VR(keyword), value, config.RAISE)
    except ValueError as error:
        log.warning("%s: the CT's %s %r is not valid DICOM (%s); the RTSTRUCT leaves it empty", folder, keyword,
                    str(value), error)
        return ""
    return value


def referenced_series(series: DicomSeries, allow_generated_uids: bool = False) -> ReferencedSeries:
    """The references of a CT read by :func:`pipeline.io.dicom.read_ct_series` (module docstring for empty UIDs)."""
    if not series.frame_of_reference_uid:
        raise RtstructError(f"{series.folder}: the CT series has no FrameOfReferenceUID; an RTSTRUCT cannot "
                            "reference it")
    headers = [read_dicom_header(path) for path in series.files]
    if any(header is None for header in headers):
        raise RtstructError(f"{series.folder}: a CT slice of the series is no longer readable DICOM")
    classes = tuple(str(h.get("SOPClassUID") or h.file_meta.get("MediaStorageSOPClassUID") or "").strip()
                    for h in headers)
    if not all(classes):
        raise RtstructError(f"{series.folder}: a CT slice has no SOPClassUID (nor MediaStorageSOPClassUID)")
    study, uid_series, generated = series.study_instance_uid, series.series_instance_uid, []
    for keyword, value in (("StudyInstanceUID", study), ("SeriesInstanceUID", uid_series)):
        if value:
            continue
        if not allow_generated_uids:
            raise RtstructError(
                f"{series.folder}: the CT series has no {keyword} (de-identified?); the RTSTRUCT could not reference "
                "it. Allow generated UIDs (--allow-generated-uids) to write one that references the frame of "
                "reference and the slices' SOP instance UIDs, with a generated placeholder for this UID"
            )
        generated.append(keyword)
    sources = [series.frame_of_reference_uid, *series.sop_instance_uids]
    if "StudyInstanceUID" in generated:
        study = str(generate_uid(entropy_srcs=["study", *sources]))
    if "SeriesInstanceUID" in generated:
        uid_series = str(generate_uid(entropy_srcs=["series", *sources]))
    if generated:
        log.warning("%s: generated %s for the RTSTRUCT's references (empty in the CT files)", series.folder,
                    " and ".join(generated))
    first = headers[0]
    patient = tuple((key, _valid_copy(series.folder, first, key)) for key in PATIENT_AND_STUDY
                    if first.get(key) is not None)
    return ReferencedSeries(series.image, study, uid_series, series.frame_of_reference_uid, classes,
                            series.sop_instance_uids, patient, tuple(generated))


def trace_slice(mask: NDArray[np.generic]) -> list[NDArray[np.float64]]:
    """Closed loops (each (N, 2): x = column, y = row, in voxel indices) along the voxel edges of a 2-D mask."""
    inside = np.pad(np.asarray(mask, dtype=bool), 1)
    core = inside[1:-1, 1:-1]
    rows, cols = core.shape
    starts, ends, owners = [], [], []
    # (neighbour offset, start corner, end corner) per side, corners as (dx, dy) from the voxel's top-left corner:
    # walking each loop keeps the voxel on the same side, so loops close and nest consistently
    for (dr, dc), start, end in (((-1, 0), (1, 0), (0, 0)), ((1, 0), (0, 1), (1, 1)),
                                 ((0, -1), (0, 0), (0, 1)), ((0, 1), (1, 1), (1, 0))):
        exposed = core & ~inside[1 + dr:rows + 1 + dr, 1 + dc:cols + 1 + dc]
        r, c = np.nonzero(exposed)
        starts.append(np.stack([c + start[0], r + start[1]], axis=1))
        ends.append(np.stack([c + end[0], r + end[1]], axis=1))
        owners.append(r * cols + c)
    start = np.concatenate(starts)
    end = np.concatenate(ends)
    owner = np.concatenate(owners)
    if start.size == 0:
        return []
    width = cols + 1
    start_id = start[:, 1] * width + start[:, 0]
    end_id = end[:, 1] * width + end[:, 0]
    by_start = np.argsort(start_id, kind="stable")
    first = np.searchsorted(start_id[by_start], end_id, side="left")
    last = np.searchsorted(start_id[by_start], end_id, side="right")
    successor = by_start[first]
    saddle = np.flatnonzero(last - first == 2)  # two ways on: keep to the voxel the loop came along
    other = by_start[first[saddle] + 1]
    switch = owner[other] == owner[saddle]
    successor[saddle[switch]] = other[switch]
    visited = np.zeros(len(start), dtype=bool)
    loops = []
    for seed in range(len(start)):
        if visited[seed]:
            continue
        chain = []
        edge = seed
        while not visited[edge]:
            visited[edge] = True
            chain.append(edge)
            edge = successor[edge]
        points = start[chain]
        heading = end[chain] - points
        turning = np.any(heading != np.roll(heading, 1, axis=0), axis=1)  # keep vertices where the heading changes
        loops.append(points[turning].astype(np.float64) - 0.5)
    return loops


def _patient_points(loop: NDArray[np.float64], k: int, image: sitk.Image) -> NDArray[np.float64]:
    index = np.column_stack([loop, np.full(len(loop), float(k))])
    direction = np.reshape(image.GetDirection(), (3, 3))
    return np.asarray(image.GetOrigin()) + (index * np.asarray(image.GetSpacing())) @ direction.T


def _contour_data(points: NDArray[np.float64]) -> list[str]:
    return [f"{value:.10g}" for value in points.ravel()]


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _roi_contours(roi: RoiMask, number: int, reference: ReferencedSeries) -> Dataset:
    contours = []
    for k in np.flatnonzero(np.asarray(roi.mask).reshape(roi.mask.shape[0], -1).any(axis=1)):
        for loop in trace_slice(roi.mask[k]):
            image_ref = _item(ReferencedSOPClassUID=reference.sop_class_uids[k],
                              ReferencedSOPInstanceUID=reference.sop_instance_uids[k])
            contours.append(_item(ContourImageSequence=DicomSequence([image_ref]),
                                  ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(loop),
                                  ContourData=_contour_data(_patient_points(loop, int(k), reference.image))))
    item = _item(ROIDisplayColor=list(roi.color), ReferencedROINumber=number)
    if contours:  # Type 3 with 1-n items: an empty ROI has none (dciodvfy refuses an empty sequence)
        item.ContourSequence = DicomSequence(contours)
    return item


def write_rtstruct(path: Path, rois: Sequence[RoiMask], reference: ReferencedSeries,
                   label: str = "QA review", now: datetime | None = None) -> Path:
    """Write ``rois`` as one RTSTRUCT referencing ``reference`` (module docstring); returns ``path``."""
    size = reference.image.GetSize()
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        raise RtstructError(f"ROI names must be unique, got {names}")
    for roi in rois:
        if tuple(roi.mask.shape) != (size[2], size[1], size[0]):
            raise RtstructError(f"ROI {roi.name!r}: mask shape {roi.mask.shape} is not the CT's (Z, Y, X) "
                                f"{(size[2], size[1], size[0])}")
    if len(reference.sop_instance_uids) != size[2]:
        raise RtstructError(f"{len(reference.sop_instance_uids)} SOP instance UIDs for {size[2]} slices")
    now = now or datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    data = Dataset()
    data.file_meta = meta
    data.SpecificCharacterSet = "ISO_IR 192"
    data.SOPClassUID, data.SOPInstanceUID = RT_STRUCTURE_SET_STORAGE, meta.MediaStorageSOPInstanceUID
    data.Modality = "RTSTRUCT"
    for keyword in TYPE_2:
        setattr(data, keyword, "")
    for keyword, value in reference.patient:
        setattr(data, keyword, value)
    data.StudyInstanceUID = reference.study_instance_uid
    data.SeriesInstanceUID = generate_uid()
    data.SeriesNumber = 900
    data.SeriesDescription = label
    data.Manufacturer = "uncertainty-qa"
    data.FrameOfReferenceUID = reference.frame_of_reference_uid
    data.StructureSetLabel = label[:16]
    data.StructureSetDate, data.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    data.InstanceCreationDate, data.InstanceCreationTime = data.StructureSetDate, data.StructureSetTime
    note = f" The CT files had no {' or '.join(reference.generated)}: generated." if reference.generated else ""
    data.StructureSetDescription = DISCLAIMER + note
    images = [_item(ReferencedSOPClassUID=c, ReferencedSOPInstanceUID=u)
              for c, u in zip(reference.sop_class_uids, reference.sop_instance_uids, strict=True)]
    series_ref = _item(SeriesInstanceUID=reference.series_instance_uid, ContourImageSequence=DicomSequence(images))
    study_ref = _item(ReferencedSOPClassUID=STUDY_REFERENCE_CLASS,
                      ReferencedSOPInstanceUID=reference.study_instance_uid,
                      RTReferencedSeriesSequence=DicomSequence([series_ref]))
    data.ReferencedFrameOfReferenceSequence = DicomSequence([_item(
        FrameOfReferenceUID=reference.frame_of_reference_uid, RTReferencedStudySequence=DicomSequence([study_ref]))])
    data.StructureSetROISequence = DicomSequence([
        _item(ROINumber=n, ReferencedFrameOfReferenceUID=reference.frame_of_reference_uid, ROIName=roi.name,
              ROIGenerationAlgorithm="AUTOMATIC") for n, roi in enumerate(rois, start=1)])
    data.ROIContourSequence = DicomSequence([_roi_contours(roi, n, reference) for n, roi in enumerate(rois, start=1)])
    data.RTROIObservationsSequence = DicomSequence([
        _item(ObservationNumber=n, ReferencedROINumber=n, RTROIInterpretedType="CONTROL", ROIInterpreter="")
        for n in range(1, len(rois) + 1)])
    path.parent.mkdir(parents=True, exist_ok=True)
    data.save_as(path, enforce_file_format=True)
    log.info("wrote %s: %d ROI(s) referencing series %s", path, len(rois), reference.series_instance_uid)
    return path
