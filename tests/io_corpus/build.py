"""Good input files made once per test module, and the ways the corpus damages copies of them."""

from __future__ import annotations

import gzip
import re
import shutil
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.metrics.pooling import softmax
from pipeline.phantoms.ct import generate_phantom

DEMO_MODELS = Path(__file__).resolve().parents[2] / "models" / "demo"
DEMO_MANIFEST = DEMO_MODELS / "manifest.json"
SHAPE = (12, 32, 32)  # phantom (Z, Y, X)
SPACING_ZYX = (3.0, 2.0, 2.0)


@dataclass(frozen=True)
class Bad:
    """One bad input: the argv it builds, the exit code, and the answer as a regex (``re.fullmatch``).

    ``message`` is the line after ``error: `` on stderr when ``exit_code`` is 2, or the reason recorded in
    ``case_failures`` (``stage``) when a ``run`` fails its one case (exit code 1). ``env`` runs it with these
    environment variables over the store's (settings read from the environment).
    """

    name: str
    verb: str
    build: Callable[[Inputs], Sequence[str]]
    message: str
    exit_code: int = 2
    stage: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def at(path: Path) -> str:
    """The regex of a message that names ``path``."""
    return re.escape(str(path))


def write_image(array: NDArray[np.generic], path: Path, like: sitk.Image | None = None,
                spacing_zyx: Sequence[float] = SPACING_ZYX) -> Path:
    """``array`` (Z, Y, X) as an image file, on ``like``'s grid when given."""
    image = sitk.GetImageFromArray(array)
    if like is not None:
        image.CopyInformation(like)
    else:
        image.SetSpacing(tuple(reversed([float(v) for v in spacing_zyx])))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut ``path`` to the first ``keep`` of its bytes (in place)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def flip_byte(path: Path, offset: int) -> Path:
    """Invert one byte of ``path`` (a negative offset counts from the end)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def edit_gzip(path: Path, edit: Callable[[bytes], bytes]) -> Path:
    """Decompress ``path``, ``edit`` its bytes and compress them again: a well-formed gzip of changed content."""
    path.write_bytes(gzip.compress(edit(gzip.decompress(path.read_bytes()))))
    return path


def forge_nifti_dims(dims: Sequence[int]) -> Callable[[bytes], bytes]:
    """An edit of a little-endian NIfTI-1 header that declares ``dims`` (x, y, z) without adding data."""
    def edit(data: bytes) -> bytes:
        header = bytearray(data)
        header[42:42 + 2 * len(dims)] = struct.pack("<" + "h" * len(dims), *dims)
        return bytes(header)

    return edit


def forged_npy(path: Path, shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"\0" * 64) -> Path:
    """A .npy whose header declares ``shape`` followed by only ``data``."""
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": dtype, "fortran_order": False, "shape": shape})
        handle.write(data)
    return path


class Good:
    """The good files every bad input starts from, made once in ``root``."""

    def __init__(self, root: Path, shared_data: Path) -> None:
        self.root, self.shared = root, shared_data

    @cached_property
    def phantom(self) -> tuple[Path, Path]:
        """A phantom CT and its reference (NIfTI, 12 x 32 x 32 at 3 x 2 x 2 mm)."""
        phantom = generate_phantom(1, shape=SHAPE, spacing=SPACING_ZYX)
        return (write_image(phantom.ct, self.root / "ct.nii.gz"),
                write_image(phantom.labels, self.root / "reference.nii.gz"))

    @cached_property
    def labels(self) -> NDArray[np.uint8]:
        """The phantom's reference labels (Z, Y, X)."""
        return sitk.GetArrayFromImage(sitk.ReadImage(str(self.phantom[1])))

    @cached_property
    def probs(self) -> NDArray[np.float32]:
        """Three-class probabilities (C, Z, Y, X) near the phantom's reference."""
        logits = np.stack([4.0 * (self.labels == c) for c in range(3)]).astype(np.float32)
        return softmax(logits)

    @cached_property
    def probs_npy(self) -> Path:
        """The probabilities as .npy."""
        np.save(self.root / "probs.npy", self.probs)
        return self.root / "probs.npy"

    @cached_property
    def probs_nii(self) -> Path:
        """The probabilities as a 4-D NIfTI on the reference's grid."""
        image = sitk.GetImageFromArray(self.probs, isVector=False)
        image.SetSpacing((*reversed(SPACING_ZYX), 1.0))
        sitk.WriteImage(image, str(self.root / "probs.nii.gz"))
        return self.root / "probs.nii.gz"

    @cached_property
    def spleen(self) -> tuple[Path, Path]:
        """TotalSegmentator's spleen on its real 3 mm CT grid (reference NIfTI, direction (-1, -1, 1)) and a
        two-class probability map of it on the same grid: ``evaluate`` gives DSC 1.0 on them."""
        seg = sitk.ReadImage(str(self.shared / "totalsegmentator" / "example_seg.nii.gz"))
        spleen = (sitk.GetArrayFromImage(seg) == 1).astype(np.uint8)
        reference = write_image(spleen, self.root / "spleen.nii.gz", like=seg)
        probs = np.stack([1.0 - 0.9 * spleen, 0.9 * spleen]).astype(np.float32) + np.float32(0.05)
        image = sitk.GetImageFromArray(probs / probs.sum(axis=0), isVector=False)
        image.SetSpacing((*seg.GetSpacing(), 1.0))
        image.SetOrigin((*seg.GetOrigin(), 0.0))
        direction = np.eye(4)
        direction[:3, :3] = np.reshape(seg.GetDirection(), (3, 3))
        image.SetDirection(direction.ravel().tolist())
        sitk.WriteImage(image, str(self.root / "spleen_probs.nii.gz"))
        return self.root / "spleen_probs.nii.gz", reference

    @property
    def ibsi(self) -> Path:
        """The IBSI STS_019 DICOM folder (``image/`` series, ``mask/RS.dcm``), read only."""
        return self.shared / "ibsi_sts_019" / "dicom" / "CT"


class Inputs:
    """One bad input's folder: copies of good files to damage, and the argv helpers."""

    def __init__(self, good: Good, folder: Path) -> None:
        self.good, self.folder = good, folder

    def copy(self, source: Path, name: str | None = None) -> Path:
        """A copy of a file or folder in this input's folder."""
        target = self.folder / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return target

    def models(self) -> Path:
        """A copy of the demo models' manifest and weights; returns the manifest."""
        return self.copy(DEMO_MODELS, "models") / "manifest.json"

    def evaluate(self, probs: Path | Sequence[Path], reference: Path, *extra: str) -> list[str]:
        """The argv of ``evaluate``."""
        members = [str(p) for p in ([probs] if isinstance(probs, Path) else probs)]
        return ["evaluate", "--probs", *members, "--reference", str(reference), *extra]

    def run(self, ct: Path, reference: Path | None = None, *extra: str, series_uid: str = "",
            models: Path = DEMO_MANIFEST) -> list[str]:
        """The argv of ``run`` over a one-case manifest (no TTA: nothing loads torch before a case is read)."""
        manifest = self.folder / "cases.csv"
        manifest.write_text(f"case,ct,reference,series_uid\nbad,{ct},{reference or ''},{series_uid}\n")
        return ["run", str(manifest), "--models", str(models), "--no-tta", "--no-progress", *extra]
