"""The one rule of a case's reference kind: the kind of its current attachment (``reference_attachments`` row with
``superseded_at`` NULL). ``final_clinical`` only when so attached; any other reference (attached as ``research``,
or given to the batch from the start) is a research reference."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from pipeline.store.schema import ReferenceAttachment

FINAL_CLINICAL = "final_clinical"
RESEARCH = "research"
KIND_LABELS = {FINAL_CLINICAL: "final clinical contours", RESEARCH: "research references"}
EVERY_REFERENCE_LABEL = "every reference"  # no reference-kind filter


def final_clinical_images() -> Select:
    """The ids of the images whose current reference is the clinician's final contour."""
    return select(ReferenceAttachment.image_id).where(ReferenceAttachment.superseded_at.is_(None),
                                                      ReferenceAttachment.kind == FINAL_CLINICAL)


def reference_kind_is(kind: str, image_id: ColumnElement[int]) -> ColumnElement[bool]:
    """``image_id``'s reference is of ``kind`` (:data:`FINAL_CLINICAL` or :data:`RESEARCH`), as a WHERE clause."""
    final = final_clinical_images()
    return image_id.in_(final) if kind == FINAL_CLINICAL else image_id.not_in(final)


def reference_kind(session: Session, image_id: int, has_reference: bool) -> str | None:
    """The kind of an image's reference (None without one)."""
    if not has_reference:
        return None
    found = session.scalar(final_clinical_images().where(ReferenceAttachment.image_id == image_id))
    return FINAL_CLINICAL if found is not None else RESEARCH
