"""The trend page's levels form through the real HTTP endpoint, on SQLite and PostgreSQL: only an admin sets and
clears levels, every other role is refused by the server (whatever the browser sends) with one ``denied`` audit row
and nothing stored; malformed bounds are a 400."""

from __future__ import annotations

import uuid

import dash
import pytest
from sqlalchemy import select

from benchmarks.http_client import ensure_user, login
from pipeline.review.workflow import Action, Role, allowed
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry
from pipeline.store.trend_check import stored_levels
from tests.dashboard.conftest import SeededStore
from tests.dashboard.http import call
from tests.dashboard.test_permissions import page

FORM = {"trend-configuration.value": "DE", "trend-quantity.value": "mean_entropy_roi",
        "levels-this-configuration.value": True, "levels-tolerance_high.value": 0.5, "levels-action_high.value": 0.6}


def _state(url: str, name: str) -> tuple[dict[tuple[str, str, str], object], list[tuple[str, str]]]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        levels = stored_levels(session)
        rows = [(r.action, r.outcome) for r in session.scalars(
            select(AuditEntry).where(AuditEntry.actor == name, AuditEntry.object_type == "trend_level")
            .order_by(AuditEntry.id))]
    engine.dispose()
    return levels, rows


@pytest.mark.parametrize("role", list(Role))
def test_only_an_admin_sets_and_clears_levels_over_http(role: Role, store: SeededStore, dash_app: dash.Dash) -> None:
    name = f"{role.value}-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, role)
    client = dash_app.server.test_client()
    assert login(client, name).status_code == 302
    content = page(client, "/trends")
    assert "trend-graph" in content and "levels-form" in content
    may = allowed(role, Action.SET_LEVELS)
    saved = call(client, dash_app, "levels-result.children", "levels-save.n_clicks",
                 {**FORM, "levels-save.n_clicks": 1})
    assert saved.status_code == 200, saved.get_data(as_text=True)
    text = str(saved.get_json()["response"]["levels-result"]["children"])
    levels, rows = _state(store.url, name)
    if may:
        assert "Set the levels of DE Mean entropy (ROI)." in text
        assert set(levels) == {("mean_entropy_roi", "DE", "")} and rows == [("config.levels", "ok")]
        cleared = call(client, dash_app, "levels-result.children", "levels-clear.n_clicks",
                       {**FORM, "levels-clear.n_clicks": 1})
        assert "Cleared the levels" in str(cleared.get_json()["response"]["levels-result"]["children"])
        assert _state(store.url, name) == ({}, [("config.levels", "ok"), ("config.levels_clear", "ok")])
    else:
        assert "Refused" in text and "needs the role admin" in text
        assert levels == {} and rows == [("config.levels", "denied")]


def test_malformed_bounds_are_a_400(store: SeededStore, dash_app: dash.Dash) -> None:
    ensure_user(store.url, "levels-admin", Role.ADMIN)
    client = dash_app.server.test_client()
    login(client, "levels-admin")
    for field, value in (("levels-tolerance_high.value", "0.5"), ("levels-action_high.value", 1e300),
                         ("trend-quantity.value", "dice")):
        response = call(client, dash_app, "levels-result.children", "levels-save.n_clicks",
                        {**FORM, "levels-save.n_clicks": 1, field: value})
        assert response.status_code == 400, (field, response.get_data(as_text=True))
    assert _state(store.url, "levels-admin")[0] == {}
