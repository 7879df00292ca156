"""Review-study blinding on the dashboard's server: what the signed-in user's reading of a case hides, and how.

What a reading hides is :mod:`pipeline.review.study_blinding`'s rule (:func:`~pipeline.review.study_blinding.hidden`)
over the user's readings in open studies, which the review service gives
(:meth:`~pipeline.review.study.StudyOperations.study_readings`), asked again on every request that could carry it:
the slice browser's page and callbacks, the worklist and the exports. A case read blind (arm A, or a reading not
opened yet) loses what is derived from uncertainty (``docs/review-study.md``): the entropy and top-budget overlays,
the jumps to uncertain slices and regions, the regions, flagged volumes and ranks of the review items, the
uncertainty metrics of the metrics and probe tables, and the region and worklist downloads. Any study reading, in
either arm, loses the reference (the answer key): the reference, error and edits overlays, the reference's label in
the probe, every metric that needs the reference (DSC, reference volumes, error and ROI volumes, edits caught), the
review items' empty-structure note and the case header's reference. Answers that mix hidden and shown values are
served without the hidden ones; requests for nothing but hidden data are refused (:func:`refuse`: 403, one line,
audited as ``request.refused``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import dash
import dash_bootstrap_components as dbc
import flask
from dash import dcc
from dash.development.base_component import Component

from pipeline.errors import one_line
from pipeline.review.study_allocation import Arm
from pipeline.review.study_blinding import Hidden, StudyReading, applicable_arm, hidden
from pipeline.review.workflow import PermissionDenied
from qa_dashboard import auth
from qa_dashboard.security import CALLBACK_PATH
from qa_dashboard.store import get_store

#: the slice browser's overlays derived from uncertainty (``qa_dashboard.rendering.compose.OVERLAYS``)
HIDDEN_OVERLAYS = frozenset({"entropy", "budget"})
#: the slice browser's overlays drawn from the reference: hidden from every study reading
REFERENCE_OVERLAYS = frozenset({"reference", "error", "edits"})
#: the registry's case metrics an arm-A reading shows: those of the predicted contours alone (every other one, present
#: or future, is derived from the probabilities or the entropy and hidden)
SHOWN_METRICS = frozenset({"dsc_mean_fg"})
#: review item fields derived from uncertainty: the worklist's rank, the regions and their flagged volume
HIDDEN_ITEM_FIELDS = ("case_rank", "regions", "flagged_ml")
#: review item fields derived from the reference: the note that a structure the reference holds was not predicted
REFERENCE_ITEM_FIELDS = ("note",)
BLIND = "read blind in a review study (standard review, or a reading not opened yet)"
#: the pages closed to a reader in an open study: their tables and figures hold every case's uncertainty numbers (its
#: own cases' among them): the overview, cohort calibration, method comparison, trends and runs pages
CLOSED_PAGES = ("home", "cohort", "compare", "trends", "runs")
#: the other modules whose callbacks serve only those pages: the cohort filters and the cost-benefit view
CLOSED_HELPERS = ("qa_dashboard.filters", "qa_dashboard.cost_view")


def readings(case: str | None = None) -> tuple[StudyReading, ...]:
    """The signed-in user's readings in open studies (of ``case`` when given); none outside a request."""
    user = auth.current_user()
    if user is None:
        return ()
    return auth.review_service(get_store().engine).study_readings(int(user["user_id"]), case)


def arm(case: str) -> Arm | None:
    """The arm that applies to the signed-in user reading ``case`` (None: no open study covers it)."""
    return applicable_arm(readings(case), case)


def hiding(case: str) -> Hidden:
    """What ``case`` hides from the signed-in user (nothing outside an open study)."""
    return hidden(readings(case), case)


def hides(case: str) -> bool:
    """Whether ``case`` is read blind by the signed-in user: everything derived from uncertainty is hidden."""
    return arm(case) is Arm.STANDARD


def open_case(case: str) -> Arm | None:
    """Open the signed-in user's study readings of ``case`` (the slice browser's page: audited, the arm revealed)
    and return the arm that applies; WorkflowError before a crossover's washout."""
    user = auth.current_user()
    if user is None:
        return None
    return auth.review_service(get_store().engine).open_case_readings(int(user["user_id"]), case, auth.client_ip())


def in_study() -> bool:
    """Whether the signed-in user has a reading in an open study: its worklist is the study's (only its readings)."""
    return bool(readings())


def refuse(case: str | None, what: str) -> PermissionDenied:
    """The refusal of a request for hidden data only (raise it: the app's handler answers 403 and audits it)."""
    if case is None:
        return PermissionDenied(f"{what} is not available to a reviewer in an open review study: its worklist holds "
                                "only its study readings")
    return PermissionDenied(f"{what} of case {case[:200]!r} is hidden: the case is {BLIND}")


def shown_overlays(overlays: Iterable[str], hidden: Hidden) -> tuple[str, ...]:
    """``overlays`` without those ``hidden`` hides (derived from uncertainty, drawn from the reference)."""
    return tuple(o for o in overlays if not (hidden.uncertainty and o in HIDDEN_OVERLAYS)
                 and not (hidden.reference and o in REFERENCE_OVERLAYS))


def item_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Review item rows as the signed-in user may see them: a user in an open study gets only its study cases, without
    their reference-derived fields, those read blind without their uncertainty fields either; anyone else every row
    as it is."""
    mine = readings()
    if not mine:
        return rows
    cases = {reading.case for reading in mine}
    shown = []
    for row in rows:
        if row.get("case") not in cases:
            continue
        hides_now = hidden(mine, str(row["case"]))
        left_out = (*(HIDDEN_ITEM_FIELDS if hides_now.uncertainty else ()),
                    *(REFERENCE_ITEM_FIELDS if hides_now.reference else ()))
        shown.append({k: v for k, v in row.items() if k not in left_out})
    return shown


def closes(module: str) -> bool:
    """Whether the callbacks of ``module`` serve a page closed to a reader in an open study."""
    page = module.rsplit(".", 1)[-1]
    return module in CLOSED_HELPERS or (page in CLOSED_PAGES and module.rsplit(".", 1)[0].endswith("pages"))


def unless_in_study(build: Callable[[], Component]) -> Component:
    """A closed page's layout: ``build()``, or for a reader in an open study the note that sends it to its study's
    worklist (the page's numbers would show it what its study hides)."""
    if not in_study():
        return build()
    return dbc.Alert(["This page shows uncertainty numbers of every case, so it is closed while you read in an open "
                      "review study. Your study's cases are on ", dcc.Link("the worklist", href="/worklist"), "."],
                     color="info", id="study-closed")


def check_callback() -> Any:
    """A ``before_request`` check: a callback of a closed page asked for by a reader in an open study is refused (403,
    one line, audited), whatever the browser shows; None for every other request."""
    request = flask.request
    if request.path != CALLBACK_PATH or request.method != "POST":
        return None
    body = request.get_json(silent=True)
    spec = dash.get_app().callback_map.get(body.get("output")) if isinstance(body, dict) else None
    module = str(getattr(spec.get("callback"), "__module__", "")) if spec else ""
    if closes(module) and in_study():
        return auth.refuse(one_line(refuse(None, "a cohort-level page (overview, cohort, comparison, trends, runs)")),
                           403)
    return None
