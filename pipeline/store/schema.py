"""The store's tables (SQLAlchemy 2.0 typed declarative); Alembic's ``migrations/`` creates and evolves them.

Layout, from inputs to results:
- ``patients`` → ``images`` (one CT and its optional reference; geometry, content hashes, DICOM UIDs);
- ``model_sets`` → ``members`` and ``configurations`` (the grid: members, TTA views, TS);
- ``protocols`` → ``split_roles`` (each patient's role per repeat) and ``temperature_fits`` (one T per TS
  configuration per repeat, or a deployed fit with no protocol);
- ``runs`` (one batch invocation) → ``case_failures``;
- ``processings`` (one image × model set, the unit of idempotency and of one transaction) → ``case_results``
  (one configuration, optionally one temperature fit) → ``metric_values`` (one row per metric of the registry),
  ``structure_results``, ``curve_points``, ``reliability_bins``; ``artifacts`` point to the chunked voxel maps of
  an image or a result.
The worklist and review tables will hang off ``case_results`` and ``images`` by their integer ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

WHOLE_CASE = -1  # MetricValue.class_index of a case-level value; 0..C-1 are the structures


def utcnow() -> datetime:
    """Now, timezone-aware (UTC)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table; ``Base.metadata`` is Alembic's target."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True),
    }


class Patient(Base):
    """A pseudonymous patient; ``mrn_hash`` is an optional salted hash of the hospital number, never the number."""

    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(128), unique=True)
    mrn_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    images: Mapped[list[Image]] = relationship(back_populates="patient")


class Image(Base):
    """One CT (and its reference segmentation, when there is one) as the batch found it.

    ``name`` is the case key used on the command line and in URLs; ``cohort`` groups cases for a protocol
    (``phantom``, ``real``, ``clinical``, …). Geometry is in SimpleITK's (x, y, z) order, spacing in mm.
    ``content_hash``/``reference_hash`` are SHA-256 of the voxels and geometry; a change makes the batch redo it.
    ``acquisition``: how the scan was made, where known (DICOM tags such as the manufacturer, model, kernel, slice
    thickness, kVp, contrast; None when nothing is known, e.g. a NIfTI without a manifest column).
    """

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    cohort: Mapped[str] = mapped_column(String(64), index=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_path: Mapped[str] = mapped_column(Text)
    reference_path: Mapped[str | None] = mapped_column(Text)
    reference_note: Mapped[str | None] = mapped_column(Text)
    study_uid: Mapped[str | None] = mapped_column(String(64))
    series_uid: Mapped[str | None] = mapped_column(String(64))
    frame_of_reference_uid: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[list[Any]] = mapped_column()
    spacing: Mapped[list[Any]] = mapped_column()
    origin: Mapped[list[Any]] = mapped_column()
    direction: Mapped[list[Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    reference_hash: Mapped[str | None] = mapped_column(String(64))
    acquisition: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    patient: Mapped[Patient] = relationship(back_populates="images")


class ModelSet(Base):
    """A set of nnU-Net members (``identity``: hash of plans and every member's weights)."""

    __tablename__ = "model_sets"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    nnunet_configuration: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    members: Mapped[list[Member]] = relationship(back_populates="model_set", cascade="all, delete-orphan")
    configurations: Mapped[list[Configuration]] = relationship(
        back_populates="model_set", cascade="all, delete-orphan"
    )


class Member(Base):
    """One network of a model set: a fold model (DE) or one checkpoint of a run (CE)."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("model_set_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_sets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    checkpoint: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    model_set: Mapped[ModelSet] = relationship(back_populates="members")


class Configuration(Base):
    """An uncertainty configuration of the grid (``DE+TTA+TS``, …): members, views, whether TS applies, whether it
    is a sub-configuration of the sweep (:func:`pipeline.inference.grid.sweep_grid`: stored without voxel maps unless
    the run asked for them).

    ``temperature_granularity`` of a TS configuration: ``configuration`` (one T, the grid's ``X+TS``), ``class`` or
    ``scanner`` (the comparison configurations ``X+TS/class`` and ``X+TS/scanner`` the protocol adds beside ``X+TS``
    from the same stored probabilities, :mod:`pipeline.store.temperatures`); ``configuration`` for the others.
    """

    __tablename__ = "configurations"
    __table_args__ = (
        UniqueConstraint("model_set_id", "name"),
        CheckConstraint("temperature_granularity IN ('configuration', 'class', 'scanner')",
                        name="ck_configurations_temperature_granularity"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_sets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    members: Mapped[list[Any]] = mapped_column()
    views: Mapped[list[Any]] = mapped_column()
    temperature_scaling: Mapped[bool] = mapped_column(Boolean)
    temperature_granularity: Mapped[str] = mapped_column(String(16), server_default="configuration")
    sweep: Mapped[bool] = mapped_column(Boolean, server_default=false())
    model_set: Mapped[ModelSet] = relationship(back_populates="configurations")


class Protocol(Base):
    """A repeated hold-out protocol over one cohort: R seeded patient-level splits."""

    __tablename__ = "protocols"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_sets.id", ondelete="CASCADE"), index=True)
    cohort: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    repeats: Mapped[int] = mapped_column(Integer)
    test_fraction: Mapped[float] = mapped_column(Float)
    calibration_fraction: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SplitRole(Base):
    """A patient's role (``test``, ``calibration``, ``development``) in one repeat of a protocol."""

    __tablename__ = "split_roles"
    protocol_id: Mapped[int] = mapped_column(ForeignKey("protocols.id", ondelete="CASCADE"), primary_key=True)
    repeat: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


FIT_ROLES = ("repeat", "deployed", "crossfit")


class TemperatureFit(Base):
    """One fitted temperature of a TS configuration; ``cases`` are the calibration cases it was fitted on.

    ``role``: ``repeat`` (one protocol repeat's calibration cases; its TS results are that repeat's test cases),
    ``deployed`` (the whole calibration cohort, no protocol: what the nightly batch applies to every case outside
    the cohort) or ``crossfit`` (the cohort minus one fold, no protocol: applied to that fold's cases, so that no
    case's deployed TS result comes from a temperature fitted on itself). :mod:`pipeline.store.deployed` owns which
    results count as deployed. ``temperature_mode``: the metric settings' mode the fit was made under
    (``after_pooling``: T scales the pooled map; ``per_member``: each member before pooling); a fit is applied under
    that mode only. ``granularity`` (its configuration's): ``configuration`` — ``temperature`` is T;
    ``class`` — ``temperatures`` is the vector, one T_c per class, and ``temperature`` the scalar fit on the same
    voxels that the vector search started from; ``scanner`` — ``temperature`` is the pooled T of every calibration
    case (the fallback) and ``temperatures`` maps each scanner of the calibration cases to ``{"cases", "voxels",
    "temperature"}`` (its own T, or None where it fell back to the pooled one). ``nll_before``/``nll_after`` are on
    the calibration voxels under the fit's own granularity (``scanner``: the pooled fit's).
    """

    __tablename__ = "temperature_fits"
    __table_args__ = (
        CheckConstraint("role IN ('repeat', 'deployed', 'crossfit')", name="ck_temperature_fits_role"),
        CheckConstraint("temperature_mode IN ('after_pooling', 'per_member')", name="ck_temperature_fits_mode"),
        CheckConstraint("granularity IN ('configuration', 'class', 'scanner')",
                        name="ck_temperature_fits_granularity"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"), index=True)
    protocol_id: Mapped[int | None] = mapped_column(ForeignKey("protocols.id", ondelete="CASCADE"), index=True)
    repeat: Mapped[int | None] = mapped_column(Integer)
    temperature: Mapped[float] = mapped_column(Float)
    nll_before: Mapped[float] = mapped_column(Float)
    nll_after: Mapped[float] = mapped_column(Float)
    voxels: Mapped[int] = mapped_column(Integer)
    cases: Mapped[list[Any]] = mapped_column()
    role: Mapped[str] = mapped_column(String(16))
    temperature_mode: Mapped[str] = mapped_column(String(16), server_default="after_pooling")
    granularity: Mapped[str] = mapped_column(String(16), server_default="configuration")
    temperatures: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One invocation of the batch (``kind``: ``run`` or ``protocol``) and how it ended.

    ``status``: ``running``, ``succeeded``, ``failed`` (some cases failed) or ``interrupted`` (a run found still
    ``running`` whose process is gone is marked so by the next run). ``audit_check`` is the audit log's verification
    at the end of the run (:meth:`pipeline.store.audit_chain.ChainReport.record`: result, rows, head id and hash).
    """

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    code_version: Mapped[str] = mapped_column(String(64))
    model_set_id: Mapped[int | None] = mapped_column(ForeignKey("model_sets.id", ondelete="SET NULL"))
    cases_total: Mapped[int] = mapped_column(Integer, default=0)
    cases_done: Mapped[int] = mapped_column(Integer, default=0)
    cases_skipped: Mapped[int] = mapped_column(Integer, default=0)
    cases_failed: Mapped[int] = mapped_column(Integer, default=0)
    error_summary: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    audit_check: Mapped[dict[str, Any] | None] = mapped_column()
    failures: Mapped[list[CaseFailure]] = relationship(back_populates="run", cascade="all, delete-orphan")


class CaseFailure(Base):
    """A case that a run could not process, with the stage, the reason (one line) and the Dask worker it failed on
    (NULL: in the batch's own process)."""

    __tablename__ = "case_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    case_name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    worker: Mapped[str | None] = mapped_column(String(200))
    run: Mapped[Run] = relationship(back_populates="failures")


class Processing(Base):
    """One image through one model set: the batch's unit of work, written in one transaction.

    ``input_hash`` covers the image and reference hashes, the model set identity, the metric settings and the
    code version: an unchanged hash means the work is done. Timings are in seconds. ``worker``: the Dask worker that
    processed it (``run --cluster``; NULL: the batch's own process).
    """

    __tablename__ = "processings"
    __table_args__ = (UniqueConstraint("image_id", "model_set_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_sets.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    input_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(64))
    forward_passes: Mapped[int] = mapped_column(Integer)
    seconds_inference: Mapped[float] = mapped_column(Float)
    seconds_metrics: Mapped[float] = mapped_column(Float)
    seconds_storage: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[datetime] = mapped_column(default=utcnow)
    worker: Mapped[str | None] = mapped_column(String(200))


class CaseResult(Base):
    """One configuration's result for a case (and temperature fit, for TS configurations): the ROI and error sizes,
    the voxel volume and the time it took. Its metrics are rows of ``metric_values`` (one per registry metric).

    ``error_voxels`` needs a reference and is NULL when the image has none; the ROI is then the predicted foreground
    dilated (spec, prospective use). ``empty_prediction``: the configuration predicted no foreground voxel at all
    (the reviewer must review every structure whole; without a reference the ROI is empty and the ROI metrics
    NULL). ``ood_entropy``: the mean entropy over the scan's body (:func:`pipeline.metrics.shift.body_region`);
    ``ood_percentile``, ``ood_reference_n`` and ``ood_flag``: its rank among the same configuration's values on
    the in-distribution cases (:mod:`pipeline.store.ood`); percentile and flag NULL when there are too few.
    ``forward_passes``, ``seconds_inference`` and ``device``: what the configuration cost on this case as if run
    alone (its passes; preprocessing + its passes' measured seconds + its own pooling and mapping:
    :mod:`pipeline.inference.pooling`) and where it ran (``cpu`` or ``cuda: <GPU>``); NULL for results stored before
    migration 0016. ``seconds`` is the metric evaluation's time.
    """

    __tablename__ = "case_results"
    id: Mapped[int] = mapped_column(primary_key=True)
    processing_id: Mapped[int] = mapped_column(ForeignKey("processings.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"), index=True)
    temperature_fit_id: Mapped[int | None] = mapped_column(
        ForeignKey("temperature_fits.id", ondelete="CASCADE"), index=True
    )
    temperature: Mapped[float | None] = mapped_column(Float)
    has_reference: Mapped[bool] = mapped_column(Boolean)
    roi_voxels: Mapped[int] = mapped_column(Integer)
    error_voxels: Mapped[int | None] = mapped_column(Integer)
    voxel_ml: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    empty_prediction: Mapped[bool] = mapped_column(Boolean, server_default=false())
    ood_entropy: Mapped[float | None] = mapped_column(Float)
    ood_percentile: Mapped[float | None] = mapped_column(Float)
    ood_reference_n: Mapped[int | None] = mapped_column(Integer)
    ood_flag: Mapped[bool | None] = mapped_column(Boolean)
    forward_passes: Mapped[int | None] = mapped_column(Integer)
    seconds_inference: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(100))


class MetricValue(Base):
    """One metric of one result (``pipeline.metrics.registry`` names it): a long table, so a new metric needs no
    new column. ``class_index`` is :data:`WHOLE_CASE` for a case-level value and 0..C-1 for a per-structure one.
    ``value`` is NULL where the metric is undefined (no reference, or an empty side of an AUC)."""

    __tablename__ = "metric_values"
    __table_args__ = ({"sqlite_with_rowid": False},)  # SQLite: rows kept in key order, each value beside its key
    result_id: Mapped[int] = mapped_column(ForeignKey("case_results.id", ondelete="CASCADE"), primary_key=True)
    class_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


class StructureResult(Base):
    """Per class of one result: DSC (NULL without a reference) and predicted / reference volumes in mL.

    ``empty_prediction``: a foreground structure with no predicted voxel that the reference holds, or any such
    structure when there is no reference (:func:`pipeline.batch.outcomes.empty_structures`): review it whole."""

    __tablename__ = "structure_results"
    result_id: Mapped[int] = mapped_column(ForeignKey("case_results.id", ondelete="CASCADE"), primary_key=True)
    class_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    structure: Mapped[str] = mapped_column(String(100))
    dsc: Mapped[float | None] = mapped_column(Float)
    predicted_ml: Mapped[float] = mapped_column(Float)
    reference_ml: Mapped[float | None] = mapped_column(Float)
    empty_prediction: Mapped[bool] = mapped_column(Boolean, server_default=false())


class CurvePoint(Base):
    """One budget of a result's curves: UEO, error recall and precision (NULL without a reference), flagged mL."""

    __tablename__ = "curve_points"
    result_id: Mapped[int] = mapped_column(ForeignKey("case_results.id", ondelete="CASCADE"), primary_key=True)
    budget_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget: Mapped[float] = mapped_column(Float)
    ueo: Mapped[float | None] = mapped_column(Float)
    recall: Mapped[float | None] = mapped_column(Float)
    precision: Mapped[float | None] = mapped_column(Float)
    flagged_ml: Mapped[float] = mapped_column(Float)


class ReliabilityBin(Base):
    """One confidence bin of a result: voxel count, Σ confidence, Σ correct (pooled ECE and diagrams are exact).

    ``group`` is 0 for the top-label and foreground ECE modes, the class index for the classwise mode.
    """

    __tablename__ = "reliability_bins"
    result_id: Mapped[int] = mapped_column(ForeignKey("case_results.id", ondelete="CASCADE"), primary_key=True)
    group: Mapped[int] = mapped_column(Integer, primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sum_confidence: Mapped[float] = mapped_column(Float)
    sum_correct: Mapped[float] = mapped_column(Float)


class Artifact(Base):
    """A voxel map in the artifact store: ``path`` relative to ``QA_ARTIFACTS_DIR``.

    ``kind``: ``ct``, ``reference`` (per image); ``probabilities`` (per processing and uncalibrated configuration,
    float32: temperatures are fitted and results re-evaluated from them); ``entropy`` (float32), ``prediction``,
    ``error``, ``budget_mask`` (per result; ``budget`` is the mask's review budget). Stores written before
    float32 hold float16 probabilities and entropy: rerun the batch to refit from full precision.
    """

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    processing_id: Mapped[int | None] = mapped_column(ForeignKey("processings.id", ondelete="CASCADE"), index=True)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("case_results.id", ondelete="CASCADE"), index=True)
    configuration_id: Mapped[int | None] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[Any]] = mapped_column()
    budget: Mapped[float | None] = mapped_column(Float)


REFERENCE_KINDS = ("final_clinical", "research")
#: a reference is ``research`` unless declared the clinician's final contour: only then is its error map shown as
#: the clinician's edit
DEFAULT_REFERENCE_KIND = "research"


class ReferenceAttachment(Base):
    """One reference attached to a stored case after its batch (``attach-reference``), newest last.

    ``kind``: ``final_clinical`` (the clinician's final contour: the error map is then the clinician's edit) or
    ``research`` (any other reference). ``source_format``: ``rtstruct`` or ``image``. The current reference of an
    image is its attachment with ``superseded_at`` NULL; re-attaching sets it on the previous one. ``replaced``
    keeps what the attachment overwrote: the earlier reference hash and, per result, its case-level metric values
    and per-structure DSC, so an auditor can see what changed.
    """

    __tablename__ = "reference_attachments"
    __table_args__ = (
        CheckConstraint("kind IN ('final_clinical', 'research')", name="ck_reference_attachments_kind"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    source_format: Mapped[str] = mapped_column(String(16))
    reference_hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(100))
    attached_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column()
    results: Mapped[int] = mapped_column(Integer)
    replaced: Mapped[dict[str, Any]] = mapped_column()
