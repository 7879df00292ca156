"""The acquisition of a scan: how it was made (study, series, scanner, kernel, slice thickness, kVp, contrast).

No date is kept: the study date is an identifier of the patient's visit (HIPAA Safe Harbor lists every date
but the year) while the store keeps only a salted hash of the MRN, and nothing here needs it (a run's own time says
when a case was processed). A DICOM header's StudyDate and a manifest's ``study_date`` column are not read.

The one owner of the keys stored per image (``images.acquisition``, JSON), shown on the slice browser's header and
given as optional columns of the batch's CSV manifest: :data:`FIELDS`, each a stable snake_case key with its DICOM
keyword. Two sources:

- a DICOM series: :func:`from_header` on the header of its first file (:mod:`pipeline.io.dicom` read it without
  pixels already); a value the header garbles is dropped with a warning naming the file, the CT is still usable;
- a manifest row: :func:`from_columns` on the columns of the same keys (for image files, which carry no tags; for a
  DICOM folder they fill what the header leaves out, :meth:`Acquisition.combined`); a malformed value there is an
  :class:`~pipeline.errors.InputError` naming the row and the column.

Normalised alike: text stripped, a multi-valued kernel (Siemens' ``Br38f\\3``) joined with ``\\``; numbers as finite
positive floats; a blank value is dropped, so a key is present only where known.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["FIELDS", "KEYS", "UNKNOWN", "Acquisition", "Field", "from_columns", "from_header"]

log = logging.getLogger(__name__)

Value = str | float


@dataclass(frozen=True)
class Field:
    """One property of a scan: its stored key, its DICOM keyword, its kind, and how a person reads it."""

    key: str
    keyword: str
    kind: Literal["text", "number"]
    label: str
    unit: str = ""

    def shown(self, value: Value) -> str:
        """The value as the header shows it (a number with its unit, ``3.27 mm``)."""
        if self.kind == "number":
            return f"{float(value):g}{' ' + self.unit if self.unit else ''}"
        return str(value)


FIELDS = (
    Field("study_description", "StudyDescription", "text", "Study"),
    Field("series_description", "SeriesDescription", "text", "Series"),
    Field("manufacturer", "Manufacturer", "text", "Manufacturer"),
    Field("manufacturer_model", "ManufacturerModelName", "text", "Model"),
    Field("convolution_kernel", "ConvolutionKernel", "text", "Kernel"),
    Field("slice_thickness_mm", "SliceThickness", "number", "Slice thickness", "mm"),
    Field("kvp", "KVP", "number", "kVp"),
    Field("contrast_agent", "ContrastBolusAgent", "text", "Contrast"),
)
KEYS = tuple(f.key for f in FIELDS)
_BY_KEY = {f.key: f for f in FIELDS}


@dataclass(frozen=True)
class Acquisition:
    """The known properties of one scan, in :data:`FIELDS` order (only the known ones; hashable)."""

    values: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def of(cls, values: Mapping[str, Value]) -> Acquisition:
        """From normalised values by key (keys of :data:`FIELDS` only)."""
        unknown = set(values) - set(KEYS)
        if unknown:
            raise ValueError(f"not acquisition keys: {sorted(unknown)}")
        return cls(tuple((key, values[key]) for key in KEYS if key in values))

    @classmethod
    def from_record(cls, record: Mapping[str, object] | None) -> Acquisition:
        """From a stored ``images.acquisition`` (None: nothing known); keys this code does not know are left out."""
        return cls.of({key: value for key, value in (record or {}).items()
                       if key in _BY_KEY and isinstance(value, str | int | float)})

    def get(self, key: str) -> Value | None:
        return dict(self.values).get(key)

    def record(self) -> dict[str, Value] | None:
        """What ``images.acquisition`` stores: the known values by key, None when nothing is known."""
        return dict(self.values) or None

    def combined(self, fallback: Acquisition) -> Acquisition:
        """These values, with ``fallback``'s where these leave a key unknown (a DICOM header before a manifest)."""
        return Acquisition.of(dict(fallback.values) | dict(self.values))

    def scanner(self) -> str | None:
        """The scanner this scan was made on, the one key by which scans are grouped per scanner (stratified tables,
        per-scanner temperatures): manufacturer and model joined by a space, None when neither is known."""
        parts = [str(self.get(key)) for key in ("manufacturer", "manufacturer_model") if self.get(key) is not None]
        return " ".join(parts) or None

    def conflicts(self, other: Acquisition) -> list[str]:
        """The keys both know with different values."""
        mine, theirs = dict(self.values), dict(other.values)
        return [key for key in KEYS if key in mine and key in theirs and mine[key] != theirs[key]]


#: nothing known (an image file without manifest columns)
UNKNOWN = Acquisition()


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    parts = raw if isinstance(raw, Sequence) and not isinstance(raw, str | bytes) else [raw]
    joined = "\\".join(p for p in (str(part).strip() for part in parts) if p)
    return joined or None


def _normalised(field: Field, raw: object) -> Value | None:
    """The value of ``raw`` (None: blank); ValueError (in words) when it is no value of the field's kind."""
    text = _text(raw)
    if text is None:
        return None
    if field.kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{text!r} is not a positive number")
        return number
    return text


def from_header(header: Dataset, path: Path) -> Acquisition:
    """The acquisition a DICOM header states; a garbled value is dropped with a warning naming ``path``."""
    values: dict[str, Value] = {}
    for field in FIELDS:
        raw = header.get(field.keyword)
        try:
            value = _normalised(field, raw)
        except ValueError as error:
            log.warning("%s: %s %s; left out of the acquisition", path, field.keyword, error)
            continue
        if value is not None:
            values[field.key] = value
    return Acquisition.of(values)


def from_columns(row: Mapping[str, str | None], where: str) -> Acquisition:
    """The acquisition a manifest row gives in the columns named like :data:`KEYS` (other columns are not read);
    ``where`` (``manifest.csv:3``) names the row in the :class:`InputError` for a malformed value."""
    values: dict[str, Value] = {}
    for field in FIELDS:
        try:
            value = _normalised(field, row.get(field.key))
        except ValueError as error:
            raise InputError(f"{where}: column {field.key}: {error}") from None
        if value is not None:
            values[field.key] = value
    return Acquisition.of(values)
