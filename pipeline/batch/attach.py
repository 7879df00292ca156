"""``python -m pipeline attach-reference``: a reference that arrives after the batch (the clinician's final contour
from the treatment planning system, days later), attached to a stored case and scored without inference.

The reference is read as the batch reads one (:func:`pipeline.batch.cases.read_reference`: an RTSTRUCT rasterised
on the stored CT's grid, in its FrameOfReferenceUID, ROIs mapped to the model set's labels by name; or a label image
on the same grid). Then every stored result of the case (every model set and configuration, TS results with their
stored temperature fit under its temperature mode) is recomputed from the stored maps
(:mod:`pipeline.batch.stored_maps`) with the metric settings and review budget it was made with: the same
functions as the batch on the same float32 maps, so the rows equal those the batch would have stored had the
reference been there from the start. Results keep their ids (review rows hang off them); their metric rows and maps
are replaced. The reference a case holds already (the same hash: e.g. the batch's input, now attached as the final
clinical contour) changes only the attachment and its kind: the results scored on it, and the stored map, stay.

One case is one transaction, with a ``reference_attachments`` row (the history: kind, source, hash, who, when; the
previous attachment marked superseded; the replaced numbers) and one ``reference.attach`` audit row. New maps are
written under new paths before the commit; a failure removes them and leaves the store as it was, a commit removes
the replaced ones.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from pipeline.batch.cases import manifest_rows, read_reference, reference_hash
from pipeline.batch.export import stored_grid
from pipeline.batch.maps import map_artifacts, result_prefix, result_regions
from pipeline.batch.outcomes import (
    Outcome,
    bin_rows,
    body_entropy,
    curve_rows,
    evaluate_configuration,
    result_row,
    structure_rows,
    value_rows,
)
from pipeline.batch.persist import ResultRows, rewrite_result
from pipeline.batch.stored_maps import StoredMaps
from pipeline.errors import EXIT_FAILURE, EXIT_OK, InputError, NotFoundError, UserError, one_line
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.store.artifacts import ArtifactStore, safe_name
from pipeline.store.configurations import twin_of
from pipeline.store.database import check_at_head, make_engine, session_factory
from pipeline.store.metric_values import result_values
from pipeline.store.ood import refresh_ood_scores
from pipeline.store.review_schema import AuditEntry
from pipeline.store.run_settings import processing_settings
from pipeline.store.schema import (
    DEFAULT_REFERENCE_KIND,
    REFERENCE_KINDS,
    Artifact,
    CaseResult,
    Configuration,
    Image,
    ModelSet,
    Processing,
    ReferenceAttachment,
    SplitRole,
    StructureResult,
    TemperatureFit,
    utcnow,
)
from pipeline.store.temperatures import applied_scaling, recorded_temperature

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class AttachRequest:
    """One reference to attach: the case's name, the file, its kind (:data:`REFERENCE_KINDS`)."""

    case: str
    reference: Path
    kind: str = DEFAULT_REFERENCE_KIND


@dataclass(frozen=True)
class Attached:
    """What an attachment did: its history row, the results recomputed, the attachment it superseded, notes."""

    case: str
    attachment_id: int
    results: int
    superseded: int | None
    notes: tuple[str, ...]


class RecordingStore(ArtifactStore):
    """The artifact store, remembering the maps written through it (removed again when the transaction fails)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written: list[str] = []

    def write(self, relative: str, array: NDArray[np.generic], attributes: Mapping[str, object] | None = None) -> str:
        path = super().write(relative, array, attributes)
        self.written.append(path)
        return path


def attach_reference(session: Session, store: RecordingStore, request: AttachRequest, max_voxels: int,
                     actor: str | None = None) -> tuple[Attached, list[str]]:
    """Attach ``request`` in ``session``'s transaction (the caller commits); returns what it did and the paths of the
    maps it replaced (to remove after the commit). A user's mistake is an :class:`~pipeline.errors.InputError` or
    :class:`~pipeline.errors.NotFoundError`, raised before anything is written."""
    if request.kind not in REFERENCE_KINDS:
        raise InputError(f"reference kind must be one of {', '.join(REFERENCE_KINDS)}, got {request.kind!r}")
    image = session.scalar(select(Image).where(Image.name == request.case))
    if image is None:
        raise NotFoundError(f"unknown case {request.case!r}")
    processings = session.scalars(select(Processing).where(Processing.image_id == image.id)
                                  .order_by(Processing.id)).all()
    if not processings:
        raise InputError(f"case {request.case!r} has no stored result; run the batch on it first")
    labels = _labels(session, processings, request.case)
    grid = stored_grid(image)
    array, reference_notes = read_reference(request.reference, grid, labels, image.frame_of_reference_uid,
                                            max_voxels)
    notes = reference_notes
    if session.scalar(select(SplitRole.image_id).where(SplitRole.image_id == image.id).limit(1)) is not None:
        notes += ("the case is in a protocol's cohort: its temperatures were fitted with the earlier reference; "
                  "rerun the protocol",)
    new_hash = reference_hash(grid, array)
    previous = session.scalar(select(ReferenceAttachment).where(
        ReferenceAttachment.image_id == image.id, ReferenceAttachment.superseded_at.is_(None)))
    results = session.scalars(select(CaseResult).where(CaseResult.image_id == image.id)
                              .order_by(CaseResult.id)).all()
    before = {"reference_hash": image.reference_hash, "attachment": previous.id if previous else None,
              "kind": previous.kind if previous else None}
    now = utcnow()
    attachment = ReferenceAttachment(
        image_id=image.id, kind=request.kind, source=str(request.reference),
        source_format="rtstruct" if request.reference.suffix.lower() == ".dcm" else "image",
        reference_hash=new_hash, actor=(actor or f"cli:{getpass.getuser()}")[:100], attached_at=now,
        results=len(results), replaced=_snapshot(session, image, results))
    if previous is not None:
        previous.superseded_at = now
    session.add(attachment)
    session.flush()
    replaced: list[str] = []
    same = image.reference_hash == new_hash and session.scalar(select(Artifact.id).where(
        Artifact.image_id == image.id, Artifact.kind == "reference", Artifact.processing_id.is_(None),
        Artifact.result_id.is_(None))) is not None
    if not same:
        _replace_reference_map(session, store, image, array, attachment.id, replaced)
    image.reference_hash, image.reference_path = new_hash, str(request.reference)
    image.reference_note = "; ".join(reference_notes) or None
    for processing in processings:
        _rescore(session, store, image, processing, array, attachment.id, replaced, same)
    session.add(AuditEntry(at=now, actor_id=None, actor=attachment.actor, action="reference.attach", outcome="ok",
                           object_type="image", object_id=image.name[:200], before=before,
                           after={"reference_hash": new_hash, "attachment": attachment.id, "kind": request.kind,
                                  "source": attachment.source, "results": len(results)}))
    log.info("case=%s: %s reference attached (%s), %d results recomputed", image.name, request.kind,
             request.reference, len(results))
    return Attached(image.name, attachment.id, len(results), previous.id if previous else None, notes), replaced


def _labels(session: Session, processings: Sequence[Processing], case: str) -> tuple[str, ...]:
    """The labels of the model sets that processed the case (one list: a reference is read onto one)."""
    found = {tuple(session.get_one(ModelSet, p.model_set_id).labels) for p in processings}
    if len(found) > 1:
        raise InputError(f"case {case!r} was processed by model sets with different labels {sorted(found)}; "
                         "a reference maps onto one")
    return next(iter(found))


def _snapshot(session: Session, image: Image, results: Sequence[CaseResult]) -> dict[str, object]:
    """What the attachment replaces: the reference hash and, per result, its case-level metrics and DSC."""
    names = {c.id: c.name for c in session.scalars(select(Configuration).where(
        Configuration.id.in_(sorted({r.configuration_id for r in results}))))}
    rows = []
    for result in results:
        dsc = dict(session.execute(select(StructureResult.structure, StructureResult.dsc).where(
            StructureResult.result_id == result.id)).all())
        rows.append({"result": result.id, "configuration": names[result.configuration_id],
                     "temperature_fit": result.temperature_fit_id, "has_reference": result.has_reference,
                     "error_voxels": result.error_voxels, "metrics": result_values(session, result.id), "dsc": dsc})
    return {"reference_hash": image.reference_hash, "results": rows}


def _replace_reference_map(session: Session, store: ArtifactStore, image: Image, array: NDArray[np.uint8],
                           attachment_id: int, replaced: list[str]) -> None:
    image_level = (Artifact.image_id == image.id, Artifact.kind == "reference", Artifact.processing_id.is_(None),
                   Artifact.result_id.is_(None))
    replaced += session.scalars(select(Artifact.path).where(*image_level)).all()
    session.execute(delete(Artifact).where(*image_level))
    path = store.write(f"{safe_name(image.name)}/reference@ref{attachment_id}.zarr", array)
    session.execute(insert(Artifact), [{"image_id": image.id, "processing_id": None, "result_id": None,
                                        "configuration_id": None, "kind": "reference", "path": path,
                                        "dtype": str(array.dtype), "shape": list(array.shape), "budget": None}])


def _settings(session: Session, processing: Processing, case: str) -> MetricSettings:
    settings = processing_settings(session, processing.id)
    if settings is None:
        log.warning("case=%s: the run of processing %d stored no metric settings; using the defaults", case,
                    processing.id)
        return DEFAULT_SETTINGS
    return settings


def _rescore(session: Session, store: ArtifactStore, image: Image, processing: Processing,
             labels: NDArray[np.uint8], attachment_id: int, replaced: list[str], same: bool) -> None:
    """Every result of one processing, recomputed on its stored maps with ``labels`` as the reference; when ``same``
    (the case holds this very reference already) a result scored on it keeps its rows. A sweep result stored without
    maps (``run --sweep`` without ``--sweep-maps``) cannot be recomputed: another reference is refused."""
    model_set = session.get_one(ModelSet, processing.model_set_id)
    configurations = session.scalars(select(Configuration).where(Configuration.model_set_id == model_set.id)).all()
    by_id = {c.id: c for c in configurations}
    settings = _settings(session, processing, image.name)
    maps = StoredMaps(session, store, settings)
    x, y, z = image.spacing
    spacing = (float(z), float(y), float(x))
    counts = np.bincount(labels.ravel(), minlength=len(model_set.labels))
    rescored = False
    for result in session.scalars(select(CaseResult).where(CaseResult.processing_id == processing.id)
                                  .order_by(CaseResult.id)).all():
        configuration = by_id[result.configuration_id]
        if same and result.has_reference:
            continue
        paths = dict(session.execute(select(Artifact.kind, Artifact.path).where(
            Artifact.result_id == result.id)).all())
        if configuration.sweep and "budget_mask" not in paths:
            raise InputError(f"case {image.name!r}: the sweep's {configuration.name} result has no stored maps to "
                             "score another reference on; rerun the batch with --sweep-maps (or without --sweep)")
        fit = session.get(TemperatureFit, result.temperature_fit_id) if result.temperature_fit_id else None
        began = time.perf_counter()
        if fit is None:
            probabilities, temperature = maps.probabilities(processing.id, image.name, configuration), None
            recorded = None
        else:
            if fit.temperature_mode != settings.temperature_mode:
                raise InputError(f"case {image.name!r}: the {configuration.name} result's temperature was fitted "
                                 f"with temperature_mode {fit.temperature_mode}, its run's settings say "
                                 f"{settings.temperature_mode}; rerun the batch and the protocol")
            scaling = applied_scaling(fit, image.acquisition)
            probabilities, temperature = maps.scored(processing.id, image.name, configuration,
                                                     twin_of(configuration, configurations), scaling)
            recorded = recorded_temperature(scaling)
        budget = session.scalar(select(Artifact.budget).where(Artifact.result_id == result.id,
                                                               Artifact.kind == "budget_mask"))
        if budget is None:
            raise NotFoundError(f"case {image.name!r}: the {configuration.name} result has no stored top-budget "
                                "mask; rerun the batch")
        evaluated = evaluate_configuration(probabilities, labels, spacing, settings, temperature, budget)
        outcome = Outcome(configuration.name, recorded, evaluated, True,
                          time.perf_counter() - began, body_entropy(evaluated, maps.body(image.id, image.name)))
        fit_id = fit.id if fit is not None else None
        prefix = f"{result_prefix(image.name, model_set.identity, configuration.name, fit_id)}@ref{attachment_id}"
        rewrite_result(session, result, ResultRows(
            configuration.id, fit_id, result_row(outcome), value_rows(outcome),
            structure_rows(outcome, tuple(model_set.labels), counts), curve_rows(outcome), bin_rows(outcome),
            map_artifacts(store, prefix, outcome), result_regions(outcome, spacing)))
        replaced += paths.values()
        rescored = True
    if rescored:
        refresh_ood_scores(session, model_set.id, settings)


@dataclass
class AttachSummary:
    """How a set of attachments ended: the attached ones and the failed ones (case, reason on one line)."""

    attached: list[Attached] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every reference was attached, 1 when one failed (the others are attached)."""
        return EXIT_FAILURE if self.failed else EXIT_OK

    def lines(self) -> list[str]:
        """The summary line, then one line per failure and per note (an RTSTRUCT ROI clipped to the image, a case of
        a protocol's cohort)."""
        head = f"attach-reference: {len(self.attached)} attached, {len(self.failed)} failed"
        return [head, *(f"  FAILED {case}: {reason}" for case, reason in self.failed),
                *(f"  NOTE {a.case}: {note}" for a in self.attached for note in a.notes)]


def requests_from_manifest(path: Path, kind: str = DEFAULT_REFERENCE_KIND) -> list[AttachRequest]:
    """The rows of a CSV manifest with the columns ``case, reference`` and optionally ``kind`` (default ``kind``);
    relative paths are read from the manifest's folder."""
    rows = manifest_rows(path, ("case", "reference"), "an attach-reference manifest")
    requests = []
    for row in rows:
        reference = (row.get("reference") or "").strip()
        requests.append(AttachRequest((row.get("case") or "").strip(), path.parent / reference if reference else Path(),
                                      (row.get("kind") or "").strip() or kind))
    return requests


def attach_references(url: str, root: Path, requests: list[AttachRequest], max_voxels: int, *, isolate: bool
                      ) -> AttachSummary:
    """Attach each request in a transaction of its own. ``isolate``: a failing one is recorded in the summary and
    the others go on (a manifest); otherwise its error propagates (one case)."""
    engine = make_engine(url)
    check_at_head(engine)
    ArtifactStore(root).check_writable()
    sessions = session_factory(engine)
    summary = AttachSummary()
    try:
        for request in requests:
            store = RecordingStore(root)
            try:
                if not request.case or not request.reference.name:
                    raise InputError("case and reference must not be empty")
                with sessions.begin() as session:
                    attached, replaced = attach_reference(session, store, request, max_voxels)
            except Exception as error:
                for path in store.written:
                    store.delete(path)
                if not isolate:
                    raise
                if not isinstance(error, UserError):
                    log.exception("case=%s: attach-reference failed", request.case)
                summary.failed.append((request.case or "?", one_line(error)))
                continue
            for path in replaced:
                store.delete(path)
            summary.attached.append(attached)
    finally:
        engine.dispose()
    return summary
