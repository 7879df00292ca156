"""The review study's results page (``/study/<name>``) over HTTP, on SQLite and PostgreSQL: an admin and an approver
see the per-arm table and the differences with their CIs, the primary endpoint first, and their look is audited; a
reviewer of the study and a viewer get the forbidden note and nothing of the study; an unknown study is not found.
The measurement (``pipeline.review.study_measure.reading_rows``, tested on its own) is stood in for by a function that
turns the study's stored allocation into readings with known times."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import dash
import pandas as pd
import pytest
from sqlalchemy import func, select

from benchmarks.http_client import ADMIN, ensure_user
from pipeline.review.service import CommandLine
from pipeline.review.study_allocation import Arm
from pipeline.review.study_analysis import COLUMNS
from pipeline.review.workflow import Role
from pipeline.store.review_schema import AuditEntry
from pipeline.store.study_schema import Study as StudyRow
from tests.dashboard.conftest import SeededStore
from tests.dashboard.test_permissions import page
from tests.dashboard.test_study_blinding import Study, define_study, signed_in_client

MINUTES = {Arm.STANDARD: 12.0, Arm.GUIDED: 8.0}


@pytest.fixture
def study(store: SeededStore, monkeypatch: pytest.MonkeyPatch) -> Any:
    defined = define_study(store.url, store.seeded.map_cases)
    readings = defined.service.show_study(CommandLine("t"), defined.name).readings

    def reading_rows(session: Any, _artifacts: Any, study_id: int, _settings: Any = None) -> pd.DataFrame:
        assert session.get(StudyRow, study_id).name == defined.name
        rows = [{"study": defined.name, "case": r.case, "reviewer": r.reviewer, "arm": r.arm.value,
                 "period": r.period, "opened": True, "active_seconds": 60 * MINUTES[r.arm], "decision": "edited",
                 "final_attached": True, "added_voxels": 5, "removed_voxels": 1, "edited_ml": 2.0, "any_edit": True,
                 "edits_in_regions_fraction": 0.5, "regions_opened": 2} for r in readings if r.arm is not None]
        return pd.DataFrame(rows, columns=list(COLUMNS))

    monkeypatch.setattr("pipeline.review.study.reading_rows", reading_rows)
    yield defined
    if not any(s.name == defined.name and s.closed_at for s in defined.service.studies(CommandLine("t"))):
        defined.service.close_study(CommandLine("t"), defined.name)


def _looks(study: Study, actor: str) -> int:
    with study.service._sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "study.view_allocation", AuditEntry.actor == actor,
            AuditEntry.object_id == study.name)) or 0


def test_admins_and_approvers_see_the_arms_and_differences(store: SeededStore, study: Study,
                                                           dash_app: dash.Dash) -> None:
    approver = f"appr-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, approver, Role.APPROVER)
    ensure_user(store.url)
    for user in (ADMIN, approver):
        before = _looks(study, user)
        shown = page(signed_in_client(dash_app, user), f"/study/{quote(study.name)}")
        assert '"study-arms"' in shown and '"study-differences"' in shown and '"forbidden"' not in shown
        assert "edited-ml-per-minute (primary)" in shown and "Primary endpoint edited-ml-per-minute" in shown
        assert "A (standard review)" in shown and "12.0" in shown and "8.0" in shown  # minutes per case
        assert "-4.000" in shown  # B − A of the minutes: one case in each arm, no spread
        assert study.service.show_study(CommandLine("t"), study.name).study.allocation_digest in shown
        assert _looks(study, user) == before + 1


def test_a_closed_study_still_shows_its_results(store: SeededStore, study: Study, dash_app: dash.Dash) -> None:
    """Closing a study (as the demo's simulated one is) ends its readings, not its results."""
    study.service.close_study(CommandLine("t"), study.name)
    ensure_user(store.url)
    shown = page(signed_in_client(dash_app, ADMIN), f"/study/{quote(study.name)}")
    assert '"study-arms"' in shown and '"forbidden"' not in shown and "-4.000" in shown


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER])
def test_reviewers_and_viewers_get_nothing_of_the_results(role: Role, store: SeededStore, study: Study,
                                                          dash_app: dash.Dash) -> None:
    username = study.readers[Arm.GUIDED].username if role is Role.REVIEWER else f"view-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, username, role)
    shown = page(signed_in_client(dash_app, username), f"/study/{quote(study.name)}")
    assert '"forbidden"' in shown and '"study-arms"' not in shown and "edited-ml-per-minute" not in shown
    assert _looks(study, username) == 0


def test_an_unknown_study_is_not_found(store: SeededStore, dash_app: dash.Dash) -> None:
    ensure_user(store.url)
    shown = page(signed_in_client(dash_app, ADMIN), "/study/no%20such%20study")
    assert '"not-found"' in shown and "no such study" in shown
