"""The audit trail (approver and admin): every login, session, review action, export, refused request, account and
configuration change (a deployed temperature), newest first, filtered by who, what, outcome and date, and
downloadable as CSV with the same filters (an audited export itself).

The log is append-only and hash-chained: the database refuses UPDATE and DELETE of its rows (migration 0002) and
INSERTs that do not extend the chain (0005). The page verifies the chain when it opens (and on request) and shows the
nightly batch's last verification. It only reads the log, through
:meth:`~pipeline.review.service.ReviewService.audit_entries`, which checks the role again on every call.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html
from dash.development.base_component import Component
from sqlalchemy import select

from pipeline.review.service import AuditRecord
from pipeline.review.workflow import Action, PermissionDenied, allowed
from pipeline.store.schema import Run
from qa_dashboard import auth, inputs
from qa_dashboard.components import grid, section
from qa_dashboard.exports import BadRequest, audit_filters
from qa_dashboard.store import get_store

dash.register_page(__name__, path="/audit", title="Audit trail", name="Audit")

SHOWN = 2000
ACTIONS = ("login", "logout", "session.", "review.", "export.", "user.", "config.", "request.")
OUTCOMES = ("ok", "denied", "failure", "locked")
OUTCOME_RULES = {"text-danger fw-semibold": "params.value === 'denied' || params.value === 'failure'",
                 "text-warning fw-semibold": "params.value === 'locked'", "text-success": "params.value === 'ok'"}
COLUMNS = [
    {"field": "id", "width": 90, "type": "numericColumn"}, {"field": "at", "headerName": "When (UTC)", "width": 190},
    {"field": "actor"}, {"field": "action"}, {"field": "outcome", "width": 110, "cellClassRules": OUTCOME_RULES},
    {"field": "object", "headerName": "Object"},
    {"field": "before", "flex": 1, "tooltipField": "before"}, {"field": "after", "flex": 1, "tooltipField": "after"},
    {"field": "ip", "width": 120},
]


def _json(value: dict[str, Any] | None) -> str:
    return json.dumps(value, sort_keys=True, default=str) if value is not None else ""


def rows(records: list[AuditRecord]) -> list[dict[str, Any]]:
    """Grid rows of audit records (before/after as JSON text)."""
    return [{"id": r.id, "at": f"{r.at:%Y-%m-%d %H:%M:%S}", "actor": r.actor, "action": r.action,
             "outcome": r.outcome, "object": f"{r.object_type} {r.object_id or ''}".strip(),
             "before": _json(r.before), "after": _json(r.after), "ip": r.ip or ""} for r in records]


def layout(**_query: str) -> Component:
    user = auth.current_user()
    if user is None or not allowed(user["role"], Action.VIEW_AUDIT):
        return dbc.Alert("The audit trail is for the approver and admin roles.", color="warning", id="forbidden")
    return html.Div([
        html.H3("Audit trail"),
        dbc.Row([
            dbc.Col([dbc.Label("Who (user name)"), dbc.Input(id="audit-actor", debounce=True)], lg=2),
            dbc.Col([dbc.Label("What"), dcc.Dropdown([{"label": a.rstrip(".") + (" …" if a.endswith(".") else ""),
                                                       "value": a} for a in ACTIONS], id="audit-action")], lg=2),
            dbc.Col([dbc.Label("Outcome"), dcc.Dropdown(list(OUTCOMES), id="audit-outcome")], lg=2),
            dbc.Col([dbc.Label("From (date, UTC)"), dbc.Input(id="audit-since", type="date")], lg=2),
            dbc.Col([dbc.Label("Before (date, UTC)"), dbc.Input(id="audit-until", type="date")], lg=2),
            dbc.Col([dbc.Label("\u00a0", className="d-block"), dbc.Button(
                "Download CSV", id="audit-download", href="/export/audit.csv", external_link=True,
                color="outline-primary")], lg=2),
        ], className="mb-3 g-2"),
        dbc.Row([dbc.Col(html.Div(id="audit-chain"), lg=10), dbc.Col(dbc.Button(
            "Verify the chain", id="audit-verify", color="outline-secondary", size="sm"), lg=2)], className="g-2"),
        html.Div(id="audit-summary", className="text-muted small mb-1"),
        section("Entries", grid("audit-grid", COLUMNS, [], 560)),
    ])


@callback(Output("audit-grid", "rowData"), Output("audit-summary", "children"), Output("audit-download", "href"),
          Input("audit-actor", "value"), Input("audit-action", "value"), Input("audit-outcome", "value"),
          Input("audit-since", "value"), Input("audit-until", "value"))
def _entries(actor: Any, action: Any, outcome: Any, since: Any, until: Any) -> tuple[Any, Any, Any]:
    actor = inputs.optional(inputs.text, actor, "audit-actor.value", 100)
    action = inputs.optional(inputs.choice, action, "audit-action.value", ACTIONS)
    outcome = inputs.optional(inputs.choice, outcome, "audit-outcome.value", OUTCOMES)
    since, until = inputs.day(since, "audit-since.value"), inputs.day(until, "audit-until.value")
    user = auth.current_user()
    query = {k: v for k, v in (("actor", actor), ("action", action), ("outcome", outcome), ("since", since),
                               ("until", until)) if v}
    href = "/export/audit.csv" + (f"?{urlencode(query)}" if query else "")
    if user is None:
        return [], "Sign in again.", href
    try:
        records = auth.review_service(get_store().engine).audit_entries(
            int(user["user_id"]), limit=SHOWN, **audit_filters(query))
    except (PermissionDenied, BadRequest) as error:
        return [], str(error), href
    more = " (the newest shown: narrow the filters or download the CSV)" if len(records) == SHOWN else ""
    return rows(records), f"{len(records)} entr{'y' if len(records) == 1 else 'ies'}{more}", href


def _nightly() -> str:
    """The last batch run's verification, in a few words."""
    with get_store().session() as session:
        last = session.execute(select(Run.id, Run.audit_check).where(Run.audit_check.is_not(None))
                               .order_by(Run.id.desc()).limit(1)).first()
    if last is None:
        return "no batch run has verified it yet"
    check = last[1] if isinstance(last[1], dict) else {}
    verdict = "intact" if check.get("ok") else f"TAMPERED at row #{check.get('bad_id')}"
    return f"run {last[0]} found it {verdict} ({check.get('rows')} rows, {check.get('checked_at', '')[:16]} UTC)"


@callback(Output("audit-chain", "children"), Input("audit-verify", "n_clicks"))
def _chain(clicks: Any) -> Any:
    inputs.clicks(clicks, "audit-verify.n_clicks")
    user = auth.current_user()
    if user is None:
        return ""
    try:
        report = auth.review_service(get_store().engine).verify_audit_log(int(user["user_id"]))
    except PermissionDenied as error:
        return str(error)
    return dbc.Alert([html.Strong(report.line()), html.Span(f" · last nightly check: {_nightly()}")],
                     color="success" if report.ok else "danger", id="audit-chain-status", className="py-2 small")
