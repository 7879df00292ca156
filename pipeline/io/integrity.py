"""Input files checked before and while they are read: declared sizes first, then the whole stream.

- :func:`check_declared` refuses a header declaring more values (voxels × channels) than ``max_voxels`` before
  anything is allocated (``QA_MAX_VOXELS``, :data:`pipeline.settings.DEFAULT_MAX_VOXELS`).
- :func:`check_nifti_stream` reads a NIfTI file to its end: a ``.nii.gz`` must decompress completely with its gzip
  CRC and length matching, and the voxel data after ``vox_offset`` must be exactly the size the header declares.
  ITK reads a truncated NIfTI (compressed or not) without an error and fills the missing slices with zeros; MetaImage
  and NRRD readers refuse truncated data themselves.
- :func:`read_image_file` is SimpleITK's reader with both checks; :func:`npy_header` reads a ``.npy`` header
  (shape, dtype) from a stream without reading its data.

Every refusal is an :class:`~pipeline.errors.InputError` whose one-line message starts with the file's path.
"""

from __future__ import annotations

import gzip
import math
import struct
import tokenize
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.settings import DEFAULT_MAX_VOXELS

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_BLOCK = 1 << 20
_NIFTI1_MAGIC = b"n+1\0"
_NIFTI2_MAGIC = b"n+2\0\r\n\x1a\n"


@dataclass(frozen=True)
class NiftiLayout:
    """Where a single-file NIfTI's voxel data lies: ``dims`` (x, y, z, …), bytes from ``vox_offset``."""

    dims: tuple[int, ...]
    bitpix: int
    vox_offset: int

    @property
    def data_bytes(self) -> int:
        """Bytes of voxel data the header declares."""
        return (math.prod(self.dims) * self.bitpix + 7) // 8


def first_line(error: BaseException) -> str:
    """The informative line of a reader's error: ITK's ``ERROR:`` line when there is one, else the first line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return next((line for line in lines if "ERROR:" in line), lines[0])


def describe_shape(shape: Sequence[int]) -> str:
    """``(3, 2000, 2000)`` → ``3x2000x2000``."""
    return "x".join(str(int(n)) for n in shape)


def check_declared(path: Path, shape: Sequence[int], max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
    """Refuse a header whose ``shape`` (any axes, channels included) holds more than ``max_voxels`` values."""
    values = math.prod(int(n) for n in shape)
    if values > max_voxels:
        raise InputError(f"{path}: the header declares {describe_shape(shape)} = {values} values, over the limit "
                         f"of {max_voxels} (QA_MAX_VOXELS)")


def is_nifti(path: Path) -> bool:
    """Whether ``path`` is named like a NIfTI file (.nii or .nii.gz)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _nifti_layout(head: bytes) -> NiftiLayout | None:
    """The layout of a single-file NIfTI-1 or NIfTI-2 header (either byte order); None for anything else."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348 and head[344:348] == _NIFTI1_MAGIC:
            dim = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            offset = int(struct.unpack(order + "f", head[108:112])[0])
        elif len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540 and head[4:12] == _NIFTI2_MAGIC:
            dim = struct.unpack(order + "8q", head[16:80])
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            offset = int(struct.unpack(order + "q", head[168:176])[0])
        else:
            continue
        if not 1 <= dim[0] <= 7 or bitpix <= 0:
            return None
        return NiftiLayout(tuple(int(n) for n in dim[1:dim[0] + 1]), int(bitpix), offset)
    return None


def _stream_length(path: Path, handle: BinaryIO, max_voxels: int) -> tuple[NiftiLayout | None, int]:
    head = handle.read(544)
    layout = _nifti_layout(head)
    if layout is not None:
        check_declared(path, layout.dims, max_voxels)
    total = len(head)
    for block in iter(lambda: handle.read(_BLOCK), b""):
        total += len(block)
    return layout, total


def check_nifti_stream(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
    """Read a NIfTI file to its end (module docstring): complete gzip stream, voxel data of the declared size."""
    compressed = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as handle:
            layout, total = _stream_length(path, handle, max_voxels)
    except EOFError:
        raise InputError(f"{path}: the gzip stream ends before its end-of-stream marker (truncated file)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise InputError(f"{path}: corrupt gzip stream ({first_line(error)})") from None
    if layout is None:
        return  # not a single-file NIfTI header: the image reader says what is wrong with it
    present = total - layout.vox_offset
    if present != layout.data_bytes:
        what = "truncated" if present < layout.data_bytes else "longer than declared"
        raise InputError(
            f"{path}: the NIfTI header declares {describe_shape(layout.dims)} voxels of {layout.bitpix} bits "
            f"({layout.data_bytes} bytes after offset {layout.vox_offset}), the file holds {max(present, 0)} ({what})"
        )


def _gzip_or_plain(path: Path) -> bool:
    """Whether a NIfTI file is uncompressed or starts like a gzip stream (random bytes named .nii.gz are neither)."""
    if not path.name.lower().endswith(".gz"):
        return True
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def read_image_file(path: Path, what: str, max_voxels: int = DEFAULT_MAX_VOXELS) -> sitk.Image:
    """An image file read by SimpleITK after its header (size limit) and, for NIfTI, its whole stream are checked;
    ``what`` names it in the error ("CT", "reference", "NIfTI image")."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        if is_nifti(path) and _gzip_or_plain(path):
            check_nifti_stream(path, max_voxels)  # ITK cannot say that the gzip stream is what is damaged
        raise InputError(f"{path}: not a readable {what} ({first_line(error)})") from error
    components = reader.GetNumberOfComponents()
    check_declared(path, (*reader.GetSize(), *([components] if components > 1 else [])), max_voxels)
    if is_nifti(path):
        check_nifti_stream(path, max_voxels)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(f"{path}: not a readable {what} ({first_line(error)})") from error


def npy_header(path: Path, handle: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` stream ``handle`` (positioned at its start), leaving it at the data."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise InputError(f"{path}: .npy format version {version} is not supported (1.0 or 2.0)")
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as error:
        detail = error.args[0] if isinstance(error, tokenize.TokenError) else first_line(error)
        raise InputError(f"{path}: not a readable .npy header ({detail})") from error
    if any(int(n) < 0 for n in shape):
        raise InputError(f"{path}: not a readable .npy header (negative size in shape {shape})")
    if dtype.hasobject:
        raise InputError(f"{path}: the .npy array holds Python objects ({dtype}); pickled data is never loaded")
    return tuple(int(n) for n in shape), dtype
