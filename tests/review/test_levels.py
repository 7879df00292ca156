"""Trend levels set by an administrator, on SQLite and PostgreSQL: stored, replaced and cleared with one audit row
each (bounds before → after), refused to every other role and to bad bounds (audited ``denied``, nothing changed)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError
from pipeline.metrics.levels import Levels
from pipeline.review.service import CommandLine, ReviewService
from pipeline.review.workflow import PermissionDenied
from pipeline.store.review_schema import AuditEntry
from pipeline.store.trend_check import levels_for, stored_levels


def _audit(engine: Engine) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.object_type == "trend_level")
                                    .order_by(AuditEntry.id)))


def _rows(engine: Engine) -> dict[tuple[str, str, str], Levels]:
    with Session(engine) as session:
        return stored_levels(session)


def test_an_admin_sets_replaces_and_clears_levels_each_audited(
    service: ReviewService, users: dict[str, int], engine: Engine
) -> None:
    admin = users["admin"]
    service.set_levels(admin, "mean_entropy_roi", {"tolerance_high": 0.3, "action_high": 0.4}, ip="10.0.0.1")
    service.set_levels(admin, "mean_entropy_roi", Levels(0.05, 0.25, 0.0, 0.4), configuration="DE")
    service.set_levels(admin, "predicted_volume", {"tolerance_low": 100.0}, structure="spleen")
    assert _rows(engine) == {("mean_entropy_roi", "", ""): Levels(None, 0.3, None, 0.4),
                             ("mean_entropy_roi", "DE", ""): Levels(0.05, 0.25, 0.0, 0.4),
                             ("predicted_volume", "", "spleen"): Levels(100.0)}
    service.set_levels(admin, "mean_entropy_roi", {"tolerance_high": 0.35}, ip="10.0.0.1")  # replaces the row
    service.clear_levels(CommandLine("tester"), "predicted_volume", structure="spleen")
    assert _rows(engine) == {("mean_entropy_roi", "", ""): Levels(None, 0.35),
                             ("mean_entropy_roi", "DE", ""): Levels(0.05, 0.25, 0.0, 0.4)}
    rows = _audit(engine)
    assert [(r.action, r.outcome, r.actor, r.object_id) for r in rows] == [
        ("config.levels", "ok", "admin", "mean_entropy_roi//"),
        ("config.levels", "ok", "admin", "mean_entropy_roi/DE/"),
        ("config.levels", "ok", "admin", "predicted_volume//spleen"),
        ("config.levels", "ok", "admin", "mean_entropy_roi//"),
        ("config.levels_clear", "ok", "cli:tester", "predicted_volume//spleen"),
    ]
    bounds = {"tolerance_low": None, "tolerance_high": 0.3, "action_low": None, "action_high": 0.4}
    assert (rows[0].before, rows[0].after, rows[0].ip) == (None, bounds, "10.0.0.1")
    assert rows[3].before == bounds and rows[3].after == {**bounds, "tolerance_high": 0.35, "action_high": None}
    assert rows[4].before == {**bounds, "tolerance_high": None, "action_high": None, "tolerance_low": 100.0}
    assert rows[4].after is None


@pytest.mark.parametrize("role", ["viewer", "reviewer", "approver"])
def test_every_other_role_is_refused_and_audited(
    service: ReviewService, users: dict[str, int], engine: Engine, role: str
) -> None:
    service.set_levels(users["admin"], "ece", {"tolerance_high": 0.1})
    with pytest.raises(PermissionDenied, match="needs the role admin"):
        service.set_levels(users[role], "ece", {"tolerance_high": 0.5})
    with pytest.raises(PermissionDenied):
        service.clear_levels(users[role], "ece")
    assert _rows(engine) == {("ece", "", ""): Levels(None, 0.1)}
    denied = [(r.action, r.outcome, r.actor) for r in _audit(engine)[1:]]
    assert denied == [("config.levels", "denied", role), ("config.levels_clear", "denied", role)]


@pytest.mark.parametrize(("bounds", "message"), [
    ({"tolerance_low": 0.2, "action_low": 0.3}, "action band must lie outside"),
    ({"tolerance_high": 0.5, "action_high": 0.4}, "action band must lie outside"),
    ({"tolerance_low": 0.5, "tolerance_high": 0.4}, "each low bound below its high"),
    ({"tolerance_high": math.inf}, "finite"),
    ({"action_low": math.nan}, "finite"),
    ({"tolerance_high": "0.3"}, "finite"),
    ({}, "at least one"),
    ({"tolerance_top": 1.0}, "unexpected keyword"),
])
def test_bad_bounds_are_refused_at_the_boundary(
    service: ReviewService, users: dict[str, int], engine: Engine, bounds: dict[str, float], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        service.set_levels(users["admin"], "flagged_ml", bounds)
    assert _rows(engine) == {}
    assert [(r.action, r.outcome) for r in _audit(engine)] == [("config.levels", "denied")]


def test_unknown_quantities_structures_and_rows_are_refused(service: ReviewService, users: dict[str, int]) -> None:
    admin = users["admin"]
    with pytest.raises(InputError, match="unknown trend quantity"):
        service.set_levels(admin, "dice", {"tolerance_low": 0.5})
    with pytest.raises(InputError, match="one value per case"):
        service.set_levels(admin, "ece", {"tolerance_high": 0.1}, structure="spleen")
    with pytest.raises(NotFoundError, match="no levels are stored"):
        service.clear_levels(admin, "ece")


def test_the_most_specific_levels_apply() -> None:
    levels = {("q", "", ""): Levels(None, 1.0), ("q", "DE", ""): Levels(None, 2.0),
              ("q", "", "spleen"): Levels(None, 3.0), ("q", "DE", "spleen"): Levels(None, 4.0)}
    assert levels_for(levels, "q", "DE", "spleen") == Levels(None, 4.0)
    assert levels_for(levels, "q", "CE", "spleen") == Levels(None, 3.0)
    assert levels_for(levels, "q", "DE", "lymph_nodes") == Levels(None, 2.0)
    assert levels_for(levels, "q", "CE", "") == Levels(None, 1.0)
    assert levels_for(levels, "other", "DE", "") is None
