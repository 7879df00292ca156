"""The reference a redone case keeps: a case whose input gives no reference, redone by the batch (its input hash
changed: new settings, new code, a re-exported CT), is scored against the reference attached to it after an earlier
run (``attach-reference``), so its redone results keep their reference metrics.

The attached reference is the image's attachment in force (:func:`pipeline.store.references.attachment_in_force`),
read from the image's stored ``reference`` map. It lies on the stored CT's grid: a CT now on another grid cannot
take it, and the case fails at stage ``reference`` (re-attach it, or give the reference in the input) rather than
losing it. The input hash stays the input's, so the next night skips the case again.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.batch.cases import CaseError, LoadedCase
from pipeline.batch.export import stored_grid
from pipeline.io.geometry import Geometry, mismatch
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.references import attachment_in_force
from pipeline.store.schema import Artifact, Image, ReferenceAttachment

log = logging.getLogger(__name__)


def with_attached_reference(session: Session, store: ArtifactStore, case: LoadedCase) -> LoadedCase:
    """``case`` with its attached reference when its input gives none and the store holds one (module
    description); ``case`` unchanged otherwise. CaseError (stage ``reference``) when the CT's grid changed."""
    if case.labels is not None:
        return case
    found = session.execute(
        select(Image, ReferenceAttachment).join(ReferenceAttachment, ReferenceAttachment.image_id == Image.id)
        .where(Image.name == case.spec.name, attachment_in_force())).first()
    if found is None:
        return case
    image, attachment = found
    differs = mismatch(Geometry.of(stored_grid(image)), Geometry.of(case.image))
    if differs:
        raise CaseError("reference", f"{case.spec.ct}: the CT's grid differs from the one the attached reference "
                        f"({attachment.source}) was read onto ({differs}); attach it again or give the reference in "
                        "the input")
    path = session.scalars(select(Artifact.path).where(
        Artifact.image_id == image.id, Artifact.kind == "reference", Artifact.processing_id.is_(None),
        Artifact.result_id.is_(None))).one()
    labels = np.asarray(store.read(path), dtype=np.uint8)
    log.info("case=%s: the input gives no reference; using the attached %s reference %s (attachment %d)",
             case.spec.name, attachment.kind, attachment.source, attachment.id)
    notes = (image.reference_note,) if image.reference_note else ()  # what the attachment noted (clipped ROIs)
    return replace(case, spec=replace(case.spec, reference_note=None), labels=labels,
                   reference_hash=attachment.reference_hash, reference_source=attachment.source, reference_notes=notes)
