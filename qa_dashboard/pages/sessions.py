"""Sessions: the signed-in user's open dashboard sessions (where and when they started, last used, when they end),
each of which the user may end; an administrator sees and ends everyone's, and clears blocked logins (an account
or an address the login throttle holds back). Every end and unlock is audited, a refused one too."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, html
from dash.development.base_component import Component

from pipeline.errors import StoreNotReadyError, UserError
from pipeline.review.workflow import Action, allowed
from qa_dashboard import auth, inputs
from qa_dashboard.components import grid, section, store_not_ready
from qa_dashboard.store import get_store

dash.register_page(__name__, path="/sessions", title="Sessions", name="Sessions")

SESSION_COLUMNS = [
    {"field": "id", "headerName": "#", "width": 80, "type": "numericColumn"}, {"field": "user"},
    {"field": "this", "headerName": "", "width": 110}, {"field": "started", "headerName": "Started (UTC)"},
    {"field": "last_seen", "headerName": "Last used (UTC)"}, {"field": "ends", "headerName": "Ends at the latest"},
    {"field": "ip", "headerName": "Address", "width": 130},
    {"field": "user_agent", "headerName": "Browser", "flex": 1, "tooltipField": "user_agent"},
]
BLOCKED_COLUMNS = [
    {"field": "scope", "width": 110}, {"field": "account"}, {"field": "client", "headerName": "Address"},
    {"field": "failures", "type": "numericColumn", "width": 110}, {"field": "until", "headerName": "Blocked until"},
]
SELECT = {"mode": "multiRow", "checkboxes": True, "headerCheckbox": True, "enableClickSelection": False}


def _is_admin(user: dict[str, Any] | None) -> bool:
    return user is not None and allowed(user["role"], Action.MANAGE_USERS)


def _session_rows(user: dict[str, Any]) -> list[dict[str, Any]]:
    found = auth.review_service(get_store().engine).list_sessions(int(user["user_id"]), everyone=_is_admin(user))
    return [{"id": s.id, "user": s.username, "this": "this browser" if s.id == user.get("session_id") else "",
             "started": f"{s.created_at:%Y-%m-%d %H:%M}", "last_seen": f"{s.last_seen_at:%Y-%m-%d %H:%M}",
             "ends": f"{s.expires_at:%Y-%m-%d %H:%M}", "ip": s.ip or "", "user_agent": s.user_agent or ""}
            for s in found]


def _blocked_rows(user: dict[str, Any]) -> list[dict[str, Any]]:
    blocked = auth.review_service(get_store().engine).blocked_logins(int(user["user_id"]))
    return [{"scope": scope, "client": client, "account": account, "failures": failures,
             "until": f"{until:%Y-%m-%d %H:%M:%S}"} for scope, client, account, failures, until in blocked]


def layout(**_query: str) -> Component:
    user = auth.current_user()
    if user is None:
        return html.Div(id="sessions")
    try:
        return _page(user)
    except StoreNotReadyError as error:
        return store_not_ready(error)


def _page(user: dict[str, Any]) -> Component:
    admin = _is_admin(user)
    parts = [
        html.H3("Sessions"),
        section("Everyone's open sessions" if admin else "Your open sessions",
                grid("sessions-grid", SESSION_COLUMNS, _session_rows(user), 300, rowSelection=SELECT),
                dbc.Button("End the selected sessions", id="sessions-end", color="outline-danger", size="sm",
                           className="mt-2"),
                help_text="logging out ends all of your sessions; an ended one needs a new login"),
    ]
    if admin:
        parts.append(section("Blocked logins", grid("blocked-grid", BLOCKED_COLUMNS, _blocked_rows(user), 200,
                                                    rowSelection=SELECT),
                             dbc.Button("Unlock the selected", id="blocked-unlock", color="outline-primary",
                                        size="sm", className="mt-2"),
                             help_text="failed-login counters that hold an account or an address back now"))
    parts.append(html.Div(id="sessions-result", className="mt-2"))
    return html.Div(parts, id="sessions")


SESSION_ROW = {"id": inputs.integer}
BLOCKED_ROW = {"scope": lambda v, n: inputs.choice(v, n, ("pair", "client", "account")),
               "client": lambda v, n: inputs.text(v, n, 45), "account": lambda v, n: inputs.text(v, n, 64)}


@callback(Output("sessions-result", "children"), Output("sessions-grid", "rowData"),
          Input("sessions-end", "n_clicks"), State("sessions-grid", "selectedRows"), prevent_initial_call=True)
def _end(clicks: Any, selected: Any) -> tuple[Any, Any]:
    inputs.clicks(clicks, "sessions-end.n_clicks")
    rows = inputs.listed(selected, "sessions-grid.selectedRows", lambda r, n: inputs.record(r, n, SESSION_ROW),
                         inputs.MAX_ROWS)
    user = auth.current_user()
    if user is None or not rows:
        return dbc.Alert("Select one or more sessions first.", color="info"), dash.no_update
    service = auth.review_service(get_store().engine)
    try:
        for row in rows:
            service.end_session(int(user["user_id"]), row["id"], ip=auth.client_ip())
    except UserError as error:
        return dbc.Alert(f"Refused: {error}", color="danger", id="sessions-alert"), _session_rows(user)
    return dbc.Alert(f"Ended {len(rows)} session(s).", color="success", id="sessions-alert"), _session_rows(user)


@callback(Output("sessions-result", "children", allow_duplicate=True), Output("blocked-grid", "rowData"),
          Input("blocked-unlock", "n_clicks"), State("blocked-grid", "selectedRows"), prevent_initial_call=True)
def _unlock(clicks: Any, selected: Any) -> tuple[Any, Any]:
    inputs.clicks(clicks, "blocked-unlock.n_clicks")
    rows = inputs.listed(selected, "blocked-grid.selectedRows", lambda r, n: inputs.record(r, n, BLOCKED_ROW),
                         inputs.MAX_ROWS)
    user = auth.current_user()
    if user is None or not rows:
        return dbc.Alert("Select one or more blocked logins first.", color="info"), dash.no_update
    service = auth.review_service(get_store().engine)
    try:
        for row in rows:
            service.unlock_logins(int(user["user_id"]), account=row["account"] or None,
                                  client=None if row["account"] else row["client"], ip=auth.client_ip())
    except UserError as error:
        return dbc.Alert(f"Refused: {error}", color="danger", id="sessions-alert"), _blocked_rows(user)
    return dbc.Alert(f"Unlocked {len(rows)}.", color="success", id="sessions-alert"), _blocked_rows(user)
