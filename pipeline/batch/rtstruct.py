"""An RTSTRUCT as the batch's reference: its ROIs rasterised and mapped to the model's labels by name.

An ROI belongs to a label when their names agree after lower-casing and dropping everything but letters and
digits (``Lymph Nodes`` → ``lymph_nodes``); ROIs of one label are merged; other ROIs are ignored (logged). Where
ROIs of two labels overlap, the higher label index wins, as when painting labels in order.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.batch.cases import CaseError
from pipeline.dicom import DicomError, read_rtstruct

log = logging.getLogger(__name__)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def reference_from_rtstruct(path: Path, image: sitk.Image, labels: tuple[str, ...],
                            frame_of_reference_uid: str | None = None) -> NDArray[np.uint8]:
    """Label map (Z, Y, X) of the RTSTRUCT's ROIs whose names match ``labels`` (index 0 = background)."""
    try:
        masks = read_rtstruct(path, image, frame_of_reference_uid)
    except DicomError as error:
        raise CaseError("reference", str(error)) from error
    wanted = {_key(name): index for index, name in enumerate(labels) if index > 0}
    reference = np.zeros(tuple(reversed(image.GetSize())), dtype=np.uint8)
    matched = []
    for roi, mask in sorted(masks.items(), key=lambda item: wanted.get(_key(item[0]), 0)):
        index = wanted.get(_key(roi))
        if index is None:
            log.info("%s: ROI %r matches no label of %s; ignored", path, roi, labels)
            continue
        reference[mask.astype(bool)] = index
        matched.append(roi)
    if not matched:
        raise CaseError("reference", f"{path}: no ROI ({', '.join(sorted(masks))}) matches the model's labels "
                        f"{', '.join(labels[1:])}")
    return reference
