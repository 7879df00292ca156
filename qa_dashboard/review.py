"""The review panel shared by the worklist and the slice browser: the review items of a scope (a configuration and
budget, optionally one case), their states in colour, and the actions of the review workflow on the selected rows.

Every action goes through :class:`~pipeline.review.service.ReviewService` as the signed-in user, which checks the
role, the workflow and self-approval, and writes one audit row per item (or one ``denied`` row). Buttons a role may
not use are disabled, but the service decides: a forged callback is refused and audited the same way. One selected
row carries its version, so an item that changed since the page showed it is refused ("reload"); several selected
rows are one bulk action, all or nothing. What the browser sends (selected rows, comment, scope) is checked first
(:mod:`qa_dashboard.inputs`): a malformed value is a 400, audited once, and reaches no service.

Review time (:mod:`pipeline.review.timing`): starting an item opens its clock with the item's flagged volume as
this server's worklist has it (never the browser's), the decision closes it; ``assets/review_activity.js`` reports
the page's use every :data:`ACTIVITY_SECONDS` (only for roles that may review), and a region opened from the
worklist (``region`` data) gets its own clock, resolved here from the worklist of the scope.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
import dash_bootstrap_components as dbc
import flask
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, ctx, dcc, html
from dash.development.base_component import Component

from pipeline.errors import StoreNotReadyError
from pipeline.metrics.review_budget import DEFAULT_CAP, Budget
from pipeline.review.service import MAX_COMMENT, ItemKey
from pipeline.review.workflow import Action, WorkflowError, allowed
from pipeline.review.worklist import default_configuration, unreviewed_count
from qa_dashboard import auth, blinding, inputs
from qa_dashboard.components import grid
from qa_dashboard.config import settings
from qa_dashboard.queries.worklist import STATE_BADGE_RENDERER, item_rows, load_worklist
from qa_dashboard.store import get_store

log = logging.getLogger(__name__)
MAX_MINUTES = 24 * 60.0  # a time budget per patient, at most a day
ACTIVITY_SECONDS = 15  # how often the page reports that it was used (the server caps each gap)

#: button id → (label, workflow action, decision, Bootstrap colour)
BUTTONS: dict[str, tuple[str, Action, str | None, str]] = {
    "review-start": ("Start review", Action.START_REVIEW, None, "primary"),
    "review-accept": ("Accept", Action.DECIDE, "accepted", "success"),
    "review-edited": ("Edited", Action.DECIDE, "edited", "warning"),
    "review-rejected": ("Reject", Action.DECIDE, "rejected", "danger"),
    "review-reopen": ("Reopen", Action.REOPEN, None, "secondary"),
    "review-approve": ("Approve", Action.APPROVE, None, "dark"),
}
ITEM_COLUMNS = [
    {"field": "case_rank", "headerName": "#", "width": 70, "type": "numericColumn"},
    {"field": "case", "minWidth": 140}, {"field": "structure"},
    {"field": "note", "headerName": "Note", "minWidth": 200,
     "cellClassRules": {"text-danger fw-semibold": "params.value !== ''"}},
    {"field": "state", **STATE_BADGE_RENDERER},
    {"field": "decision", **STATE_BADGE_RENDERER}, {"field": "comment", "flex": 1, "tooltipField": "comment"},
    {"field": "regions", "type": "numericColumn", "width": 100},
    {"field": "flagged_ml", "headerName": "Flagged mL", "type": "numericColumn", "width": 120},
    {"field": "reviewer"}, {"field": "approver"},
]


def scope(configuration: str, budget: Budget, case: str | None = None, case_only: bool = False,
          model_set: str | None = None) -> dict[str, Any]:
    """What the panel lists: ``configuration``'s items (of ``model_set``, default the newest with a result of it) at
    ``budget`` (of ``case`` only, when given; ``case_only``: without computing the whole worklist, as the slice
    browser does)."""
    return {"configuration": configuration, "model_set": model_set, "kind": budget.kind, "value": budget.value,
            "case": case, "case_only": case_only}


def checked_scope(data: Any) -> dict[str, Any]:
    """A scope as the browser sent it back, checked (InputError when malformed)."""
    checked = inputs.record(data, "review-scope", {
        "configuration": inputs.text, "model_set": lambda v, n: inputs.optional(inputs.text, v, n),
        "kind": lambda v, n: inputs.choice(v, n, ("fraction", "minutes")),
        "value": lambda v, n: inputs.number(v, n, 0.0, MAX_MINUTES),
        "case": lambda v, n: inputs.optional(inputs.text, v, n),
        "case_only": inputs.flag})
    if checked["kind"] == "fraction":
        inputs.number(checked["value"], "review-scope.value", 0.0, DEFAULT_CAP)
    return checked


def scope_budget(data: dict[str, Any]) -> Budget:
    """The budget of a checked scope."""
    return Budget(data["kind"], float(data["value"]))


def scope_rows(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The item rows of a scope (empty when the scope names nothing), as the signed-in user may see them (a reviewer
    in an open study: only its study cases, those read blind without their regions: :func:`blinding.item_rows`)."""
    if not data or not data.get("configuration"):
        return []
    data = checked_scope(data)
    case = data.get("case")
    worklist = load_worklist(get_store(), data["configuration"], scope_budget(data),
                             case if data.get("case_only") else None, data.get("model_set"))
    return blinding.item_rows(item_rows(worklist, case))


def region_data(rank: int, budget: float) -> dict[str, Any]:
    """The region a page was opened at (its rank at a fraction ``budget``); its clock is opened on the first report."""
    return {"rank": rank, "budget": budget, "clock": None}


def panel(data: dict[str, Any], rows: list[dict[str, Any]], height: int = 320,
          region: dict[str, Any] | None = None) -> Component:
    """The items grid (multi-select), the comment box, the action buttons the signed-in user's role allows, and the
    page's activity reports (``region``: the region the page was opened at, :func:`region_data`)."""
    user = auth.current_user()
    role = user["role"] if user else ""
    buttons = [dbc.Button(label, id=button, color=colour, size="sm", className="me-1 mb-1",
                          disabled=not allowed(role, action), title=None if allowed(role, action) else
                          f"your role ({role or 'none'}) may not {action.value}")
               for button, (label, action, _decision, colour) in BUTTONS.items()]
    return html.Div([
        dcc.Store(id="review-scope", data=data),
        grid("review-items", ITEM_COLUMNS, rows, height, getRowId="params.data.id", tooltipShowDelay=300,
             rowSelection={"mode": "multiRow", "checkboxes": True, "headerCheckbox": True,
                           "enableClickSelection": False}),
        dbc.Row([
            dbc.Col(dbc.Textarea(id="review-comment", placeholder="Comment (required for Edited and Reject)",
                                 rows=2, maxLength=MAX_COMMENT), lg=5),
            dbc.Col(buttons, lg=7),
        ], className="mt-2 g-2"),
        html.Div(id="review-result", className="mt-2"),
        dcc.Interval(id="review-heartbeat", interval=1000 * ACTIVITY_SECONDS,
                     disabled=not allowed(role, Action.RECORD_TIME)),
        dcc.Store(id="review-activity"), dcc.Store(id="review-region", data=region),
    ], id="review-panel")


ROW_FIELDS = {"image_id": inputs.integer, "configuration_id": inputs.integer,
              "class_index": lambda v, n: inputs.integer(v, n, 0, 255),
              "version": lambda v, n: inputs.optional(inputs.integer, v, n)}


def checked_rows(selected: Any) -> list[dict[str, Any]]:
    """Selected item rows as the browser sent them, checked: ids and class indices in range, a version or none."""
    return inputs.listed(selected, "review-items.selectedRows",
                         lambda row, name: inputs.record(row, name, ROW_FIELDS), inputs.MAX_ROWS)


def _keys(selected: list[dict[str, Any]]) -> list[ItemKey]:
    return [ItemKey(row["image_id"], row["configuration_id"], row["class_index"]) for row in selected]


def _volumes(data: dict[str, Any]) -> dict[ItemKey, float]:
    """Each item's flagged mL on the worklist of a checked scope (the server's, never the browser's)."""
    rows = scope_rows(data)
    return {ItemKey(r["image_id"], r["configuration_id"], r["class_index"]): float(r["flagged_ml"]) for r in rows}


def apply(button: str, selected: list[dict[str, Any]], comment: str | None, data: dict[str, Any]) -> str:
    """Run the action of ``button`` on the selected rows as the signed-in user (``data``: the checked scope they
    were listed in); a one-line summary of what was done.

    Raises WorkflowError, LookupError or ValueError with the service's reason when it is refused."""
    user = auth.current_user()
    if user is None:
        raise WorkflowError("sign in again: the session has ended")
    label, action, decision, _colour = BUTTONS[button]
    service = auth.review_service(get_store().engine)
    principal, ip = int(user["user_id"]), flask.request.remote_addr
    keys = _keys(selected)
    volumes = _volumes(data) if action in (Action.START_REVIEW, Action.REOPEN) else {}
    if len(keys) == 1:
        version = selected[0].get("version") or 0  # 0: the item was pending when the page showed it
        ml = volumes.get(keys[0])
        calls = {Action.START_REVIEW: lambda: service.start_review(principal, keys[0], expected_version=version, ip=ip,
                                                                   flagged_ml=ml),
                 Action.DECIDE: lambda: service.record_decision(principal, keys[0], decision or "", comment,
                                                                expected_version=version, ip=ip),
                 Action.REOPEN: lambda: service.reopen(principal, keys[0], expected_version=version, ip=ip,
                                                       flagged_ml=ml),
                 Action.APPROVE: lambda: service.approve(principal, keys[0], expected_version=version, ip=ip)}
        done = [calls[action]()]
    else:
        done = service.bulk(principal, action, keys, decision=decision, comment=comment, ip=ip, volumes=volumes)
    return f"{label}: {len(done)} item(s) now {done[0].state.value}" + (
        f" ({done[0].decision.value})" if done[0].decision else "")


def badge_text() -> str:
    """The header badge: how many items of the review configuration are not reviewed yet ('' without results)."""
    try:
        store = get_store()
    except StoreNotReadyError:
        return ""
    with store.session() as session:
        configuration = default_configuration(session, settings().review_configuration)
        if configuration is None:
            return ""
        try:
            return f"{unreviewed_count(session, configuration)} unreviewed"
        except LookupError:  # the configured review configuration has no result (yet)
            return ""


@callback(Output("review-result", "children"), Output("review-items", "rowData"),
          Output("review-comment", "value"), Output("unreviewed-badge", "children", allow_duplicate=True),
          *(Input(button, "n_clicks") for button in BUTTONS),
          State("review-items", "selectedRows"), State("review-comment", "value"), State("review-scope", "data"),
          prevent_initial_call=True)
def _act(*values: Any) -> tuple[Any, Any, Any, Any]:
    clicks = [inputs.clicks(value, f"{button}.n_clicks") for value, button in zip(values, BUTTONS, strict=False)]
    selected = checked_rows(values[len(BUTTONS)])
    comment = inputs.optional(inputs.text, values[len(BUTTONS) + 1], "review-comment.value", MAX_COMMENT)
    data = checked_scope(values[len(BUTTONS) + 2])
    button = ctx.triggered_id
    if button not in BUTTONS or not any(clicks):
        return dash.no_update, dash.no_update, dash.no_update, dash.no_update
    if not selected:
        return (dbc.Alert("Select one or more items first (the boxes on the left).", color="info", id="review-alert"),
                dash.no_update, dash.no_update, dash.no_update)
    try:
        message = apply(button, selected, comment, data)
    except (WorkflowError, LookupError, ValueError) as error:
        return (dbc.Alert(f"Refused: {error}", color="danger", id="review-alert"), scope_rows(data),
                dash.no_update, badge_text())
    return dbc.Alert(message, color="success", id="review-alert"), scope_rows(data), "", badge_text()


clientside_callback(ClientsideFunction("review", "activity"), Output("review-activity", "data"),
                    Input("review-heartbeat", "n_intervals"), State("review-region", "data"))

REGION_FIELDS = {"rank": lambda v, n: inputs.integer(v, n, 1), "budget": lambda v, n: inputs.number(v, n, 0.0, 1.0),
                 "clock": lambda v, n: inputs.optional(inputs.integer, v, n)}


def _open_region(principal: int, data: dict[str, Any], region: dict[str, Any], ip: str | None) -> int:
    """Open the clock of the scope's case's region ``region['rank']`` at ``region['budget']`` (LookupError when the
    worklist has no such region)."""
    worklist = load_worklist(get_store(), data["configuration"], Budget("fraction", region["budget"]),
                             data.get("case"), data.get("model_set"))
    for case in worklist.cases:
        for found in case.regions:
            if found.rank == region["rank"]:
                return auth.review_service(get_store().engine).open_region(
                    principal, case.image_id, case.configuration_id, found.class_index, found.rank,
                    region["budget"], found.volume_ml, ip=ip)
    raise LookupError(f"there is no region {region['rank']} of {data.get('case')!r} at this budget")


@callback(Output("review-region", "data"), Input("review-activity", "data"),
          State("review-region", "data"), State("review-scope", "data"), prevent_initial_call=True)
def _activity(report: Any, region: Any, data: Any) -> Any:
    report = inputs.record(report, "review-activity", {"tick": inputs.integer, "active": inputs.flag})
    region = inputs.optional(inputs.record, region, "review-region", REGION_FIELDS)
    data = checked_scope(data)
    user = auth.current_user()
    if user is None or not allowed(user["role"], Action.RECORD_TIME):  # a viewer's page reports nothing to refuse
        return dash.no_update
    principal, ip = int(user["user_id"]), flask.request.remote_addr
    if region is not None and data.get("case") and blinding.hides(data["case"]):
        region = None  # a case read blind has no regions: none is opened (its existence would tell of them)
    opened = region
    try:
        if region is not None and region["clock"] is None and data.get("case"):
            opened = {**region, "clock": _open_region(principal, data, region, ip)}
        if report["active"]:
            auth.review_service(get_store().engine).report_activity(
                principal, opened["clock"] if opened else None, ip=ip)
    except (WorkflowError, LookupError, ValueError) as error:  # refused (and audited) or gone: no clock
        log.info("review time not recorded for user %s: %s", principal, error)
        return dash.no_update
    return opened if opened is not region else dash.no_update
