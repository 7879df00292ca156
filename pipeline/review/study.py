"""Review studies as the service runs them: define (admin), list, show, open a case (its reviewer), close (admin).

A study (``docs/review-study.md``) compares arm A "standard review" with arm B "uncertainty-guided review" on the
store's own cases. Its definition names the configuration and budget under test, the cases
(:mod:`pipeline.review.study_cases`), the reviewers, the design, the pre-registered primary endpoint and the seed; the
allocation (:mod:`pipeline.review.study_allocation`) is computed and stored in the same transaction, and the study is
immutable from then on (the store's triggers refuse any change but closing it and first openings).

Who sees what, enforced here and not only in a user interface:
- defining and closing: admin (or the command line);
- the allocation (every reviewer's arm of every case): approvers and admins, each look audited
  (``study.view_allocation``);
- a reviewer sees only the studies it reviews and its own readings, each reading's arm only once it opened that case;
- opening a case (``study.open_case``) reveals the arm to that case's reviewer alone; anyone else gets nothing and a
  ``denied`` audit row. The first opening starts the reader's clock on each of the case's items
  (:func:`pipeline.review.timing.open_reading_clocks`: the reading is timed from its opening, whoever reviews them).
  In a crossover, period 2 opens once the reviewer opened and decided every period-1 case and the washout has passed
  since the last of those decisions (:func:`pipeline.review.study_measure.reading_decisions`: the memory of a case
  lasts until the reader is done with it, not from its opening);
- the measurements per reading (:mod:`pipeline.review.study_measure`: the results, with every arm): approvers and
  admins, each look audited (``study.view_results``);
- :meth:`StudyOperations.study_readings` and :meth:`StudyOperations.open_case_readings` give the dashboard a user's
  own readings in open studies and the arm that applies to a case (:mod:`pipeline.review.study_blinding`'s rule).
Every write, and every refusal, is one audit row (:mod:`pipeline.review.base`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError, UserError
from pipeline.metrics.review_budget import Budget
from pipeline.review import workflow
from pipeline.review.base import Principal, Refused, ServiceBase, aware, utc
from pipeline.review.study_allocation import METHOD, Arm, Design, Endpoint, allocate, digest
from pipeline.review.study_blinding import StudyReading, applicable_arm
from pipeline.review.study_cases import CaseSelection, select_cases, select_reviewers
from pipeline.review.study_measure import reading_decisions, reading_rows
from pipeline.review.timing import open_reading_clocks
from pipeline.review.workflow import Action, Actor, PermissionDenied, WorkflowError
from pipeline.review.worklist import deployed_results, review_classes
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.configurations import resolve_configuration
from pipeline.store.review_schema import User
from pipeline.store.schema import Configuration, Image, ModelSet
from pipeline.store.study_schema import Study, StudyAssignment, StudyCase, StudyReviewer

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class StudyDefinition:
    """What an admin defines (module description); checked against the store by :meth:`define_study`."""

    name: str
    configuration: str
    budget: Budget
    cases: CaseSelection
    reviewers: tuple[str, ...]
    design: Design | str
    endpoint: Endpoint | str
    seed: int
    washout_days: int | None = None
    model_set: str | None = None


@dataclass(frozen=True)
class StudyInfo:
    """A stored study's protocol."""

    name: str
    configuration: str
    model_set: str
    budget: Budget
    case_source: dict[str, Any]
    design: Design
    washout_days: int | None
    endpoint: Endpoint
    seed: int
    allocation_method: str
    allocation_digest: str
    created_by: str
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    cases: tuple[str, ...]
    reviewers: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """The protocol as the audit log keeps it."""
        return {"name": self.name, "configuration": self.configuration, "model_set": self.model_set,
                "budget": self.budget.describe(), "cases_from": self.case_source, "cases": len(self.cases),
                "reviewers": list(self.reviewers), "design": self.design.value, "washout_days": self.washout_days,
                "endpoint": self.endpoint.value, "seed": self.seed, "allocation": self.allocation_method,
                "allocation_sha256": self.allocation_digest}


@dataclass(frozen=True)
class Reading:
    """One assignment as its viewer may see it: ``arm`` None while it is concealed from them."""

    case: str
    reviewer: str
    period: int
    order: int
    arm: Arm | None
    opened_at: datetime | None


@dataclass(frozen=True)
class StudyView:
    """A study and the readings its viewer may see: every one (``allocation`` True) or the viewer's own."""

    study: StudyInfo
    readings: tuple[Reading, ...]
    allocation: bool


def _checked(definition: StudyDefinition) -> tuple[Design, Endpoint]:
    if not STUDY_NAME.match(definition.name):
        raise InputError(f"study name {definition.name[:100]!r} must be 1-100 letters, digits, spaces and ._- "
                         "(starting with a letter or digit)")
    try:
        design = Design(definition.design)
        endpoint = Endpoint(definition.endpoint)
    except ValueError as error:
        raise InputError(f"{error}: designs are {', '.join(Design)}; endpoints {', '.join(Endpoint)}") from None
    if (design is Design.CROSSOVER) != (definition.washout_days is not None):
        raise InputError("a crossover needs a washout in days, and only a crossover has one")
    if definition.washout_days is not None and definition.washout_days < 0:
        raise InputError(f"the washout must be 0 days or more, not {definition.washout_days}")
    if not 0 <= definition.seed <= MAX_SEED:
        raise InputError(f"the seed must be an integer in [0, {MAX_SEED}]")
    return design, endpoint


def _study(session: Session, name: str) -> Study:
    study = session.scalar(select(Study).where(Study.name == name))
    if study is None:
        raise NotFoundError(f"there is no study named {name[:100]!r}")
    return study


def _info(session: Session, study: Study) -> StudyInfo:
    configuration = session.get_one(Configuration, study.configuration_id)
    model_set = session.get_one(ModelSet, configuration.model_set_id)
    cases = session.scalars(select(Image.name).join(StudyCase, StudyCase.image_id == Image.id)
                            .where(StudyCase.study_id == study.id).order_by(Image.name))
    reviewers = session.scalars(select(User.username).join(StudyReviewer, StudyReviewer.user_id == User.id)
                                .where(StudyReviewer.study_id == study.id).order_by(User.username))
    return StudyInfo(study.name, configuration.name, model_set.identity, study.budget(), study.case_source,
                     Design(study.design), study.washout_days, Endpoint(study.endpoint), study.seed,
                     study.allocation_method, study.allocation_digest, study.created_by, utc(study.created_at),
                     aware(study.closed_at), study.closed_by, tuple(cases), tuple(reviewers))


def _readings(session: Session, study: Study, user_id: int | None, reveal_all: bool) -> tuple[Reading, ...]:
    query = (select(StudyAssignment, Image.name, User.username)
             .join(Image, Image.id == StudyAssignment.image_id).join(User, User.id == StudyAssignment.user_id)
             .where(StudyAssignment.study_id == study.id).order_by(User.username, StudyAssignment.position))
    if not reveal_all:
        query = query.where(StudyAssignment.user_id == user_id)
    return tuple(Reading(case, reviewer, a.period, a.position,
                         Arm(a.arm) if reveal_all or a.opened_at is not None else None, aware(a.opened_at))
                 for a, case, reviewer in session.execute(query))


def _case_items(session: Session, study: Study, case: str) -> list[int]:
    """The class indexes of ``case``'s review items under the study's configuration: its deployed result's structures
    to review (:func:`pipeline.review.worklist.review_classes`; a region's own structure opens its clock at start)."""
    configuration = session.get_one(Configuration, study.configuration_id)
    model_set = session.get_one(ModelSet, configuration.model_set_id).identity
    refs = deployed_results(session, configuration.name, case, model_set)
    return sorted(review_classes(session, [refs[0].result.id]).get(refs[0].result.id, {})) if refs else []


def _reviews(session: Session, study_id: int, user_id: int | None) -> bool:
    return user_id is not None and session.get(StudyReviewer, (study_id, user_id)) is not None


class StudyOperations(ServiceBase):
    """Define, list, show, open and close review studies (see the module's description)."""

    def define_study(self, principal: Principal, definition: StudyDefinition, ip: str | None = None) -> StudyInfo:
        """Store the study and its allocation (admin or the command line); one ``study.define`` audit row."""

        def body(session: Session, actor: Actor) -> StudyInfo:
            workflow.require(actor.role, Action.DEFINE_STUDY, actor.username)
            design, endpoint = _checked(definition)
            if session.scalar(select(Study.id).where(Study.name == definition.name)) is not None:
                raise InputError(f"a study named {definition.name!r} exists already")
            configuration = resolve_configuration(session, definition.configuration, definition.model_set)
            cases = select_cases(session, configuration.id, definition.cases)
            reviewers = select_reviewers(session, definition.reviewers)
            try:
                assignments = allocate(list(cases), list(reviewers), design, definition.seed)
            except ValueError as error:
                raise InputError(str(error)) from None
            study = Study(name=definition.name, configuration_id=configuration.id,
                          budget_kind=definition.budget.kind, budget_value=definition.budget.value,
                          case_source=definition.cases.record(), design=design.value,
                          washout_days=definition.washout_days, endpoint=endpoint.value, seed=definition.seed,
                          allocation_method=METHOD, allocation_digest=digest(assignments),
                          created_by_id=actor.user_id, created_by=actor.username, created_at=self._clock())
            session.add(study)
            session.flush()
            session.add_all(StudyCase(study_id=study.id, image_id=image_id) for image_id in cases.values())
            session.add_all(StudyReviewer(study_id=study.id, user_id=user_id) for user_id in reviewers.values())
            session.add_all(StudyAssignment(study_id=study.id, image_id=cases[a.case], user_id=reviewers[a.reviewer],
                                            arm=a.arm.value, period=a.period, position=a.order)
                            for a in assignments)
            session.flush()
            info = _info(session, study)
            self._audit(session, actor, "study.define", "ok", "study", study.name, None, info.record(), ip)
            return info

        return self._run(principal, "study.define", "study", definition.name[:200], ip, body)

    def studies(self, principal: Principal) -> list[StudyInfo]:
        """Every study (approver, admin, the command line) or the ones the reviewer reviews; not audited (a read)."""
        actor = self.check(principal, Action.VIEW_STUDIES)
        with self._sessions() as session:
            query = select(Study).order_by(Study.created_at, Study.id)
            if not workflow.allowed(actor.role, Action.VIEW_ALLOCATION):
                query = query.join(StudyReviewer, StudyReviewer.study_id == Study.id).where(
                    StudyReviewer.user_id == actor.user_id)
            return [_info(session, study) for study in session.scalars(query)]

    def show_study(self, principal: Principal, name: str, ip: str | None = None) -> StudyView:
        """The study with its whole allocation (approver, admin, the command line: audited as
        ``study.view_allocation``) or with the reviewer's own readings (a reviewer of the study; not audited)."""

        def body(session: Session, actor: Actor) -> StudyView:
            workflow.require(actor.role, Action.VIEW_STUDIES, actor.username)
            study = _study(session, name)
            every = workflow.allowed(actor.role, Action.VIEW_ALLOCATION)
            if not every and not _reviews(session, study.id, actor.user_id):
                raise PermissionDenied(f"{actor.username} is not a reviewer of study {study.name!r}")
            view = StudyView(_info(session, study), _readings(session, study, actor.user_id, every), every)
            if every:
                self._audit(session, actor, "study.view_allocation", "ok", "study", study.name, None,
                            {"readings": len(view.readings), "allocation_sha256": study.allocation_digest}, ip)
            return view

        return self._run(principal, "study.view_allocation", "study", name[:200], ip, body)

    def study_measurements(self, principal: Principal, name: str, artifacts: ArtifactStore,
                           review: ReviewSettings | None = None, ip: str | None = None) -> pd.DataFrame:
        """What study ``name`` measured, one row per reading with its arm
        (:func:`~pipeline.review.study_measure.reading_rows`): the results, for approvers, admins and the command
        line, each look audited as ``study.view_results``; refused to anyone else (audited as ``denied``). The
        maps are read in a read transaction, the audit row written after it (SQLite's write lock is not held while
        the edit masks are computed)."""
        try:
            with self._sessions() as session:
                actor = self._actor(session, principal)
                workflow.require(actor.role, Action.VIEW_ALLOCATION, actor.username)
                study = _study(session, name)
                rows = reading_rows(session, artifacts, study.id, review)
                digest_of = study.allocation_digest
        except UserError as error:
            self._deny(principal, "study.view_results", Refused(error, "study", name[:200]), ip)
            error.audited = True  # type: ignore[attr-defined]
            raise
        self._run(principal, "study.view_results", "study", name[:200], ip, lambda session, actor: self._audit(
            session, actor, "study.view_results", "ok", "study", name, None,
            {"readings": len(rows), "allocation_sha256": digest_of}, ip))
        return rows

    def open_study_case(self, principal: Principal, name: str, case: str, ip: str | None = None) -> Reading:
        """Reveal the actor's arm of ``case`` in study ``name`` and note the first opening; only to that case's
        reviewer in the study, and in a crossover's period 2 only after the washout. One ``study.open_case`` row."""

        def body(session: Session, actor: Actor) -> Reading:
            workflow.require(actor.role, Action.OPEN_STUDY_CASE, actor.username)
            study = _study(session, name)
            row = session.scalar(select(StudyAssignment).join(Image, Image.id == StudyAssignment.image_id).where(
                StudyAssignment.study_id == study.id, StudyAssignment.user_id == actor.user_id, Image.name == case))
            if row is None:
                raise PermissionDenied(f"{actor.username} has no reading of case {case[:200]!r} in study {name!r}")
            if study.closed_at is not None:
                raise WorkflowError(f"study {name!r} is closed: its cases can no longer be opened")
            now = self._clock()
            if row.period == 2:
                self._check_washout(session, study, actor.user_id, now)
            first = row.opened_at is None
            if first:
                row.opened_at = now
                session.flush()
                open_reading_clocks(session, actor, row.image_id, study.configuration_id,
                                    _case_items(session, study, case), now)
            session.flush()
            reading = Reading(case, actor.username, row.period, row.position, Arm(row.arm), aware(row.opened_at))
            self._audit(session, actor, "study.open_case", "ok", "study_assignment", f"{name}/{case}"[:200], None,
                        {"arm": row.arm, "period": row.period, "first_opening": first}, ip)
            return reading

        return self._run(principal, "study.open_case", "study_assignment", f"{name}/{case}"[:200], ip, body)

    def study_readings(self, principal: Principal, case: str | None = None) -> tuple[StudyReading, ...]:
        """The principal's own readings in open studies (of ``case`` when given), in the allocation's order, each arm
        None until the principal opened that case; none for the command line. Not audited: a read that the
        dashboard's server makes on every request it blinds."""
        if not isinstance(principal, int):
            return ()
        with self._sessions() as session:
            actor = self._actor(session, principal)
            query = (select(StudyAssignment, Study, Image.name, Configuration.name, ModelSet.identity)
                     .join(Study, Study.id == StudyAssignment.study_id)
                     .join(Image, Image.id == StudyAssignment.image_id)
                     .join(Configuration, Configuration.id == Study.configuration_id)
                     .join(ModelSet, ModelSet.id == Configuration.model_set_id)
                     .where(StudyAssignment.user_id == actor.user_id, Study.closed_at.is_(None))
                     .order_by(Study.name, StudyAssignment.period, StudyAssignment.position))
            if case is not None:
                query = query.where(Image.name == case)
            return tuple(StudyReading(study.name, name, study.configuration_id, configuration, model_set,
                                      study.budget(), a.period, a.position,
                                      Arm(a.arm) if a.opened_at is not None else None, aware(a.opened_at))
                         for a, study, name, configuration, model_set in session.execute(query))

    def open_case_readings(self, principal: Principal, case: str, ip: str | None = None) -> Arm | None:
        """Open every reading of ``case`` the principal has in an open study (:meth:`open_study_case`: each opening
        audited, the first one stored; WorkflowError before a crossover's washout) and return the arm that applies
        to it (:func:`~pipeline.review.study_blinding.applicable_arm`); None, and nothing written, without one."""
        readings = self.study_readings(principal, case)
        if not readings:
            return None
        for reading in readings:
            self.open_study_case(principal, reading.study, case, ip)
        return applicable_arm(self.study_readings(principal, case), case)

    @staticmethod
    def _check_washout(session: Session, study: Study, user_id: int | None, now: datetime) -> None:
        first_period = session.execute(
            select(StudyAssignment.image_id, StudyAssignment.opened_at, Image.name)
            .join(Image, Image.id == StudyAssignment.image_id)
            .where(StudyAssignment.study_id == study.id, StudyAssignment.user_id == user_id,
                   StudyAssignment.period == 1)).all()
        left = sum(opened is None for _, opened, _ in first_period)
        if left:
            raise WorkflowError(f"period 2 opens after period 1: {left} case(s) of period 1 are still unopened")
        decided = reading_decisions(session, study, {name: image for image, _, name in first_period},
                                    [] if user_id is None else [user_id])
        last = [decided.get((image, user_id)) for image, _, _ in first_period]
        undecided = sum(reading is None or reading.decision is None for reading in last)
        if undecided:
            raise WorkflowError(f"period 2 opens after period 1: {undecided} case(s) of period 1 are still "
                                "undecided")
        opens = max(reading.at for reading in last if reading is not None) + timedelta(days=study.washout_days or 0)
        if now < opens:
            raise WorkflowError(f"period 2 opens at {opens:%Y-%m-%d %H:%M} UTC, after the washout of "
                                f"{study.washout_days} days since your last decision of period 1")

    def close_study(self, principal: Principal, name: str, ip: str | None = None) -> StudyInfo:
        """Close an open study (admin or the command line): no case can be opened any more. One ``study.close``."""

        def body(session: Session, actor: Actor) -> StudyInfo:
            workflow.require(actor.role, Action.CLOSE_STUDY, actor.username)
            study = _study(session, name)
            if study.closed_at is not None:
                raise WorkflowError(f"study {name!r} was closed already, at {utc(study.closed_at):%Y-%m-%d %H:%M} UTC")
            study.closed_at, study.closed_by = self._clock(), actor.username
            session.flush()
            info = _info(session, study)
            self._audit(session, actor, "study.close", "ok", "study", name, {"closed_at": None},
                        {"closed_at": info.closed_at.isoformat() if info.closed_at else None}, ip)
            return info

        return self._run(principal, "study.close", "study", name[:200], ip, body)
