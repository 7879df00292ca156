"""Review studies through the service on a seeded store (SQLite and PostgreSQL): definition by role, the stored and
concealed allocation, opening a case, the crossover's washout, closing, immutability in the database, audit rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError

from pipeline.cli import main
from pipeline.errors import InputError, NotFoundError
from pipeline.metrics.review_budget import Budget
from pipeline.review.base import ManualClock
from pipeline.review.service import CommandLine, ItemKey, ReviewService
from pipeline.review.study import StudyDefinition
from pipeline.review.study_allocation import allocate, digest
from pipeline.review.study_cases import CaseSelection
from pipeline.review.workflow import PermissionDenied, WorkflowError
from pipeline.settings import Settings
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry
from pipeline.store.schema import Image
from pipeline.store.study_schema import Study, StudyAssignment, StudyCase
from tests.review.conftest import FAST_HASH, PASSWORD, Seeded

CASES = ("ibsi", "synthetic-1", "synthetic-2")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Store:
    engine: Engine
    service: ReviewService
    clock: ManualClock
    users: dict[str, int]


@pytest.fixture(scope="module")
def store(seeded: Seeded) -> Iterator[Store]:
    """The seeded store (one per backend) with one user per role and three more reviewers (dee deactivated)."""
    engine = make_engine(seeded.url)
    clock = ManualClock(T0)
    service = ReviewService(engine, password_method=FAST_HASH, clock=clock)
    roles = {"vic": "viewer", "ann": "reviewer", "ben": "reviewer", "cy": "reviewer", "dee": "reviewer",
             "apo": "approver", "adm": "admin"}
    users = {name: service.create_user(CommandLine("t"), name, PASSWORD, role).id for name, role in roles.items()}
    service.update_user(CommandLine("t"), "dee", active=False)
    yield Store(engine, service, clock, users)
    engine.dispose()


def _definition(name: str, **changes: object) -> StudyDefinition:
    base = StudyDefinition(name=name, configuration="DE", budget=Budget("fraction", 0.02),
                           cases=CaseSelection(names=CASES), reviewers=("ann", "ben"), design="per-case",
                           endpoint="edited-ml-per-minute", seed=11)
    return replace(base, **changes)  # type: ignore[arg-type]


def _audit(store: Store, action: str) -> list[AuditEntry]:
    with session_factory(store.engine)() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_an_admin_defines_a_study_with_its_allocation_stored_and_audited(store: Store) -> None:
    info = store.service.define_study(store.users["adm"], _definition("per-case one"))
    assert (info.name, info.configuration, info.budget, info.design.value, info.endpoint.value, info.seed) == (
        "per-case one", "DE", Budget("fraction", 0.02), "per-case", "edited-ml-per-minute", 11)
    assert info.cases == CASES and info.reviewers == ("ann", "ben") and info.created_by == "adm"
    assert info.closed_at is None and info.case_source == {"cases": list(CASES)}
    expected = allocate(CASES, ["ann", "ben"], "per-case", 11)
    assert info.allocation_digest == digest(expected)
    view = store.service.show_study(store.users["apo"], "per-case one")
    assert view.allocation
    assert sorted((r.case, r.reviewer, r.arm, r.period, r.order) for r in view.readings) == sorted(
        (a.case, a.reviewer, a.arm, a.period, a.order) for a in expected)
    row = _audit(store, "study.define")[-1]
    assert (row.actor, row.outcome, row.object_id) == ("adm", "ok", "per-case one")
    assert row.after is not None and row.after["allocation_sha256"] == digest(expected) and row.after["cases"] == 3
    assert _audit(store, "study.view_allocation")[-1].actor == "apo"
    assert store.service.verify_audit_log(CommandLine()).ok


@pytest.mark.parametrize("who", ["vic", "ann", "apo"])
def test_only_an_admin_or_the_command_line_defines_or_closes_a_study(store: Store, who: str) -> None:
    name = f"refused by {who}"
    with pytest.raises(PermissionDenied):
        store.service.define_study(store.users[who], _definition(name))
    denied = _audit(store, "study.define")[-1]
    assert (denied.actor, denied.outcome, denied.object_id) == (who, "denied", name)
    store.service.define_study(CommandLine("tester"), _definition(name))
    with pytest.raises(PermissionDenied):
        store.service.close_study(store.users[who], name)
    assert _audit(store, "study.close")[-1].outcome == "denied"


def test_the_allocation_is_concealed_until_its_reviewer_opens_the_case(store: Store) -> None:
    store.service.define_study(store.users["adm"], _definition("concealed", reviewers=("ann", "ben", "cy")))
    own = store.service.show_study(store.users["ann"], "concealed")
    assert not own.allocation and own.readings and {r.reviewer for r in own.readings} == {"ann"}
    assert all(r.arm is None and r.opened_at is None for r in own.readings)
    case = own.readings[0].case
    reading = store.service.open_study_case(store.users["ann"], "concealed", case)
    allocation = store.service.show_study(store.users["adm"], "concealed").readings
    truth = {(r.case, r.reviewer): r.arm for r in allocation}
    assert reading.arm == truth[(case, "ann")] and reading.opened_at == T0
    again = store.service.show_study(store.users["ann"], "concealed")
    assert [(r.case, r.arm) for r in again.readings if r.arm is not None] == [(case, reading.arm)]
    opened = _audit(store, "study.open_case")[-1]
    assert (opened.actor, opened.outcome, opened.after) == ("ann", "ok", {"arm": reading.arm.value, "period": 1,
                                                                           "first_opening": True})
    assert [reviewer for (c, reviewer) in truth if c == case] == ["ann"], "per case: one reading"
    for who in ("ben", "cy", "apo", "adm", "vic"):  # nobody else gets an arm of the case, and each try is audited
        with pytest.raises(PermissionDenied):
            store.service.open_study_case(store.users[who], "concealed", case)
        assert (_audit(store, "study.open_case")[-1].outcome, _audit(store, "study.open_case")[-1].actor) == (
            "denied", who)
    with pytest.raises(PermissionDenied):
        store.service.open_study_case(CommandLine(), "concealed", case)


def test_reviewers_see_only_their_studies_and_viewers_none(store: Store) -> None:
    store.service.define_study(store.users["adm"], _definition("ann only", reviewers=("ann",)))
    store.service.define_study(store.users["adm"], _definition("ben only", reviewers=("ben",)))
    names = {s.name for s in store.service.studies(store.users["ann"])}
    assert "ann only" in names and "ben only" not in names
    assert {"ann only", "ben only"} <= {s.name for s in store.service.studies(store.users["apo"])}
    with pytest.raises(PermissionDenied):
        store.service.show_study(store.users["ann"], "ben only")
    assert _audit(store, "study.view_allocation")[-1].outcome == "denied"
    with pytest.raises(PermissionDenied):
        store.service.studies(store.users["vic"])
    with pytest.raises(PermissionDenied):
        store.service.show_study(store.users["vic"], "ann only")


def _decide(store: Store, user: str, study: str, cases: list[str]) -> None:
    """``user`` decides one structure of each case under the study's configuration (a reading's decision)."""
    with session_factory(store.engine)() as session:
        configuration = session.scalar(select(Study.configuration_id).where(Study.name == study))
        images = dict(session.execute(select(Image.name, Image.id).where(Image.name.in_(cases))).tuples().all())
    for case in cases:
        key = ItemKey(images[case], int(configuration or 0), 1)
        store.service.start_review(store.users[user], key)
        store.service.record_decision(store.users[user], key, "accepted", None)


def test_a_crossover_opens_period_two_after_period_one_is_decided_and_the_washout(store: Store) -> None:
    """Period 2 opens once every period-1 case is opened and decided, the washout counted from the last decision
    (the time its audit row holds)."""
    store.clock.now = T0
    store.service.define_study(store.users["adm"], _definition("crossover", design="crossover", washout_days=2))
    own = store.service.show_study(store.users["ann"], "crossover").readings
    first = [r.case for r in own if r.period == 1]
    second = [r.case for r in own if r.period == 2]
    assert len(own) == 3 and first and second
    with pytest.raises(WorkflowError, match="still unopened"):
        store.service.open_study_case(store.users["ann"], "crossover", second[0])
    arms = {store.service.open_study_case(store.users["ann"], "crossover", case).arm for case in first}
    with pytest.raises(WorkflowError, match=f"{len(first)} case\\(s\\) of period 1 are still undecided"):
        store.service.open_study_case(store.users["ann"], "crossover", second[0])
    _decide(store, "ann", "crossover", first)
    decided = max(row.at for row in _audit(store, "review.decide")[-len(first):])
    decided = decided if decided.tzinfo else decided.replace(tzinfo=UTC)  # the audit chain seals its own time
    store.clock.now = decided + timedelta(days=1)
    with pytest.raises(WorkflowError, match="washout of 2 days since your last decision"):
        store.service.open_study_case(store.users["ann"], "crossover", second[0])
    store.clock.now = decided + timedelta(days=2)
    later = store.service.open_study_case(store.users["ann"], "crossover", second[0])
    assert len(arms) == 1 and later.arm != arms.pop() and later.period == 2
    store.clock.now = T0


def test_closing_is_the_only_change_and_a_closed_study_opens_no_case(store: Store) -> None:
    store.service.define_study(store.users["adm"], _definition("to close"))
    case = store.service.show_study(store.users["ben"], "to close").readings[0].case
    closed = store.service.close_study(store.users["adm"], "to close")
    assert closed.closed_at == T0 and closed.closed_by == "adm"
    with pytest.raises(WorkflowError, match="closed"):
        store.service.open_study_case(store.users["ben"], "to close", case)
    with pytest.raises(WorkflowError, match="closed already"):
        store.service.close_study(store.users["adm"], "to close")
    with pytest.raises(InputError, match="exists already"):
        store.service.define_study(store.users["adm"], _definition("to close", seed=12))
    assert [r.outcome for r in _audit(store, "study.close")][-2:] == ["ok", "denied"]


def test_the_database_refuses_any_other_change_to_a_defined_study(store: Store) -> None:
    store.service.define_study(store.users["adm"], _definition("frozen"))
    with session_factory(store.engine)() as session:
        study_id = session.scalar(select(Study.id).where(Study.name == "frozen"))
        assignment = session.scalars(select(StudyAssignment).where(StudyAssignment.study_id == study_id)).first()
        assert assignment is not None
    refused = [update(Study).where(Study.id == study_id).values(seed=12),
               update(Study).where(Study.id == study_id).values(name="thawed", closed_at=T0),
               delete(StudyCase).where(StudyCase.study_id == study_id),
               update(StudyAssignment).where(StudyAssignment.id == assignment.id).values(arm="A" if assignment.arm
                                                                                         == "B" else "B"),
               delete(StudyAssignment).where(StudyAssignment.id == assignment.id),
               delete(Study).where(Study.id == study_id)]
    for statement in refused:
        with pytest.raises(DBAPIError, match="a defined study is immutable"), store.engine.begin() as connection:
            connection.execute(statement)
    with store.engine.begin() as connection:  # its first opening, and closing once, are allowed
        connection.execute(update(StudyAssignment).where(StudyAssignment.id == assignment.id).values(opened_at=T0))
        connection.execute(update(Study).where(Study.id == study_id).values(closed_at=T0, closed_by="x"))
    for statement in (update(StudyAssignment).where(StudyAssignment.id == assignment.id).values(opened_at=None),
                      update(Study).where(Study.id == study_id).values(closed_at=None)):
        with pytest.raises(DBAPIError, match="immutable"), store.engine.begin() as connection:
            connection.execute(statement)
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="immutable"), store.engine.begin() as connection:
            connection.execute(text("TRUNCATE study_assignments, study_cases, study_reviewers, studies"))


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"reviewers": ("ann", "nobody")}, NotFoundError, "unknown user 'nobody'"),
    ({"reviewers": ("ann", "apo")}, InputError, "'apo' is approver, not reviewer"),
    ({"reviewers": ("dee",)}, InputError, "deactivated"),
    ({"reviewers": ()}, InputError, "at least one reviewer"),
    ({"reviewers": ("ann", "ann")}, InputError, "listed twice"),
    ({"cases": CaseSelection(names=("ibsi", "no-such-case"))}, NotFoundError, "unknown case 'no-such-case'"),
    ({"cases": CaseSelection(cohort="empty cohort")}, InputError, "at least one case"),
    ({"cases": CaseSelection(processed_from=date(2001, 1, 1), processed_to=date(2001, 1, 2))}, InputError,
     "at least one case"),
    ({"configuration": "NoSuchConfiguration"}, NotFoundError, "no stored result of configuration"),
    ({"design": "crossover"}, InputError, "washout"),
    ({"washout_days": 3}, InputError, "washout"),
    ({"design": "crossover", "washout_days": 1, "reviewers": ("ann",)}, InputError, "two reviewers"),
    ({"endpoint": "speed"}, InputError, "endpoints edited-ml-per-minute"),
    ({"name": ""}, InputError, "study name"),
    ({"seed": -1}, InputError, "seed"),
])
def test_mistakes_in_a_definition_are_refused_naming_them(store: Store, changes: dict[str, object],
                                                          error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        store.service.define_study(store.users["adm"], replace(_definition("mistaken"), **changes))
    with session_factory(store.engine)() as session:
        assert session.scalar(select(Study.id).where(Study.name == "mistaken")) is None
    assert _audit(store, "study.define")[-1].outcome == "denied"


def test_cases_by_cohort_or_by_processing_day(store: Store) -> None:
    by_cohort = store.service.define_study(store.users["adm"], _definition(
        "by cohort", cases=CaseSelection(cohort="review-test")))
    today = datetime.now(UTC).date()
    by_day = store.service.define_study(store.users["adm"], _definition(
        "by day", cases=CaseSelection(processed_from=today - timedelta(days=1), processed_to=today)))
    assert by_cohort.cases == by_day.cases == CASES
    assert by_day.case_source == {"processed_from": str(today - timedelta(days=1)), "processed_to": str(today)}
    with pytest.raises(InputError, match="one way"):
        CaseSelection(cohort="review-test", names=("ibsi",))
    with pytest.raises(InputError, match="after it ends"):
        CaseSelection(processed_from=today, processed_to=today - timedelta(days=1))


def test_the_command_line_defines_lists_shows_and_closes_studies(
    store: Store, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(database_url=seeded.url, artifacts_dir=seeded.artifacts, exports_dir=tmp_path / "exports")
    define = ["study", "define", "--name", "cli study", "--configuration", "DE", "--budget", "0.03",
              "--cases", "ibsi,synthetic-1, synthetic-2", "--reviewers", "ann,ben", "--design", "crossover",
              "--washout-days", "14", "--endpoint", "minutes-per-case", "--seed", "5"]
    assert main(define, settings) == 0
    assert "defined study cli study: 3 cases, 2 reviewers, crossover, endpoint minutes-per-case" in (
        capsys.readouterr().out)
    assert main(["study", "list"], settings) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert ["cli study", "DE", "3 % of ROI voxels", "crossover", "minutes-per-case", "3 cases", "2 reviewers",
            "open"] in listed
    assert main(["study", "show", "cli study"], settings) == 0
    shown = capsys.readouterr().out
    assert "design: crossover, washout 14 days" in shown and "seed 5" in shown
    rows = [line.split("\t") for line in shown.splitlines() if line.startswith(("ann\t", "ben\t"))]
    assert len(rows) == 6 and {row[4] for row in rows} == {"A (standard review)", "B (uncertainty-guided review)"}
    assert _audit(store, "study.view_allocation")[-1].actor.startswith("cli:")
    assert main(["study", "close", "cli study"], settings) == 0
    assert "closed study cli study (closed " in capsys.readouterr().out

    mistakes = {  # what: (arguments replacing the good ones, None: drop it; the one line expected)
        "unknown user": ({"--reviewers": "ann,zed"}, "unknown user 'zed'"),
        "unknown case": ({"--cases": "ibsi,nope"}, "unknown case 'nope'"),
        "not a reviewer": ({"--reviewers": "ann,apo"}, "'apo' is approver, not reviewer"),
        "empty case list": ({"--cases": ""}, "argument --cases: must be comma-separated names"),
        "no case in the cohort": ({"--cases": None, "--cohort": "nothing here"}, "at least one case"),
        "duplicate name": ({"--name": "cli study"}, "a study named 'cli study' exists already"),
        "two ways": ({"--cohort": "review-test"}, "not allowed with argument --cases"),
        "half a range": ({"--cases": None, "--processed-to": "2026-01-01"}, "one of the arguments --cohort"),
        "washout without crossover": ({"--design": "per-case"}, "only a crossover has one"),
    }
    good = dict(zip(define[2::2], define[3::2], strict=True))
    for what, (changes, message) in mistakes.items():
        argv = {**good, "--name": f"bad {what}", **changes}
        flat = ["study", "define", *[part for key, value in argv.items() if value is not None for part in (key, value)]]
        assert main(flat, settings) == 2, what
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (what, err)
    assert main(["study", "show", "no such study"], settings) == 2
    assert "there is no study named 'no such study'" in capsys.readouterr().err


def test_a_reviewers_open_readings_hide_the_arm_until_it_opens_the_case(store: Store) -> None:
    """The service's answers for the dashboard's blinding: a reviewer's own readings in open studies (arm None until
    opened), the opening of a case's readings (audited, the arm that applies), nothing once the study is closed."""
    eve = store.service.create_user(CommandLine("t"), "eve", PASSWORD, "reviewer").id
    store.service.define_study(store.users["adm"], _definition("blind readings", reviewers=("eve",)))
    readings = store.service.study_readings(eve)
    assert sorted(r.case for r in readings) == sorted(CASES) and all(r.arm is None for r in readings)
    assert {(r.study, r.configuration, r.budget) for r in readings} == {("blind readings", "DE",
                                                                         Budget("fraction", 0.02))}
    assert store.service.study_readings(store.users["apo"]) == () and store.service.study_readings(CommandLine()) == ()
    allocated = {r.case: r.arm for r in store.service.show_study(store.users["apo"], "blind readings").readings}
    before = len(_audit(store, "study.open_case"))
    assert store.service.open_case_readings(eve, CASES[0]) is allocated[CASES[0]]
    assert len(_audit(store, "study.open_case")) == before + 1 and _audit(store, "study.open_case")[-1].actor == "eve"
    assert [r.arm for r in store.service.study_readings(eve, CASES[0])] == [allocated[CASES[0]]]
    assert all(r.arm is None for r in store.service.study_readings(eve) if r.case != CASES[0])
    store.service.close_study(store.users["adm"], "blind readings")
    assert store.service.study_readings(eve) == ()
    assert store.service.open_case_readings(eve, CASES[0]) is None
    assert len(_audit(store, "study.open_case")) == before + 1
