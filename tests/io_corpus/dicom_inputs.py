"""Bad DICOM inputs to ``python -m pipeline run``: damaged copies of the real IBSI STS_019 and TotalSegmentator
series and of the IBSI RTSTRUCT (its ROI renamed "spleen", a label of the demo models). Each fails its case."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from tests.io_corpus.build import Bad, Inputs

IBSI_SERIES = "1.3.6.1.4.1.14519.5.2.1.5168.1900.765539934738455737579746613899"


def _series(inputs: Inputs, damage: Callable[[Path], object], source: Path | None = None, **extra: str) -> list[str]:
    """``run`` of a copy of the IBSI series (or ``source``) damaged by ``damage(folder)``."""
    folder = inputs.copy(source or inputs.good.ibsi / "image", "ct")
    damage(folder)
    return inputs.run(folder, **extra)


def _slice(name: str, edit: Callable[[Dataset], object]) -> Callable[[Path], None]:
    """A damage that edits one slice's dataset (``edit(dataset)``) and saves it."""
    def damage(folder: Path) -> None:
        dataset = pydicom.dcmread(folder / name)
        edit(dataset)
        dataset.save_as(folder / name)

    return damage


def _each_slice(edit: Callable[[int, Dataset], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        for k, path in enumerate(sorted(folder.iterdir())):
            dataset = pydicom.dcmread(path)
            edit(k, dataset)
            dataset.save_as(path)

    return damage


def _bytes(name: str, change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).write_bytes(change((folder / name).read_bytes()))

    return damage


def _rtstruct(inputs: Inputs, edit: Callable[[Dataset], object], rename: bool = True) -> list[str]:
    """``run`` of the IBSI series with a copy of its RTSTRUCT edited by ``edit(dataset)``."""
    dataset = pydicom.dcmread(inputs.good.ibsi / "mask" / "RS.dcm")
    if rename:
        dataset.StructureSetROISequence[0].ROIName = "spleen"
    edit(dataset)
    path = inputs.folder / "rs.dcm"
    dataset.save_as(path)
    return inputs.run(inputs.good.ibsi / "image", path)


def _move_contours(dx: float = 0.0, dz: float = 0.0) -> Callable[[Dataset], None]:
    def edit(dataset: Dataset) -> None:
        for contour in dataset.ROIContourSequence[0].ContourSequence:
            points = [float(v) for v in contour.ContourData]
            contour.ContourData = [f"{v + (dx if k % 3 == 0 else dz if k % 3 == 2 else 0.0):.4f}"
                                   for k, v in enumerate(points)]

    return edit


def _far_point(dataset: Dataset) -> None:
    contour = dataset.ROIContourSequence[0].ContourSequence[0]
    values = list(contour.ContourData)
    values[0] = "1e7"
    contour.ContourData = values


def _second_roi(dataset: Dataset) -> None:
    twin = copy.deepcopy(dataset.StructureSetROISequence[0])
    twin.ROINumber = 2
    dataset.StructureSetROISequence.append(twin)


def _other_frame(dataset: Dataset) -> None:
    dataset.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.4"
    for roi in dataset.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = "1.2.3.4"


def _copy_in(source: Path, *names: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        for name in names:
            shutil.copy(source / name, folder / name)

    return damage


def _only_rtstruct(inputs: Inputs) -> list[str]:
    folder = inputs.folder / "ct"
    folder.mkdir()
    shutil.copy(inputs.good.ibsi / "mask" / "RS.dcm", folder)
    return inputs.run(folder)


def _empty_folder(inputs: Inputs) -> list[str]:
    (inputs.folder / "ct").mkdir()
    return inputs.run(inputs.folder / "ct")


def _tilt(k: int, dataset: Dataset) -> None:
    x, y, z = (float(v) for v in dataset.ImagePositionPatient)
    dataset.ImagePositionPatient = [x + 0.5 * k, y, z]


def _ts(inputs: Inputs) -> Path:
    return inputs.good.shared / "totalsegmentator" / "example_ct_dicom"


def _ts_slice(inputs: Inputs, k: int) -> str:
    return sorted(_ts(inputs).iterdir())[k].name


def _unlink(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _text(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text("a note, not a slice\n" * 40)


CT = r".*/ct"
READ = {"exit_code": 1, "stage": "read"}
REFERENCE = {"exit_code": 1, "stage": "reference"}

DICOM = [
    # ---- the CT series
    Bad("dicom-slice-header-truncated", "run", lambda i: _series(i, _bytes("000010.dcm", lambda d: d[:300])),
        CT + r"/000010\.dcm: corrupt DICOM file \(.*\)", **READ),
    Bad("dicom-slice-pixels-truncated", "run", lambda i: _series(i, _bytes("000010.dcm", lambda d: d[:-5000])),
        CT + r"/000010\.dcm: corrupt or unreadable pixel data \(.*\)", **READ),
    Bad("dicom-slice-zero-bytes", "run", lambda i: _series(i, _bytes("000010.dcm", lambda d: b"")),
        CT + r"/000010\.dcm: empty file \(0 bytes\)", **READ),
    Bad("dicom-slice-not-dicom", "run", lambda i: _series(i, _text("000010.dcm")),
        CT + r"/000010\.dcm: not a DICOM file though named \.dcm \(damaged or truncated\?\)", **READ),
    Bad("dicom-slice-garbage-after-preamble", "run", lambda i: _series(i, _bytes(
        "000010.dcm", lambda d: d[:132] + bytes(range(256)) * 12)), CT + r"/000010\.dcm: corrupt DICOM file \(.*\)",
        **READ),
    Bad("dicom-middle-slice-missing", "run", lambda i: _series(i, _unlink("000010.dcm")),
        CT + r": slices are not evenly spaced \(6\.540 mm between 000009\.dcm and 000011\.dcm, median 3\.270 mm; "
        r"missing slice\?\); positions along the slice normal: …, -202\.740, -199\.470, -196\.200, -189\.660, "
        r"-186\.390, -183\.120, … \(46 slices, -225\.630 to -75\.210 mm\)", **READ),
    Bad("dicom-slice-moved-1mm", "run", lambda i: _series(i, _slice("000020.dcm", lambda d: setattr(
        d, "ImagePositionPatient", [*list(d.ImagePositionPatient)[:2], float(d.ImagePositionPatient[2]) + 1.0]))),
        CT + r": slices are not evenly spaced \(2\.270 mm between 000020\.dcm and 000021\.dcm, median 3\.270 mm; "
        r"missing slice\?\); positions along the slice normal: …, -166\.770, -163\.500, -159\.230, -156\.960, "
        r"-153\.690, -150\.420, … \(47 slices, -225\.630 to -75\.210 mm\)", **READ),
    Bad("dicom-slice-twice", "run", lambda i: _series(i, lambda f: shutil.copy(f / "000010.dcm", f / "copy.dcm")),
        CT + r": 000010\.dcm and copy\.dcm share the position -192\.930 mm along the slice normal \(two acquisitions "
        r"in one series\?\)", **READ),
    Bad("dicom-two-series", "run", lambda i: _series(i, _copy_in(i.good.shared / "rt_utils" / "mock_data",
                                                                 "ct_1.dcm", "ct_2.dcm")),
        CT + r": 2 CT series found, pass series_uid \(the batch manifest's series_uid column\) to choose one: .*",
        **READ),
    Bad("dicom-series-uid-not-there", "run", lambda i: _series(i, lambda f: None, series_uid="1.2.3"),
        CT + r": no CT series with SeriesInstanceUID 1\.2\.3; CT series here: " + IBSI_SERIES.replace(".", r"\.")
        + r" \(47 files, .*\)", **READ),
    Bad("dicom-only-rtstruct", "run", _only_rtstruct,
        CT + r": no CT series in this folder \(modalities found: RTSTRUCT\)", **READ),
    Bad("dicom-empty-folder", "run", _empty_folder, CT + r": no CT series in this folder \(no DICOM files\)", **READ),
    Bad("dicom-slice-other-rows", "run", lambda i: _series(i, _slice("000005.dcm", lambda d: setattr(d, "Rows", 100))),
        CT + r"/000005\.dcm: Rows/Columns/PixelSpacing differ from 000000\.dcm in the same series", **READ),
    Bad("dicom-slice-other-orientation", "run", lambda i: _series(i, _slice("000005.dcm", lambda d: setattr(
        d, "ImageOrientationPatient", [0, 1, 0, 1, 0, 0]))),
        CT + r"/000005\.dcm: ImageOrientationPatient differs from 000000\.dcm in the same series", **READ),
    Bad("dicom-slice-position-two-numbers", "run", lambda i: _series(i, _slice("000005.dcm", lambda d: setattr(
        d, "ImagePositionPatient", [1.0, 2.0]))),
        CT + r"/000005\.dcm: ImagePositionPatient must hold 3 numbers, got .*", **READ),
    Bad("dicom-slice-multi-frame", "run", lambda i: _series(i, _slice("000005.dcm", lambda d: setattr(
        d, "NumberOfFrames", 2))), CT + r"/000005\.dcm: multi-frame \(enhanced\) CT is not supported", **READ),
    Bad("dicom-gantry-tilt", "run", lambda i: _series(i, _each_slice(_tilt)),
        CT + r": slice positions are not along the slice normal \(gantry tilt\?\); not supported", **READ),
    Bad("dicom-slices-disagree-on-study", "run", lambda i: _series(i, _slice("000005.dcm", lambda d: setattr(
        d, "StudyInstanceUID", "1.2.3.4"))), CT + r": the CT slices disagree on StudyInstanceUID: .*", **READ),
    Bad("dicom-duplicate-sop-instance", "run", lambda i: _series(i, _slice("000005.dcm", lambda d: setattr(
        d, "SOPInstanceUID", pydicom.dcmread(i.good.ibsi / "image" / "000006.dcm").SOPInstanceUID))),
        CT + r": duplicate SOPInstanceUIDs in the CT series", **READ),
    Bad("dicom-series-over-the-limit", "run", lambda i: _series(i, lambda f: None),
        CT + r": the header declares 136x134x47 = 856528 values, over the limit of 100000 \(QA_MAX_VOXELS\)",
        env={"QA_MAX_VOXELS": "100000"}, **READ),
    Bad("totalseg-pixels-truncated", "run", lambda i: _series(i, _bytes(_ts_slice(i, 7), lambda d: d[:-20000]),
                                                             source=_ts(i)),
        CT + r"/CT\.1\.3\.12\.2\.1107\.5\.1\.4\.60064\.\d+: corrupt or unreadable pixel data \(.*\)", **READ),
    Bad("totalseg-slice-replaced-by-a-note", "run", lambda i: _series(i, _text(_ts_slice(i, 7)), source=_ts(i)),
        CT + r": slices are not evenly spaced \(4\.000 mm between .*", **READ),
    # ---- the RTSTRUCT reference
    Bad("rtstruct-roi-entirely-outside", "run", lambda i: _rtstruct(i, _move_contours(dx=1000.0)),
        r".*/rs\.dcm: ROI 'spleen' lies entirely outside the image: its contours enclose 17\.3\d mL, none of it inside "
        r"the image's 136 x 134 voxels", **REFERENCE),
    Bad("rtstruct-contour-far-away", "run", lambda i: _rtstruct(i, _far_point),
        r".*/rs\.dcm: ROI 'spleen' has a contour spanning \d+ x \d+ voxels, far outside the image \(wrong "
        r"coordinates\?\)", **REFERENCE),
    Bad("rtstruct-contours-off-the-slices", "run", lambda i: _rtstruct(i, _move_contours(dz=500.0)),
        r".*/rs\.dcm: ROI 'spleen' has a contour at z = .* mm that does not fall on a slice of the image \(within "
        r"half a slice, 1\.63 mm\)", **REFERENCE),
    Bad("rtstruct-other-frame", "run", lambda i: _rtstruct(i, _other_frame),
        r".*/rs\.dcm: ROI 'spleen' is in frame of reference 1\.2\.3\.4, the image is in .*", **REFERENCE),
    Bad("rtstruct-no-matching-roi", "run", lambda i: _rtstruct(i, lambda d: None, rename=False),
        r".*/rs\.dcm: no ROI \(GTV_Mass_CT\) matches the model's labels lymph_nodes, spleen", **REFERENCE),
    Bad("rtstruct-two-rois-one-name", "run", lambda i: _rtstruct(i, _second_roi),
        r".*/rs\.dcm: two ROIs are named 'spleen'", **REFERENCE),
    Bad("rtstruct-unknown-roi-number", "run", lambda i: _rtstruct(i, lambda d: setattr(
        d.ROIContourSequence[0], "ReferencedROINumber", 99)),
        r".*/rs\.dcm: ROIContourSequence references ROI number 99, not in the structure set", **REFERENCE),
    Bad("rtstruct-contour-of-5-numbers", "run", lambda i: _rtstruct(i, lambda d: setattr(
        d.ROIContourSequence[0].ContourSequence[0], "ContourData", ["1", "2", "3", "4", "5"])),
        r".*/rs\.dcm: ROI 'spleen' has a contour with 5 coordinates \(need 3N, N >= 3\)", **REFERENCE),
    Bad("rtstruct-truncated", "run", lambda i: i.run(i.good.ibsi / "image", _half(i, i.good.ibsi / "mask" / "RS.dcm")),
        r".*/RS\.dcm: corrupt DICOM file \(.*\)", **REFERENCE),
    Bad("rtstruct-a-text-file", "run", lambda i: i.run(i.good.ibsi / "image", _note(i, "rs.dcm")),
        r".*/rs\.dcm: not a DICOM file \(no DICOM preamble, and no readable header without it\)", **REFERENCE),
    Bad("rtstruct-a-ct-slice", "run", lambda i: i.run(i.good.ibsi / "image", i.good.ibsi / "image" / "000000.dcm"),
        r".*/000000\.dcm: not an RTSTRUCT \(Modality CT\)", **REFERENCE),
]


def _half(inputs: Inputs, source: Path) -> Path:
    data = source.read_bytes()
    path = inputs.folder / source.name
    path.write_bytes(data[: len(data) // 2])
    return path


def _note(inputs: Inputs, name: str) -> Path:
    path = inputs.folder / name
    path.write_text("not DICOM at all\n")
    return path
