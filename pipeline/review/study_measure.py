"""What a review study measures per reading (one reviewer × one case: a ``study_assignments`` row), derived on demand
from the records their owners keep; nothing is stored here (``docs/review-study.md``, "Measurement").

- **Active time** (``active_seconds``): the sum of the reader's item clocks on the case under the study's
  configuration (:mod:`pipeline.review.timing`: focus and input events, each idle gap capped, shared between the
  items a person holds at once) that opened at or after the reading's first opening, which starts them
  (:func:`pipeline.review.timing.open_reading_clocks`, whoever reviews the items: a crossover's second reader is timed
  like the first); NaN without one. Region clocks are not added: they overlap the item clocks (a region's time is also
  its item's time).
- **Regions opened** (``regions_opened``): the distinct regions (structure, rank, budget) of the case the reader
  opened a region clock on (the worklist's tick, :func:`pipeline.review.timing.opened_regions`) since that opening.
- **Decision** (``decision``): the reader's own last decision on each of the case's review items (structures) under
  the study's configuration since the reading's first opening (after its ``study.open_case`` audit row), from the
  audit log's ``review.decide`` rows (a ``review.reopen`` by the reader withdraws it). The audit log, not
  ``review_items``, which keeps only the latest reviewer's decision: in a crossover a second reader reopens the item,
  and the first reading's decision must stay. Over the structures: ``edited`` if any was edited, else ``rejected`` if
  any was rejected, else ``accepted`` (:func:`case_decision`); None before any decision.
- **Edit mask**, once the case's reference in force is the clinician's final contour
  (:func:`pipeline.store.references.final_clinical_images`, attached by ``attach-reference --kind final_clinical``):
  the deployed result's stored error map (prediction ≠ final contour) is the clinician's edit
  (:func:`edit_mask`): ``added_voxels`` (edited voxels the final contour labels as a structure: drawn in or
  relabelled), ``removed_voxels`` (edited voxels the final contour leaves as background), ``edited_ml`` (their sum ×
  the voxel volume), ``any_edit`` and ``edits_in_regions_fraction``: the share of edited voxels inside the review
  regions of the study's budget (:func:`pipeline.review.worklist.case_regions`, the worklist's regions; a time budget
  at the review rate in force), NaN without an edit. A case property: every reading of the case gets the same numbers,
  whatever its arm (arm A saw no region; the fraction says what arm B's regions would have held). Without a final
  contour they are NA / NaN.

:func:`reading_rows` is the owner: one row per assignment with :data:`COLUMNS`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.errors import NotFoundError
from pipeline.review.base import aware, utc
from pipeline.review.timing import measured_rate
from pipeline.review.workflow import Decision
from pipeline.review.worklist import ResultRef, case_regions, deployed_results
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.references import final_clinical_images
from pipeline.store.review_schema import AuditEntry, ReviewTime, User
from pipeline.store.schema import Artifact, Configuration, Image, ModelSet, ReferenceAttachment
from pipeline.store.study_schema import Study, StudyAssignment

COLUMNS = ("study", "case", "reviewer", "arm", "period", "opened", "active_seconds", "decision", "final_attached",
           "added_voxels", "removed_voxels", "edited_ml", "any_edit", "edits_in_regions_fraction", "regions_opened")
DTYPES = {"study": "object", "case": "object", "reviewer": "object", "arm": "object", "period": "int64",
          "opened": "bool", "active_seconds": "float64", "decision": "object", "final_attached": "bool",
          "added_voxels": "Int64", "removed_voxels": "Int64", "edited_ml": "float64", "any_edit": "boolean",
          "edits_in_regions_fraction": "float64", "regions_opened": "int64"}
DECISION_ACTIONS = ("review.decide", "review.reopen")
#: over a case's structures, the first of these any structure got is the case's decision
DECISION_PRECEDENCE = (Decision.EDITED, Decision.REJECTED, Decision.ACCEPTED)


@dataclass(frozen=True)
class EditMask:
    """The clinician's edit of one case (module description)."""

    added_voxels: int
    removed_voxels: int
    edited_ml: float
    in_regions_fraction: float


def edit_mask(error: NDArray[np.generic], final: NDArray[np.integer], regions: NDArray[np.integer],
              voxel_ml: float) -> EditMask:
    """The edit of a case from its error map (prediction ≠ final contour), the final contour's labels and the review
    regions' label map (0 outside a region), all (Z, Y, X) on one grid."""
    if not error.shape == final.shape == regions.shape:
        raise ValueError(f"error {error.shape}, final contour {final.shape} and regions {regions.shape} differ")
    edited = error.astype(bool)
    count = int(edited.sum())
    added = int((edited & (final != 0)).sum())
    inside = int((edited & (regions != 0)).sum())
    return EditMask(added, count - added, count * voxel_ml, inside / count if count else math.nan)


def case_decision(decisions: Iterable[Decision | str | None]) -> str | None:
    """A reader's decision on a case from its decisions on the case's structures (None: undecided), by
    :data:`DECISION_PRECEDENCE`; None when no structure is decided."""
    made = {Decision(d) for d in decisions if d is not None}
    return next((d.value for d in DECISION_PRECEDENCE if d in made), None)


def _since(opened: datetime | None, moment: datetime) -> bool:
    return opened is not None and utc(moment) >= opened


def _item_time(session: Session, study: Study) -> dict[tuple[int, int], list[tuple[datetime, float]]]:
    """(image, user) → their item clocks on the study's configuration: (opened at, active seconds)."""
    rows = session.execute(
        select(ReviewTime.image_id, ReviewTime.user_id, ReviewTime.opened_at, ReviewTime.seconds)
        .join(StudyAssignment, (StudyAssignment.image_id == ReviewTime.image_id)
              & (StudyAssignment.user_id == ReviewTime.user_id))
        .where(StudyAssignment.study_id == study.id, ReviewTime.configuration_id == study.configuration_id,
               ReviewTime.region_rank.is_(None)))
    found: dict[tuple[int, int], list[tuple[datetime, float]]] = defaultdict(list)
    for image_id, user_id, opened_at, seconds in rows:
        found[(image_id, user_id)].append((opened_at, float(seconds or 0.0)))
    return found


def _region_clocks(session: Session, study: Study) -> dict[tuple[int, int], list[tuple[datetime, tuple[object, ...]]]]:
    """(image, user) → their region clocks on the study's configuration: (opened at, region key)."""
    rows = session.execute(
        select(ReviewTime.image_id, ReviewTime.user_id, ReviewTime.opened_at, ReviewTime.class_index,
               ReviewTime.region_rank, ReviewTime.budget)
        .join(StudyAssignment, (StudyAssignment.image_id == ReviewTime.image_id)
              & (StudyAssignment.user_id == ReviewTime.user_id))
        .where(StudyAssignment.study_id == study.id, ReviewTime.configuration_id == study.configuration_id,
               ReviewTime.region_rank.is_not(None)))
    found: dict[tuple[int, int], list[tuple[datetime, tuple[object, ...]]]] = defaultdict(list)
    for image_id, user_id, opened_at, class_index, rank, budget in rows:
        found[(image_id, user_id)].append((opened_at, (class_index, int(rank), round(float(budget or 0.0), 6))))
    return found


def _openings(session: Session, study: Study, cases: dict[str, int]) -> dict[tuple[int, int], int]:
    """(image, user) → the audit row id of the reading's first opening (``study.open_case``, by the service's write
    order: the audit log's ids, not its clock, order one store's actions)."""
    objects = {f"{study.name}/{case}"[:200]: image_id for case, image_id in cases.items()}
    rows = session.execute(
        select(AuditEntry.actor_id, AuditEntry.object_id, func.min(AuditEntry.id))
        .where(AuditEntry.action == "study.open_case", AuditEntry.outcome == "ok",
               AuditEntry.object_id.in_(list(objects)))
        .group_by(AuditEntry.actor_id, AuditEntry.object_id))
    return {(objects[object_id], actor_id): first for actor_id, object_id, first in rows}


@dataclass(frozen=True)
class ReadingDecision:
    """A reader's case decision (module description) and when the last decision row behind it was written."""

    decision: str | None
    at: datetime


def reading_decisions(session: Session, study: Study, cases: dict[str, int], users: Iterable[int]
                      ) -> dict[tuple[int, int], ReadingDecision]:
    """(image, user) → the reader's case decision (module description) from the audit log: its ``review.decide`` and
    ``review.reopen`` rows on the case's items under the study's configuration after the reading's first opening;
    ``cases``: case name → image id."""
    openings = _openings(session, study, cases)
    rows = session.execute(
        select(AuditEntry.id, AuditEntry.at, AuditEntry.actor_id, AuditEntry.object_id, AuditEntry.action,
               AuditEntry.after)
        .where(AuditEntry.action.in_(DECISION_ACTIONS), AuditEntry.outcome == "ok",
               AuditEntry.object_type == "review_item", AuditEntry.actor_id.in_(sorted(set(users))),
               AuditEntry.object_id.like(f"%/{study.configuration_id}/%"))
        .order_by(AuditEntry.id))
    last: dict[tuple[int, int, int], str | None] = {}  # (image, user, class) → decision
    latest: dict[tuple[int, int], datetime] = {}
    for row_id, at, actor_id, object_id, action, after in rows:
        image, configuration, class_index = (int(part) for part in object_id.split("/"))
        opened = openings.get((image, actor_id))
        if configuration != study.configuration_id or opened is None or row_id < opened:
            continue
        last[(image, actor_id, class_index)] = (after or {}).get("decision") if action == "review.decide" else None
        latest[(image, actor_id)] = aware(at)
    by_reading: dict[tuple[int, int], list[str | None]] = defaultdict(list)
    for (image, user, _), decision in last.items():
        by_reading[(image, user)].append(decision)
    return {key: ReadingDecision(case_decision(decisions), latest[key]) for key, decisions in by_reading.items()}


def _edits(session: Session, artifacts: ArtifactStore, study: Study, settings: ReviewSettings) -> dict[int, EditMask]:
    """Image id → the edit mask of each study case whose reference in force is the final clinical contour."""
    cases = select(StudyAssignment.image_id).where(StudyAssignment.study_id == study.id)
    final = set(session.scalars(final_clinical_images().where(ReferenceAttachment.image_id.in_(cases))))
    if not final:
        return {}
    configuration = session.get_one(Configuration, study.configuration_id)
    model_set = session.get_one(ModelSet, configuration.model_set_id).identity
    review = replace(settings, seconds_per_ml=measured_rate(session, settings).seconds_per_ml)
    found = {}
    for image_id in sorted(final):
        case = session.get_one(Image, image_id).name
        refs = deployed_results(session, configuration.name, case, model_set)
        if not refs:
            raise NotFoundError(f"case {case!r} has no deployed result of {configuration.name}")
        found[image_id] = _edit(session, artifacts, refs[0], study, review)
    return found


def _edit(session: Session, artifacts: ArtifactStore, ref: ResultRef, study: Study, review: ReviewSettings
          ) -> EditMask:
    paths = dict(session.execute(select(Artifact.kind, Artifact.path).where(
        ((Artifact.result_id == ref.result.id) & (Artifact.kind == "error"))
        | ((Artifact.image_id == ref.image.id) & (Artifact.kind == "reference") & Artifact.result_id.is_(None)))).all())
    missing = {"error", "reference"} - set(paths)
    if missing:
        raise NotFoundError(f"case {ref.image.name!r}: no stored {' or '.join(sorted(missing))} map of its final "
                            "clinical contour; attach it again")
    regions, _, _ = case_regions(session, artifacts, ref, study.budget(), review)
    return edit_mask(artifacts.read(paths["error"]), artifacts.read(paths["reference"]), regions.labels,
                     float(ref.result.voxel_ml))


def reading_rows(session: Session, artifacts: ArtifactStore, study_id: int,
                 settings: ReviewSettings | None = None) -> pd.DataFrame:
    """One row per assignment of study ``study_id`` (:data:`COLUMNS`, :data:`DTYPES`; module description), in the
    allocation's order (reviewer, position); ``settings``: the review settings (idle cap aside, the regions' rules
    and the placeholder rate)."""
    study = session.get(Study, study_id)
    if study is None:
        raise NotFoundError(f"there is no study #{study_id}")
    assignments = session.execute(
        select(StudyAssignment, Image.name, User.username)
        .join(Image, Image.id == StudyAssignment.image_id).join(User, User.id == StudyAssignment.user_id)
        .where(StudyAssignment.study_id == study.id).order_by(User.username, StudyAssignment.position)).all()
    opened = {(a.image_id, a.user_id): aware(a.opened_at) for a, _, _ in assignments}
    times, regions = _item_time(session, study), _region_clocks(session, study)
    cases = {case: a.image_id for a, case, _ in assignments}
    decisions = reading_decisions(session, study, cases, (a.user_id for a, _, _ in assignments))
    edits = _edits(session, artifacts, study, settings or ReviewSettings())
    rows = []
    for a, case, reviewer in assignments:
        key = (a.image_id, a.user_id)
        since = opened[key]
        clocks = [seconds for at, seconds in times.get(key, []) if _since(since, at)]
        edit = edits.get(a.image_id)
        rows.append({
            "study": study.name, "case": case, "reviewer": reviewer, "arm": a.arm, "period": a.period,
            "opened": since is not None, "active_seconds": float(sum(clocks)) if clocks else math.nan,
            "decision": decisions[key].decision if key in decisions else None, "final_attached": edit is not None,
            "added_voxels": edit.added_voxels if edit else pd.NA,
            "removed_voxels": edit.removed_voxels if edit else pd.NA,
            "edited_ml": edit.edited_ml if edit else math.nan,
            "any_edit": edit.added_voxels + edit.removed_voxels > 0 if edit else pd.NA,
            "edits_in_regions_fraction": edit.in_regions_fraction if edit else math.nan,
            "regions_opened": len({region for at, region in regions.get(key, []) if _since(since, at)}),
        })
    return pd.DataFrame({column: pd.Series([row[column] for row in rows], dtype=DTYPES[column])
                         for column in COLUMNS})
