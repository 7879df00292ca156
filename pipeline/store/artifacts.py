"""The artifact store: voxel maps as chunked, compressed zarr arrays under one root folder.

Each map is a zarr v3 array (Zstandard) of shape (Z, Y, X) — or (C, Z, Y, X) for class probabilities — chunked
one axial slice per chunk, so one axial slice reads by decompressing that slice only (a coronal or sagittal slice
reads every axial chunk). Arrays are written to a temporary folder and renamed into place, so a reader never sees
a half-written map. A write killed midway leaves its temporary folder (``.<name>.<uuid>.tmp``, or ``.old`` for the
map it was replacing); :meth:`ArtifactStore.remove_stale` removes those older than a given time (the batch passes
the start of the newest completed run). Paths in the database are relative to the root (``QA_ARTIFACTS_DIR``), so
the root can move.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import zarr
from numpy.typing import NDArray

from pipeline.errors import InputError

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
_LEFT_BEHIND = re.compile(r"^\..+\.[0-9a-f]{32}\.(tmp|old)$")
AXES = {"axial": 0, "coronal": 1, "sagittal": 2}


log = logging.getLogger(__name__)


class ArtifactError(InputError):
    """A map that is missing, unreadable or asked for with a bad slice; the message names the path."""


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._+-]`` replaced by ``_`` (a path component)."""
    cleaned = _SAFE.sub("_", name)
    if cleaned in {"", ".", ".."}:
        raise InputError(f"{name!r} cannot name an artifact folder")
    return cleaned


class ArtifactStore:
    """Chunked voxel maps under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def check_writable(self) -> None:
        """Create the root if needed and write a probe file in it: an unusable ``QA_ARTIFACTS_DIR`` is refused in
        one line before any case runs."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-check-"):
                pass
        except OSError as error:
            raise InputError(f"QA_ARTIFACTS_DIR {self.root}: cannot write there ({error.strerror or error})") from None

    def remove_stale(self, before: datetime) -> list[Path]:
        """Remove the temporary and replaced folders of killed writes last modified before ``before``; returns them.

        Maps themselves (``*.zarr``) are not searched inside.
        """
        removed = []
        for folder, subfolders, _ in os.walk(self.root):
            for name in list(subfolders):
                path = Path(folder) / name
                if _LEFT_BEHIND.match(name) and path.stat().st_mtime < before.timestamp():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            subfolders[:] = [n for n in subfolders if not n.endswith(".zarr") and not _LEFT_BEHIND.match(n)]
        if removed:
            log.info("removed %d folder(s) left by killed map writes under %s", len(removed), self.root)
        return removed

    def write(self, relative: str, array: NDArray[np.generic], attributes: Mapping[str, object] | None = None) -> str:
        """Write ``array`` at ``relative`` (replacing what was there, atomically), with JSON ``attributes`` (e.g. what
        the map is of); returns ``relative``."""
        if array.ndim not in (3, 4):
            raise ValueError(f"a map is (Z, Y, X) or (C, Z, Y, X), got shape {array.shape}")
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        chunks = (1, *array.shape[1:]) if array.ndim == 3 else (array.shape[0], 1, *array.shape[2:])
        stored = zarr.create_array(str(temporary), shape=array.shape, chunks=chunks, dtype=array.dtype)
        stored[...] = array
        if attributes:
            stored.attrs.update(dict(attributes))
        if target.exists():
            old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
            os.replace(target, old)
            os.replace(temporary, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, target)
        return relative

    def _open(self, relative: str) -> zarr.Array:
        path = self.root / relative
        try:
            return zarr.open_array(str(path), mode="r")
        except (FileNotFoundError, ValueError, KeyError) as error:
            raise ArtifactError(f"{path}: not a readable map ({error})") from error

    def read(self, relative: str) -> NDArray[np.generic]:
        """The whole map."""
        return np.asarray(self._open(relative)[...])

    def attributes(self, relative: str) -> dict[str, object]:
        """The attributes the map was written with (empty when none)."""
        return dict(self._open(relative).attrs)

    def read_slice(self, relative: str, axis: str, index: int) -> NDArray[np.generic]:
        """One slice of a (Z, Y, X) map: ``axis`` in axial / coronal / sagittal, ``index`` along that axis.

        For a (C, Z, Y, X) map, the slice keeps the class axis first.
        """
        if axis not in AXES:
            raise ArtifactError(f"{self.root / relative}: axis must be one of {sorted(AXES)}, got {axis!r}")
        stored = self._open(relative)
        offset = stored.ndim - 3
        size = stored.shape[offset + AXES[axis]]
        if not 0 <= index < size:
            raise ArtifactError(f"{axis} slice {index} is outside 0..{size - 1} of {self.root / relative}")
        selection: list[slice | int] = [slice(None)] * stored.ndim
        selection[offset + AXES[axis]] = index
        return np.asarray(stored[tuple(selection)])

    def delete(self, relative: str) -> None:
        """Remove a map (no error when it is already gone)."""
        shutil.rmtree(self.root / relative, ignore_errors=True)

