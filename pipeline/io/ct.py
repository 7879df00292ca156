"""The one CT reader: an image file (NIfTI, MHA, NRRD …) or a folder holding one DICOM series, checked.

``predict``, the nightly batch and the demo all read CTs here. A DICOM folder goes through
:func:`pipeline.io.dicom.read_ct_series` (slice order, spacing and UIDs checked); a file through SimpleITK. Either
way the result is a 3-D single-channel image with finite voxels, read completely (a truncated or corrupt compressed
file is refused, see :mod:`pipeline.io.integrity`); anything else is an :class:`~pipeline.errors.InputError`
naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.io.dicom import DicomSeries, read_ct_series
from pipeline.io.integrity import is_nifti, read_image_file
from pipeline.settings import DEFAULT_MAX_VOXELS


@dataclass(frozen=True, eq=False)
class CtImage:
    """A CT as read: the image (HU) and, for a DICOM folder, its series (UIDs, files)."""

    image: sitk.Image
    series: DicomSeries | None
    path: Path


def nifti_non_finite(path: Path) -> bool:
    """Whether a float NIfTI file holds NaN or ±Inf: ITK < 6 reads those as 0 without a word (ITK PR #6683)."""
    if not is_nifti(path):
        return False
    import nibabel  # a dependency of nnunetv2

    try:
        image = nibabel.load(str(path))
        if not np.issubdtype(image.get_data_dtype(), np.floating):
            return False  # integer voxels cannot be NaN (the common int16 CT is not read twice)
        return not np.all(np.isfinite(np.asanyarray(image.dataobj)))
    except Exception:  # what ITK read, nibabel may not; ITK's reading stands then
        return False


def read_ct(path: Path, series_uid: str | None = None, max_voxels: int = DEFAULT_MAX_VOXELS) -> CtImage:
    """Read a CT from an image file or a DICOM series folder (``series_uid`` chooses among several series); a
    header declaring more than ``max_voxels`` voxels is refused before the pixels are read."""
    path = Path(path)
    series = None
    if path.is_dir():
        series = read_ct_series(path, series_uid, max_voxels)
        image = series.image
    elif not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    elif series_uid is not None:
        raise InputError(f"{path}: series_uid {series_uid} chooses among the series of a DICOM folder, this is a file")
    else:
        image = read_image_file(path, "CT", max_voxels)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: a CT must be a 3-D single-channel image, got {image.GetDimension()}-D")
    if not np.all(np.isfinite(sitk.GetArrayViewFromImage(image))) or nifti_non_finite(path):
        raise InputError(f"{path}: the CT holds NaN or infinite values")
    return CtImage(image, series, path)
