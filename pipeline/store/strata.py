"""Strata by acquisition: the one rule of which group a stored image falls in when results are filtered or grouped
by how the scan was made (the cohort and comparison pages, trends, the worklist, the per-scanner table).

A stratum is one of :data:`STRATA`: the scanner (:meth:`pipeline.io.acquisition.Acquisition.scanner`, manufacturer
and model), or one property of :data:`pipeline.io.acquisition.FIELDS` (manufacturer, model, convolution kernel,
slice thickness, kVp, contrast). An image's group is its stored ``images.acquisition`` value as the slice browser's
header shows it (``24 mm``); an image whose acquisition does not state it is in the explicit group
:data:`UNKNOWN_GROUP`. Groups are computed here from the stored JSON (the same in SQLite and PostgreSQL); a filter
becomes the list of image ids in the group (:func:`in_group`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from pipeline.io.acquisition import FIELDS, Acquisition
from pipeline.store.schema import Image

UNKNOWN_GROUP = "unknown"
SCANNER = "scanner"


@dataclass(frozen=True)
class Stratum:
    """A way to group scans: its key (``scanner`` or an acquisition key) and how a person reads it."""

    key: str
    label: str


STRATA = (Stratum(SCANNER, "Scanner"),
          *(Stratum(f.key, f.label) for f in FIELDS
            if f.key in ("manufacturer", "manufacturer_model", "convolution_kernel", "slice_thickness_mm", "kvp",
                         "contrast_agent")))
STRATUM_KEYS = tuple(s.key for s in STRATA)
_FIELDS = {f.key: f for f in FIELDS}


def stratum_label(key: str) -> str:
    """How a person reads the stratum ``key`` (``Scanner``, ``Kernel``); ValueError for an unknown key."""
    found = next((s for s in STRATA if s.key == key), None)
    if found is None:
        raise ValueError(f"not a stratum: {key!r} (one of {', '.join(STRATUM_KEYS)})")
    return found.label


def group_of(record: Mapping[str, object] | None, key: str) -> str:
    """The group of a stored ``images.acquisition`` (None: nothing known) in the stratum ``key``."""
    stratum_label(key)
    acquisition = Acquisition.from_record(record)
    if key == SCANNER:
        return acquisition.scanner() or UNKNOWN_GROUP
    value = acquisition.get(key)
    return UNKNOWN_GROUP if value is None else _FIELDS[key].shown(value)


def image_groups(session: Session, key: str, image_ids: Select | Iterable[int] | None = None) -> dict[int, str]:
    """Each image's group in the stratum ``key`` (the images of ``image_ids``, a SELECT of ids or ids; every image
    without)."""
    query = select(Image.id, Image.acquisition)
    if image_ids is not None:
        query = query.where(Image.id.in_(image_ids if isinstance(image_ids, Select) else list(image_ids)))
    return {int(image_id): group_of(record, key) for image_id, record in session.execute(query)}


def case_groups(session: Session, key: str) -> dict[str, str]:
    """Each stored image's group in the stratum ``key``, by case name (image names are unique)."""
    return {str(name): group_of(record, key) for name, record in session.execute(select(Image.name,
                                                                                      Image.acquisition))}


def group_counts(groups: Mapping[int, str]) -> dict[str, int]:
    """Images per group, the known groups by name, then :data:`UNKNOWN_GROUP` (when any)."""
    counts = Counter(groups.values())
    return {name: counts[name] for name in sorted(counts, key=lambda n: (n == UNKNOWN_GROUP, n))}


def in_group(session: Session, key: str, group: str, image_id: ColumnElement[int]) -> ColumnElement[bool]:
    """``image_id`` is an image of ``group`` in the stratum ``key``, as a WHERE clause."""
    return image_id.in_([i for i, g in image_groups(session, key).items() if g == group])
