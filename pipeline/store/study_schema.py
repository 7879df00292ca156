"""The review study tables: a study's protocol (``studies``), its cases, its reviewers and its allocation
(``study_assignments``), beside the review tables (:mod:`pipeline.store.review_schema`).

A study is defined once and then immutable: the only change is closing it (``closed_at``, ``closed_by``), and the only
change to an assignment is its first opening by its reviewer (``opened_at``). Migration ``0017_review_study.py``
installs triggers that refuse any other UPDATE, and every DELETE, on these tables (both backends), so not even a
direct SQL write changes a defined study. Cases and users are referenced without cascades: a case or user in a study
stays. The service (:mod:`pipeline.review.study`) defines, opens and closes studies, each action audited.

Values: ``design`` of :data:`DESIGNS`, ``endpoint`` of :data:`ENDPOINTS`, ``arm`` of :data:`ARMS` (the enums of
:mod:`pipeline.review.study_allocation` hold the same values); ``budget_kind`` / ``budget_value`` are a
:class:`pipeline.metrics.review_budget.Budget`; ``case_source`` records how the cases were chosen (``{"cohort": C}``,
``{"processed_from": D, "processed_to": D}`` or ``{"cases": [...]}``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.metrics.review_budget import Budget
from pipeline.store.schema import Base, utcnow

DESIGNS = ("per-case", "crossover")
ENDPOINTS = ("edited-ml-per-minute", "minutes-per-case", "edit-detected-fraction")
ARMS = ("A", "B")
BUDGET_KINDS = ("fraction", "minutes")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Study(Base):
    """A prospective review study: its protocol, fixed at definition (module description)."""

    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint(_one_of("design", DESIGNS), name="ck_studies_design"),
        CheckConstraint(_one_of("endpoint", ENDPOINTS), name="ck_studies_endpoint"),
        CheckConstraint(_one_of("budget_kind", BUDGET_KINDS), name="ck_studies_budget_kind"),
        CheckConstraint("(design = 'crossover') = (washout_days IS NOT NULL) AND "
                        "(washout_days IS NULL OR washout_days >= 0)", name="ck_studies_washout"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id"), index=True)
    budget_kind: Mapped[str] = mapped_column(String(8))
    budget_value: Mapped[float] = mapped_column(Float)
    case_source: Mapped[dict[str, Any]] = mapped_column()
    design: Mapped[str] = mapped_column(String(16))
    washout_days: Mapped[int | None] = mapped_column(Integer)
    endpoint: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(BigInteger)
    allocation_method: Mapped[str] = mapped_column(String(32))
    allocation_digest: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()
    closed_by: Mapped[str | None] = mapped_column(String(100))

    def budget(self) -> Budget:
        """The budget under test."""
        return Budget("minutes" if self.budget_kind == "minutes" else "fraction", self.budget_value)


class StudyCase(Base):
    """A case of a study."""

    __tablename__ = "study_cases"
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True, index=True)


class StudyReviewer(Base):
    """A reviewer of a study (a user with the reviewer role when the study was defined)."""

    __tablename__ = "study_reviewers"
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)


class StudyAssignment(Base):
    """One reading of the allocation: ``user_id`` reads ``image_id`` in ``arm`` during ``period``, ``position``-th on
    their list; ``opened_at`` is when that reviewer first opened it (the arm is concealed from them until then)."""

    __tablename__ = "study_assignments"
    __table_args__ = (
        UniqueConstraint("study_id", "image_id", "user_id"),
        CheckConstraint(_one_of("arm", ARMS), name="ck_study_assignments_arm"),
        CheckConstraint("period IN (1, 2)", name="ck_study_assignments_period"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    arm: Mapped[str] = mapped_column(String(1))
    period: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime | None] = mapped_column()
