"""The one rule of a case's reference kind: the kind of the attachment in force (:func:`attachment_in_force`: the
``reference_attachments`` row with ``superseded_at`` NULL whose reference the image still holds). ``final_clinical``
only when so attached; any other reference (attached as ``research``, given to the batch from the start, or given
in a later input, which replaces an attached one) is a research reference."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, and_, select
from sqlalchemy.orm import Session

from pipeline.store.schema import Image, ReferenceAttachment

FINAL_CLINICAL = "final_clinical"
RESEARCH = "research"
KIND_LABELS = {FINAL_CLINICAL: "final clinical contours", RESEARCH: "research references"}
EVERY_REFERENCE_LABEL = "every reference"  # no reference-kind filter


def attachment_in_force() -> ColumnElement[bool]:
    """An attachment (``ReferenceAttachment`` joined to its ``Image``) is in force while it is current (not superseded
    by a later attachment) and the image still holds its reference (a reference given in a later batch input has
    another hash and replaces it)."""
    return and_(ReferenceAttachment.superseded_at.is_(None), ReferenceAttachment.reference_hash == Image.reference_hash)


def final_clinical_images() -> Select:
    """The ids of the images whose reference in force is the clinician's final contour."""
    return (select(ReferenceAttachment.image_id).join(Image, Image.id == ReferenceAttachment.image_id)
            .where(attachment_in_force(), ReferenceAttachment.kind == FINAL_CLINICAL))


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
