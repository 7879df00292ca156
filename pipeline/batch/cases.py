"""The batch's cases: found in a folder, a CSV manifest or DICOM series folders, then loaded and checked.

A cohort folder holds ``images/<case>.nii.gz`` (also ``<case>_0000.nii.gz``, ``.nii``, ``.mha``, ``.nrrd``) and,
optionally, ``references/<case>.<same suffixes>``. A CSV manifest has the columns ``case, ct`` and optionally
``reference, patient, cohort, reference_note, mrn, series_uid`` (``mrn``: the hospital number, stored only as a
keyed hash; ``series_uid``: the SeriesInstanceUID of the CT series to read when the ``ct`` folder holds several);
``ct`` may be an image file or a DICOM series folder, ``reference`` an image file or an RTSTRUCT (``.dcm``);
relative paths are read from the manifest's folder. A DICOM root holds one series folder per case. Loading checks
what the nightly job must not trust: a complete, readable CT of a sane size, a reference on the same grid (size,
spacing, origin, direction), reference labels the model knows; RTSTRUCT ROIs clipped to the image are noted.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.errors import InputError
from pipeline.io.ct import nifti_non_finite, read_ct
from pipeline.io.geometry import Geometry, mismatch
from pipeline.io.integrity import read_image_file
from pipeline.io.rtstruct import labels_from_rtstruct
from pipeline.settings import DEFAULT_MAX_VOXELS

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


class CaseError(InputError):
    """A case that cannot be processed; ``stage`` says where (``read``, ``reference``, ``geometry``, …)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class CaseSpec:
    """One case as listed: where its CT and reference are, and who it belongs to."""

    name: str
    ct: Path
    reference: Path | None = None
    patient: str | None = None
    cohort: str = "default"
    reference_note: str | None = None
    mrn_hash: str | None = None
    series_uid: str | None = None

    @property
    def source_kind(self) -> str:
        """``dicom`` for a series folder, else ``image``."""
        return "dicom" if self.ct.is_dir() else "image"


@dataclass(frozen=True)
class DicomUids:
    """UIDs of a CT read from a DICOM series (empty strings where the files leave them empty)."""

    study: str
    series: str
    frame_of_reference: str


@dataclass(frozen=True)
class LoadedCase:
    """A case read and checked: the CT, the reference labels (None without one), content hashes, and notes on the
    reference the user must see (an RTSTRUCT ROI clipped to the image); ``reference_source`` where a reference not
    given in the input came from (an attached one: :mod:`pipeline.batch.kept_reference`)."""

    spec: CaseSpec
    image: sitk.Image
    labels: NDArray[np.uint8] | None
    content_hash: str
    reference_hash: str | None
    uids: DicomUids | None = None
    reference_notes: tuple[str, ...] = ()
    reference_source: str | None = None

    @property
    def reference_note(self) -> str | None:
        """The manifest's reference note followed by the notes found while loading (None when there is none)."""
        notes = [note for note in (self.spec.reference_note, *self.reference_notes) if note]
        return "; ".join(notes) or None

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size (z, y, x) in mm."""
        x, y, z = self.image.GetSpacing()
        return (float(z), float(y), float(x))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[:-5] if name.endswith("_0000") else name


def _images_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES):
            found[_stem(path)] = path
    return found


def cases_from_folder(folder: Path, cohort: str = "default") -> list[CaseSpec]:
    """Cases of a cohort folder (``images/`` and optional ``references/``), sorted by name."""
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise InputError(f"{folder}: a cohort folder needs an images/ subfolder")
    references = _images_in(folder / "references") if (folder / "references").is_dir() else {}
    return [CaseSpec(name, path, references.get(name), cohort=cohort) for name, path in _images_in(images_dir).items()]


def hash_mrn(mrn: str, source: Path, salt: str | None) -> str | None:
    """HMAC-SHA-256 of a hospital number keyed by ``salt``, the department's secret (``QA_MRN_SALT``); the number
    itself is never stored."""
    if not mrn:
        return None
    if not salt:
        raise InputError(f"{source}: the manifest gives an mrn; set QA_MRN_SALT (a secret of the department) so that "
                         "only its keyed hash is stored")
    return hmac.new(salt.encode(), mrn.encode(), hashlib.sha256).hexdigest()


def manifest_rows(path: Path, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    """The rows of the CSV manifest ``path`` (one dict per row); InputError when it cannot be read, lacks one of the
    ``required`` columns (``what`` names the manifest in the message) or lists no row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheet exports start with a BOM
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable CSV manifest ({error})") from error
    if not set(required) <= columns:
        raise InputError(f"{path}: {what} needs a header with at least the columns {', '.join(required)}")
    if not rows:
        raise InputError(f"{path}: the manifest lists no case")
    return rows


def cases_from_manifest(path: Path, cohort: str = "default", mrn_salt: str | None = None) -> list[CaseSpec]:
    """Cases of a CSV manifest (see the module's description); duplicate case names are refused; ``mrn_salt`` keys
    the hash of an ``mrn`` column."""
    rows = manifest_rows(path, ("case", "ct"), "a manifest")
    base = path.parent
    cases = []
    for number, row in enumerate(rows, start=2):
        if not (row.get("case") or "").strip() or not (row.get("ct") or "").strip():
            raise InputError(f"{path}:{number}: case and ct must not be empty")
        reference = (row.get("reference") or "").strip()
        cases.append(CaseSpec(
            name=row["case"].strip(),
            ct=base / row["ct"].strip(),
            reference=base / reference if reference else None,
            patient=(row.get("patient") or "").strip() or None,
            mrn_hash=hash_mrn((row.get("mrn") or "").strip(), path, mrn_salt),
            cohort=(row.get("cohort") or "").strip() or cohort,
            reference_note=(row.get("reference_note") or "").strip() or None,
            series_uid=(row.get("series_uid") or "").strip() or None,
        ))
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{path}: duplicate case names {duplicates}")
    return cases


def cases_from_dicom_root(root: Path, cohort: str = "default") -> list[CaseSpec]:
    """One case per subfolder of ``root`` that holds DICOM files (named after the folder)."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    return [CaseSpec(sub.name, sub, cohort=cohort) for sub in sorted(root.iterdir()) if sub.is_dir()]


def discover(source: Path, cohort: str = "default", mrn_salt: str | None = None) -> list[CaseSpec]:
    """Cases from a CSV manifest (``*.csv``), a cohort folder (with ``images/``) or a root of DICOM folders; a
    source without any case is refused."""
    if source.is_file() and source.suffix.lower() == ".csv":
        return cases_from_manifest(source, cohort, mrn_salt)
    if (source / "images").is_dir():
        cases = cases_from_folder(source, cohort)
        if not cases:
            raise InputError(f"{source}: no case found (images/ holds no {', '.join(IMAGE_SUFFIXES)} file)")
        return cases
    if source.is_dir():
        cases = cases_from_dicom_root(source, cohort)
        if not cases:
            raise InputError(f"{source}: no case found (no images/ folder and no subfolder of DICOM series)")
        return cases
    raise InputError(f"{source}: not a CSV manifest, a cohort folder or a folder of DICOM series")


def _hash_image(image: sitk.Image, voxels: NDArray[np.generic]) -> str:
    digest = hashlib.sha256()
    digest.update(repr((image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())).encode())
    digest.update(str(voxels.dtype).encode())
    digest.update(np.ascontiguousarray(voxels).tobytes())
    return digest.hexdigest()


def read_reference(path: Path, image: sitk.Image, labels: tuple[str, ...], frame_of_reference: str | None,
                   max_voxels: int) -> tuple[NDArray[np.uint8], tuple[str, ...]]:
    """A reference's label map on ``image``'s grid and the notes the user must see: an RTSTRUCT (``.dcm``,
    rasterised, ROIs mapped to ``labels`` by name, in ``frame_of_reference`` when given) or a label image on the
    same grid; every problem is a :class:`CaseError` naming the file (``reference``, ``geometry``)."""
    try:
        if path.suffix.lower() == ".dcm":
            array, clipped = labels_from_rtstruct(path, image, labels, frame_of_reference)
            notes = tuple(clip.describe() for clip in clipped)
        else:
            array, notes = _read_label_image(path, image, labels, max_voxels), ()
    except CaseError:
        raise
    except InputError as error:
        raise CaseError("reference", str(error)) from error
    if not array.any():
        raise CaseError("reference", f"{path}: the reference is empty (no foreground voxel)")
    return array, notes


def reference_hash(image: sitk.Image, labels: NDArray[np.uint8]) -> str:
    """The content hash of a reference label map on ``image``'s grid (``images.reference_hash``)."""
    reference_image = sitk.GetImageFromArray(labels)
    reference_image.CopyInformation(image)
    return _hash_image(reference_image, labels)


def _read_label_image(path: Path, image: sitk.Image, labels: tuple[str, ...], max_voxels: int) -> NDArray[np.uint8]:
    reference = read_image_file(path, "reference", max_voxels)
    expected, actual = Geometry.of(image), Geometry.of(reference)
    differs = mismatch(expected, actual)
    if differs:
        raise CaseError("geometry", f"{path}: reference grid differs from the CT: {differs}; reference "
                        f"{actual.describe()}; CT {expected.describe()}")
    array = sitk.GetArrayFromImage(reference)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)) or nifti_non_finite(path):
            raise CaseError("reference", f"{path}: reference labels must be integers")
        array = array.astype(np.int64)
    values = np.unique(array)
    if values.min() < 0 or values.max() >= len(labels):
        raise CaseError("reference", f"{path}: reference labels {values.tolist()} outside the model's "
                        f"0..{len(labels) - 1} ({', '.join(labels)})")
    return array.astype(np.uint8)


def load_case(spec: CaseSpec, labels: tuple[str, ...], max_voxels: int = DEFAULT_MAX_VOXELS) -> LoadedCase:
    """Read and check one case; every problem is a :class:`CaseError` naming the file. A CT or reference header
    declaring more than ``max_voxels`` voxels is refused before its voxels are read."""
    try:
        ct = read_ct(spec.ct, spec.series_uid, max_voxels)
    except InputError as error:
        raise CaseError("read", str(error)) from error
    image, series = ct.image, ct.series
    uids = DicomUids(series.study_instance_uid, series.series_instance_uid, series.frame_of_reference_uid
                     ) if series is not None else None
    voxels = sitk.GetArrayViewFromImage(image)
    content_hash = _hash_image(image, voxels)
    if spec.reference is None:
        return LoadedCase(spec, image, None, content_hash, None, uids)
    reference, notes = read_reference(spec.reference, image, labels, uids.frame_of_reference if uids else None,
                                      max_voxels)
    return LoadedCase(spec, image, reference, content_hash, reference_hash(image, reference), uids, notes)
