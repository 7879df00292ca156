"""CT images in and probability maps out, with SimpleITK, keeping the CT's geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray


def read_ct(path: Path) -> sitk.Image:
    """A CT from an image file (NIfTI, MHA, NRRD …) or a folder holding one DICOM series."""
    path = Path(path)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if len(series) != 1:
                raise ValueError(f"{path}: expected one DICOM series, found {len(series)}")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            image = reader.Execute()
        elif path.is_file():
            image = sitk.ReadImage(str(path))
        else:
            raise ValueError(f"{path}: no such file or folder")
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise ValueError(f"{path}: not a readable CT ({first})") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: a CT must be a 3-D single-channel image, got {image.GetDimension()}-D")
    return image


def write_probabilities(path: Path, probs: NDArray[np.floating], reference: sitk.Image) -> None:
    """Write class probabilities (C, Z, Y, X) as a 4-D NIfTI on ``reference``'s grid (4th axis = class)."""
    grid = tuple(reversed(reference.GetSize()))
    if probs.shape[1:] != grid:
        raise ValueError(f"probabilities {probs.shape[1:]} do not match the CT grid {grid}")
    image = sitk.GetImageFromArray(probs.astype(np.float32), isVector=False)
    image.SetSpacing((*reference.GetSpacing(), 1.0))
    image.SetOrigin((*reference.GetOrigin(), 0.0))
    direction = np.eye(4)
    direction[:3, :3] = np.reshape(reference.GetDirection(), (3, 3))
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(path), useCompression=True)
