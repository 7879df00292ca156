"""DICOM in: one CT series as a SimpleITK image in HU, with the UIDs that reference it and how it was acquired.

``read_ct_series`` picks the CT series of a folder, orders its slices by ImagePositionPatient along the slice normal
and lets SimpleITK (GDCM) decode the pixels and apply RescaleSlope/RescaleIntercept. It returns the image with the
UIDs an RTSTRUCT written later must reference (study, series, frame of reference, SOP instances in slice order) and
the acquisition its first slice's header states (:mod:`pipeline.io.acquisition`, from the header already read).
RTSTRUCTs are read by :mod:`pipeline.io.rtstruct` and written by :mod:`pipeline.io.rtstruct_export`.

Every failure is a :class:`DicomError` (an :class:`~pipeline.errors.InputError`) whose message names the folder or
file.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pipeline.errors import InputError
from pipeline.io.acquisition import UNKNOWN, Acquisition, from_header
from pipeline.io.integrity import check_declared, first_line
from pipeline.settings import DEFAULT_MAX_VOXELS

__all__ = ["DicomError", "DicomSeries", "first_line", "read_ct_series"]

log = logging.getLogger(__name__)

#: slices whose positions deviate from an evenly spaced stack by more than this fraction of the spacing are refused
_SPACING_TOLERANCE = 0.05


_DICOMDIR = "1.2.840.10008.1.3.10"
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
_CT_STORAGE = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}


class DicomError(InputError):
    """A DICOM input that cannot be used; the message names the folder or file."""


@dataclass(frozen=True, eq=False)
class DicomSeries:
    """One CT series: the image in HU, the UIDs needed to reference it (e.g. from an RTSTRUCT) and its acquisition.

    ``sop_instance_uids[k]`` and ``files[k]`` belong to slice ``k`` of ``image`` (``GetArrayFromImage(image)[k]``).
    A UID the files leave empty (de-identified data) is ``""``; a warning is logged when that happens.
    Compared by identity (``sitk.Image`` has no boolean equality).
    """

    image: sitk.Image
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: tuple[str, ...]
    files: tuple[Path, ...]
    folder: Path
    acquisition: Acquisition = UNKNOWN


@dataclass(frozen=True)
class _Slice:
    path: Path
    header: Dataset
    position: NDArray[np.float64]


def read_dicom_header(path: Path) -> Dataset | None:
    """The DICOM header of ``path`` without pixels; ``None`` for a file that is not DICOM at all.

    A file without the 128-byte preamble and "DICM" prefix (some exporters and PACS dumps write them so) is read
    with pydicom's ``force=True`` and kept when it then has a Modality or SOPClassUID; its ``preamble`` is None.
    """
    if path.stat().st_size == 0:
        raise DicomError(f"{path}: empty file (0 bytes)")
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except Exception as error:  # pydicom raises many types for a broken file; all mean "corrupt"
        raise DicomError(f"{path}: corrupt DICOM file ({first_line(error)})") from error
    try:
        with warnings.catch_warnings():  # forced parsing of text or noise warns about VRs it guesses
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # forced parsing of a file that is not DICOM fails in many ways; it is not DICOM then
        return None
    if not (header_uid(header, "Modality") or header_uid(header, "SOPClassUID")):
        return None
    log.warning("%s: no DICOM preamble (\"DICM\" prefix); read as DICOM without it", path)
    return header


def header_uid(header: Dataset, keyword: str) -> str:
    value = header.get(keyword)
    return str(value).strip() if value is not None else ""


def _floats(header: Dataset, keyword: str, count: int, path: Path) -> NDArray[np.float64]:
    value = header.get(keyword)
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else np.empty(0)
    except (TypeError, ValueError) as error:
        raise DicomError(f"{path}: unreadable {keyword} ({error})") from error
    if array.shape != (count,):
        raise DicomError(f"{path}: {keyword} must hold {count} numbers, got {value!r}")
    return array


def _scan_folder(folder: Path) -> dict[str, list[tuple[Path, Dataset]]]:
    """CT headers of ``folder`` grouped by SeriesInstanceUID (non-DICOM files are skipped with a warning, unless
    named like DICOM: a ``.dcm`` file that is not DICOM is a damaged slice)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    modalities: set[str] = set()
    skipped: list[str] = []
    for path in files:
        header = read_dicom_header(path)
        if header is None:
            if path.suffix.lower() in _DICOM_SUFFIXES:
                raise DicomError(f"{path}: not a DICOM file though named {path.suffix} (damaged or truncated?)")
            skipped.append(path.name)
            continue
        modality = str(header.get("Modality", "")).strip()
        meta = getattr(header, "file_meta", None) or Dataset()
        storage_class = header_uid(meta, "MediaStorageSOPClassUID")
        if storage_class == _DICOMDIR:
            continue
        if not modality and (storage_class in _CT_STORAGE or not header_uid(header, "SOPClassUID")):
            raise DicomError(f"{path}: corrupt DICOM file (no Modality; truncated or damaged header?)")
        modalities.add(modality or "<none>")
        if modality == "CT":
            series[header_uid(header, "SeriesInstanceUID")].append((path, header))
    if skipped:
        log.warning("%s: skipped %d file(s) that are not DICOM: %s", folder, len(skipped), ", ".join(skipped[:5]))
    if not series:
        found = f"modalities found: {', '.join(sorted(modalities))}" if modalities else "no DICOM files"
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if subfolders:
            found += f"; subfolders are not searched: {', '.join(subfolders[:5])}"
        raise DicomError(f"{folder}: no CT series in this folder ({found})")
    return dict(series)


def _pick_series(
    folder: Path, series: dict[str, list[tuple[Path, Dataset]]], series_uid: str | None
) -> tuple[str, list[tuple[Path, Dataset]]]:
    listing = "; ".join(
        f"{uid or '<empty SeriesInstanceUID>'} ({len(items)} files, "
        f"{str(items[0][1].get('SeriesDescription', '')).strip() or 'no description'})"
        for uid, items in sorted(series.items())
    )
    if series_uid is not None:
        if series_uid not in series:
            raise DicomError(f"{folder}: no CT series with SeriesInstanceUID {series_uid}; CT series here: {listing}")
        return series_uid, series[series_uid]
    if len(series) > 1:
        raise DicomError(f"{folder}: {len(series)} CT series found, pass series_uid (the batch manifest's series_uid "
                         f"column) to choose one: {listing}")
    uid, items = next(iter(series.items()))
    return uid, items


def _positions(along: NDArray[np.float64], k: int) -> str:
    """The slice positions (mm) around slices k and k + 1, for an error message."""
    lo, hi = max(k - 2, 0), min(k + 4, len(along))
    shown = ", ".join(["…"] * (lo > 0) + [f"{v:.3f}" for v in along[lo:hi]] + ["…"] * (hi < len(along)))
    return f"{shown} ({len(along)} slices, {along[0]:.3f} to {along[-1]:.3f} mm)"


def _order_slices(folder: Path, items: list[tuple[Path, Dataset]]) -> tuple[list[_Slice], NDArray[np.float64]]:
    """Slices sorted by position along the slice normal; refuses mixed grids, tilted or unevenly spaced stacks."""
    first_path, first = items[0]
    orientation = _floats(first, "ImageOrientationPatient", 6, first_path)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3) or abs(float(np.dot(row, col))) > 1e-3:
        raise DicomError(f"{first_path}: ImageOrientationPatient {orientation.tolist()} is not two orthonormal axes")
    grid = (first.get("Rows"), first.get("Columns"), _floats(first, "PixelSpacing", 2, first_path))
    slices = []
    for path, header in items:
        if int(header.get("NumberOfFrames", 1) or 1) > 1:
            raise DicomError(f"{path}: multi-frame (enhanced) CT is not supported")
        if not np.allclose(_floats(header, "ImageOrientationPatient", 6, path), orientation, atol=1e-4):
            raise DicomError(f"{path}: ImageOrientationPatient differs from {first_path.name} in the same series")
        if (header.get("Rows"), header.get("Columns")) != grid[:2] or not np.allclose(
            _floats(header, "PixelSpacing", 2, path), grid[2], atol=1e-6
        ):
            raise DicomError(f"{path}: Rows/Columns/PixelSpacing differ from {first_path.name} in the same series")
        slices.append(_Slice(path, header, _floats(header, "ImagePositionPatient", 3, path)))
    slices.sort(key=lambda s: float(np.dot(s.position, normal)))
    along = np.array([float(np.dot(s.position, normal)) for s in slices])
    if len(slices) > 1:
        steps = np.diff(along)
        if np.any(steps < 1e-3):
            k = int(np.argmin(steps))
            raise DicomError(
                f"{folder}: {slices[k].path.name} and {slices[k + 1].path.name} share the position {along[k]:.3f} mm "
                "along the slice normal (two acquisitions in one series?)"
            )
        spacing = (along[-1] - along[0]) / (len(slices) - 1)
        deviation = np.abs(along - (along[0] + spacing * np.arange(len(slices))))
        if deviation.max() > _SPACING_TOLERANCE * spacing:
            typical = float(np.median(steps))
            k = int(np.argmax(np.abs(steps - typical)))
            raise DicomError(
                f"{folder}: slices are not evenly spaced ({steps[k]:.3f} mm between {slices[k].path.name} and "
                f"{slices[k + 1].path.name}, median {typical:.3f} mm; missing slice?); positions along the slice "
                f"normal: {_positions(along, k)}"
            )
        offsets = np.array([s.position - slices[0].position for s in slices])
        in_plane = offsets - np.outer(offsets @ normal, normal)
        if np.abs(in_plane).max() > _SPACING_TOLERANCE * spacing:
            raise DicomError(f"{folder}: slice positions are not along the slice normal (gantry tilt?); not supported")
    return slices, normal


def _failing_file(paths: list[Path]) -> Path | None:
    """A file SimpleITK cannot decode on its own (used to name the culprit when the series read fails); files whose
    size is furthest from the median are tried first (a truncated slice), as decoding each can take a while."""
    sizes = {path: path.stat().st_size for path in paths}
    median = float(np.median(list(sizes.values())))
    for path in sorted(paths, key=lambda p: -abs(sizes[p] - median)):
        try:
            sitk.ReadImage(str(path))
        except RuntimeError:
            return path
    return None


def _readable_copies(slices: list[_Slice], workdir: Path) -> list[Path]:
    """The slices' files, each one that lacks the DICOM preamble replaced by a copy that has it (GDCM needs it)."""
    readable = []
    for k, item in enumerate(slices):
        if item.header.preamble is not None:
            readable.append(item.path)
            continue
        copy = workdir / f"{k:06d}.dcm"
        try:
            pydicom.dcmread(item.path, force=True).save_as(copy, enforce_file_format=True)
        except Exception as error:  # pydicom raises many types for a dataset it cannot write; all mean "corrupt"
            raise DicomError(f"{item.path}: corrupt DICOM file ({first_line(error)})") from error
        readable.append(copy)
    return readable


def _read_pixels(folder: Path, slices: list[_Slice]) -> sitk.Image:
    paths = [s.path for s in slices]
    reader = sitk.ImageSeriesReader()
    with tempfile.TemporaryDirectory(prefix="qa-dicom-") as workdir:
        readable = _readable_copies(slices, Path(workdir))
        reader.SetFileNames([str(p) for p in readable])
        try:
            image = reader.Execute()
        except RuntimeError as error:
            culprit = _failing_file(readable)
            where = (f"{paths[readable.index(culprit)]}: corrupt or unreadable pixel data" if culprit
                     else f"{folder}: the CT series is unreadable")
            raise DicomError(f"{where} ({first_line(error)})") from error
    if image.GetDimension() == 2:  # defensive: a single slice may come back 2-D
        image = sitk.JoinSeries(image)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DicomError(f"{folder}: the CT series is not single-channel")
    return image


def _check_geometry(folder: Path, image: sitk.Image, slices: list[_Slice], normal: NDArray[np.float64]) -> None:
    """SimpleITK must have kept our slice order: origin at the first slice, third axis along the normal."""
    if image.GetSize()[2] != len(slices):
        raise DicomError(f"{folder}: read {image.GetSize()[2]} slices from {len(slices)} files")
    direction = np.reshape(image.GetDirection(), (3, 3))
    if not np.allclose(image.GetOrigin(), slices[0].position, atol=1e-3):
        raise DicomError(f"{folder}: image origin {image.GetOrigin()} is not the first slice's position")
    if len(slices) > 1:
        if not np.allclose(direction[:, 2], normal, atol=1e-4):
            axis = direction[:, 2].tolist()
            raise DicomError(f"{folder}: slice axis {axis} is not the slice normal {normal.tolist()}")
        expected = float(np.dot(slices[-1].position - slices[0].position, normal)) / (len(slices) - 1)
        if not np.isclose(image.GetSpacing()[2], expected, rtol=1e-3):
            raise DicomError(f"{folder}: slice spacing {image.GetSpacing()[2]} mm, the positions say {expected} mm")


def _series_uids(folder: Path, slices: list[_Slice]) -> tuple[str, str, str, tuple[str, ...]]:
    """Study, series, frame-of-reference and SOP instance UIDs; empty ones are logged, conflicting ones refused."""
    found: dict[str, str] = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {header_uid(s.header, keyword) for s in slices}
        if len(values) > 1:
            raise DicomError(f"{folder}: the CT slices disagree on {keyword}: {sorted(values)}")
        found[keyword] = values.pop()
        if not found[keyword]:
            log.warning("%s: the CT series has no %s (de-identified data?); recorded as ''", folder, keyword)
    sop_uids = []
    from_meta = 0
    for s in slices:
        uid = header_uid(s.header, "SOPInstanceUID")
        if not uid:
            uid = header_uid(s.header.file_meta, "MediaStorageSOPInstanceUID") if hasattr(s.header, "file_meta") else ""
            if not uid:
                raise DicomError(f"{s.path}: no SOPInstanceUID (nor MediaStorageSOPInstanceUID in the file meta)")
            from_meta += 1
        sop_uids.append(uid)
    if from_meta:
        log.warning("%s: %d slice(s) have an empty SOPInstanceUID; used the file meta's MediaStorageSOPInstanceUID",
                    folder, from_meta)
    if len(set(sop_uids)) != len(sop_uids):
        raise DicomError(f"{folder}: duplicate SOPInstanceUIDs in the CT series")
    return found["StudyInstanceUID"], found["SeriesInstanceUID"], found["FrameOfReferenceUID"], tuple(sop_uids)


def read_ct_series(folder: Path, series_uid: str | None = None, max_voxels: int = DEFAULT_MAX_VOXELS) -> DicomSeries:
    """Read the CT series of ``folder`` (one level, not recursive) into an image in Hounsfield units.

    Files that are not DICOM are skipped with a warning (a ``.dcm`` file is refused instead); a file without the
    DICOM preamble is read when it is DICOM otherwise; files of other modalities (RTSTRUCT, RTPLAN …) are ignored.
    A series of more than ``max_voxels`` voxels (Rows × Columns × slices) is refused before its pixels are read.
    With several CT series in the folder, ``series_uid`` chooses one (the error lists them; a batch manifest has a
    ``series_uid`` column for it).
    Slices are sorted by ImagePositionPatient projected on the slice normal (row × column direction cosines);
    SimpleITK/GDCM decodes them and applies RescaleSlope/RescaleIntercept (pixel type as GDCM returns it: a signed
    integer type for integer rescaling, floating point otherwise).

    Raises:
        DicomError: no such folder, no CT series, an empty or corrupt file (named), ambiguous series, or a stack
            SimpleITK cannot represent faithfully (mixed grids, duplicate or unevenly spaced slices, gantry tilt).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"{folder}: not a folder")
    uid, items = _pick_series(folder, _scan_folder(folder), series_uid)
    slices, normal = _order_slices(folder, items)
    first = slices[0].header
    try:
        check_declared(folder, (int(first.get("Columns") or 0), int(first.get("Rows") or 0), len(slices)), max_voxels)
    except InputError as error:
        raise DicomError(str(error)) from None
    image = _read_pixels(folder, slices)
    _check_geometry(folder, image, slices, normal)
    if len(slices) == 1:  # one slice has no slice spacing: ITK says 1 mm; the slice thickness is the better guess
        thickness = float(slices[0].header.get("SliceThickness") or 0.0)
        if thickness > 0:
            image.SetSpacing((*image.GetSpacing()[:2], thickness))
    study, series, frame, sop_uids = _series_uids(folder, slices)
    log.info("%s: CT series %s, %d slices, size %s, spacing %s", folder, uid or "<empty UID>", len(slices),
             image.GetSize(), tuple(round(v, 4) for v in image.GetSpacing()))
    return DicomSeries(
        image=image,
        study_instance_uid=study,
        series_instance_uid=series,
        frame_of_reference_uid=frame,
        sop_instance_uids=sop_uids,
        files=tuple(s.path for s in slices),
        folder=folder,
        acquisition=from_header(first, slices[0].path),
    )
