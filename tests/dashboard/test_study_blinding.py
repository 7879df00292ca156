"""Review-study blinding enforced by the server, on SQLite and PostgreSQL: each reader of a per-case study of the
seeded map cases asks for the hidden data directly (the slice browser's callbacks as a forged POST to
``/_dash-update-component``, the page addresses, the export URLs) and gets nothing derived from uncertainty for a
case read blind (arm A, or not opened yet), and everything but the reference for a case read in arm B; no reader gets
the reference (the answer key) while the study is open; a reviewer in an open study gets only its own readings on the
worklist."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dash
import pytest
from sqlalchemy import select

from benchmarks.http_client import ADMIN, FAST_HASH, ensure_user, login
from pipeline.metrics.review_budget import Budget
from pipeline.review.service import CommandLine, ReviewService
from pipeline.review.study import StudyDefinition
from pipeline.review.study_allocation import Arm
from pipeline.review.study_cases import CaseSelection
from pipeline.review.workflow import Role, WorkflowError
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry
from qa_dashboard.queries.worklist import load_worklist
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, SeededStore
from tests.dashboard.http import call
from tests.dashboard.test_permissions import page


@dataclass(frozen=True)
class Reader:
    username: str
    user_id: int
    case: str


@dataclass(frozen=True)
class Study:
    name: str
    readers: dict[Arm, Reader]
    service: ReviewService


STUDY_BUDGET = Budget("fraction", PLAN.budget)


def define_study(url: str, cases: list[str], budget: Budget = STUDY_BUDGET) -> Study:
    """A per-case study of ``cases[:2]`` (configuration DE, at ``budget``) read by two fresh reviewers: one case each,
    one in each arm (two cases, two reviewers: the left-over block holds one A and one B)."""
    tag = uuid.uuid4().hex[:8]
    names = (f"ann-{tag}", f"ben-{tag}")
    ids = {name: ensure_user(url, name, Role.REVIEWER) for name in names}
    service = ReviewService(make_engine(url), password_method=FAST_HASH)
    name = f"blind {tag}"
    service.define_study(CommandLine("t"), StudyDefinition(
        name=name, configuration="DE", budget=budget, cases=CaseSelection(names=tuple(
            cases[:2])), reviewers=names, design="per-case", endpoint="edited-ml-per-minute", seed=5))
    readings = service.show_study(CommandLine("t"), name).readings
    readers = {r.arm: Reader(r.reviewer, ids[r.reviewer], r.case) for r in readings if r.arm is not None}
    assert set(readers) == {Arm.STANDARD, Arm.GUIDED}
    return Study(name, readers, service)


@pytest.fixture
def study(store: SeededStore) -> Iterator[Study]:
    defined = define_study(store.url, store.seeded.map_cases)
    yield defined
    with contextlib.suppress(WorkflowError):  # a test may have closed it
        defined.service.close_study(CommandLine("t"), defined.name)


def signed_in_client(dash_app: dash.Dash, username: str) -> Any:
    client = dash_app.server.test_client()
    assert login(client, username).status_code == 302
    return client


def _view(store: SeededStore, case: str, overlays: list[str]) -> dict[str, Any]:
    return {"viewer-case.data": case, "viewer-a.value": store.seeded.configurations["DE"], "slice-axial.data": 5,
            "slice-coronal.data": 30, "slice-sagittal.data": 30, "viewer-overlays.value": overlays,
            "viewer-budget.value": PLAN.budget, "viewer-opacity.value": 0.6, "viewer-threshold.value": 0.0,
            "viewer-region.data": -1}


def _figure(client: Any, app: dash.Dash, store: SeededStore, case: str, overlays: list[str]) -> str:
    response = call(client, app, "view-a-axial.figure", "slice-axial.data", _view(store, case, overlays))
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.dumps(response.get_json()["response"]["view-a-axial"]["figure"], sort_keys=True)


def _uncertain(client: Any, app: dash.Dash, store: SeededStore, case: str) -> bool:
    """Whether a forged draw that asks for the entropy and budget overlays gets a picture other than without them."""
    return (_figure(client, app, store, case, ["prediction", "entropy", "budget"])
            != _figure(client, app, store, case, ["prediction"]))


def _referenced(client: Any, app: dash.Dash, store: SeededStore, case: str) -> bool:
    """Whether a forged draw that asks for the reference, error and edits overlays gets a picture other than without
    them."""
    return (_figure(client, app, store, case, ["prediction", "reference", "error", "edits"])
            != _figure(client, app, store, case, ["prediction"]))


def _without_reference(client: Any, app: dash.Dash, store: SeededStore, case: str, content: str) -> None:
    """The page ``content`` and the forged callbacks of a study reader of ``case`` carry nothing of the reference."""
    assert not _referenced(client, app, store, case)
    for shown in ("reference contour", "error map", "clinician's edits", "research reference", "no reference yet"):
        assert shown not in content, shown
    assert not re.search(r'"note": ?"', content)  # the review items' empty-structure note comes from the reference
    assert "is not one of this case's overlays" in page(client, f"/patient/{case}", "?overlays=reference")
    probe = _probe(client, app, store, case)
    assert ": predicted" in probe and '"reference"' not in probe
    metrics = _metrics(client, app, store, case)
    assert "mL pred" in metrics and "foreground predicted" in metrics
    assert not any(hidden in metrics for hidden in ("DSC", "/ ref", "error mL", "ROI mL", "edits caught", "NLL"))


def _probe(client: Any, app: dash.Dash, store: SeededStore, case: str) -> str:
    response = call(client, app, "viewer-probe.children", "view-a-axial.hoverData",
                    {**_view(store, case, []), "view-a-axial.hoverData": {"points": [{"x": 40.0, "y": 40.0}]}})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _metrics(client: Any, app: dash.Dash, store: SeededStore, case: str) -> str:
    response = call(client, app, "viewer-metrics-box.children", "viewer-a.value", _view(store, case, []))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _region_clock(client: Any, app: dash.Dash, case: str) -> Any:
    """A forged activity report that opens region 1 of ``case``: the response, with the region's clock when opened."""
    scope = {"configuration": "DE", "model_set": None, "kind": "fraction", "value": PLAN.budget, "case": case,
             "case_only": True}
    return call(client, app, "review-region.data", "review-activity.data", {
        "review-activity.data": {"tick": 1, "active": True}, "review-scope.data": scope,
        "review-region.data": {"rank": 1, "budget": PLAN.budget, "clock": None}})


def _export(client: Any, case: str) -> Any:
    return client.get(f"/export/regions/{case}.zip?configuration=DE&kind=fraction&value={PLAN.budget}")


def _refusals(url: str, username: str) -> list[str]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(AuditEntry.object_id).where(
                AuditEntry.actor == username, AuditEntry.action == "request.refused").order_by(AuditEntry.id)))
    finally:
        engine.dispose()


def test_an_arm_a_reading_gets_nothing_derived_from_uncertainty(store: SeededStore, study: Study,
                                                                dash_app: dash.Dash) -> None:
    reader = study.readers[Arm.STANDARD]
    client = signed_in_client(dash_app, reader.username)
    assert not _uncertain(client, dash_app, store, reader.case)  # concealed, not opened yet: read blind already
    assert not _referenced(client, dash_app, store, reader.case)
    content = page(client, f"/patient/{reader.case}")
    assert "standard review (arm A)" in content and "viewer-overlays" in content
    assert "entropy heat map" not in content and "top-budget mask" not in content
    assert "download-regions" not in content and not re.search(r'"(flagged_ml|case_rank)": ?[0-9]', content)
    opened = [r for r in study.service.show_study(CommandLine("t"), study.name).readings
              if r.reviewer == reader.username]
    assert opened[0].opened_at is not None
    assert "is not one of this case's overlays" in page(client, f"/patient/{reader.case}", "?overlays=entropy")

    assert not _uncertain(client, dash_app, store, reader.case)  # the forged overlays are dropped
    jump = call(client, dash_app, "viewer-region-info.children", "viewer-most-uncertain.n_clicks",
                {**_view(store, reader.case, []), "viewer-most-uncertain.n_clicks": 1})
    assert jump.status_code == 403 and "is hidden" in jump.get_json()["error"]
    probe = _probe(client, dash_app, store, reader.case)
    assert ": predicted" in probe and ": entropy" not in probe and ': p"' not in probe
    _without_reference(client, dash_app, store, reader.case, content)
    metrics = _metrics(client, dash_app, store, reader.case)
    assert not any(hidden in metrics for hidden in ("ECE", "Brier", "UEO", "entropy", "flagged mL", "distribution"))
    blind_clock = _region_clock(client, dash_app, reader.case)
    assert blind_clock.get_json()["response"] == {}  # no region opened: nothing tells of one
    refused = _export(client, reader.case)
    assert refused.status_code == 403 and "is hidden" in refused.get_json()["error"]
    assert any(r.startswith("GET /export/regions/") for r in _refusals(store.url, reader.username))

    ensure_user(store.url)
    admin = signed_in_client(dash_app, ADMIN)  # no study reader: nothing hidden
    assert _uncertain(admin, dash_app, store, reader.case) and _referenced(admin, dash_app, store, reader.case)
    assert ": entropy" in _probe(admin, dash_app, store, reader.case)
    assert "reference contour" in page(admin, f"/patient/{reader.case}")
    assert "DSC" in _metrics(admin, dash_app, store, reader.case)


def test_an_arm_b_reading_gets_the_guided_view_once_opened(store: SeededStore, study: Study,
                                                          dash_app: dash.Dash) -> None:
    reader = study.readers[Arm.GUIDED]
    client = signed_in_client(dash_app, reader.username)
    assert not _uncertain(client, dash_app, store, reader.case)  # concealed: read blind until opened
    assert _export(client, reader.case).status_code == 403
    assert not _referenced(client, dash_app, store, reader.case)  # no reference before the opening either
    content = page(client, f"/patient/{reader.case}")
    assert "uncertainty-guided review (arm B)" in content and "entropy heat map" in content
    _without_reference(client, dash_app, store, reader.case, content)
    assert _uncertain(client, dash_app, store, reader.case)
    assert ": entropy" in _probe(client, dash_app, store, reader.case)
    assert "flagged mL" in _metrics(client, dash_app, store, reader.case)
    jump = call(client, dash_app, "viewer-region-info.children", "viewer-most-uncertain.n_clicks",
                {**_view(store, reader.case, []), "viewer-most-uncertain.n_clicks": 1})
    assert jump.status_code == 200, jump.get_data(as_text=True)
    assert _export(client, reader.case).status_code == 200
    clock = _region_clock(client, dash_app, reader.case)
    assert clock.status_code == 200 and clock.get_json()["response"]["review-region"]["data"]["clock"] is not None

    study.service.close_study(CommandLine("t"), study.name)  # a closed study hides nothing any more
    assert _referenced(client, dash_app, store, reader.case)
    assert '"reference"' in _probe(client, dash_app, store, reader.case)


def test_a_study_reader_sees_only_its_readings_on_the_worklist(store: SeededStore, study: Study,
                                                               dash_app: dash.Dash) -> None:
    a, b = study.readers[Arm.STANDARD], study.readers[Arm.GUIDED]
    client = signed_in_client(dash_app, a.username)
    listed = page(client, "/worklist")
    assert "study-readings" in listed and a.case in listed and b.case not in listed
    assert "concealed until you open the case" in listed and "worklist-cases" not in listed
    assert '"open_href"' not in listed  # no region before an opening, whatever the arm
    general = call(client, dash_app, "worklist-content.children", "worklist-configuration.value",
                   {"worklist-configuration.value": "DE", "worklist-kind.value": "fraction",
                    "worklist-percent.value": 2})
    assert general.status_code == 403, general.get_data(as_text=True)
    assert client.get("/export/worklist.csv?configuration=DE").status_code == 403
    assert client.get("/export/report.pdf?configuration=DE").status_code == 403

    guided = signed_in_client(dash_app, b.username)
    page(guided, f"/patient/{b.case}")  # opens it: its regions appear on the study worklist
    listed = page(guided, "/worklist")
    assert "uncertainty-guided" in listed and '"open_href"' in listed and a.case not in listed


def test_a_study_reader_gets_no_cohort_level_page_callback_or_export(store: SeededStore, study: Study,
                                                                     dash_app: dash.Dash) -> None:
    """The overview, cohort, comparison, trends and runs pages hold every case's uncertainty numbers: a reader in an
    open study gets the note instead of each page, 403 for their callbacks and exports; the admin outside the study
    gets them all."""
    reader = signed_in_client(dash_app, study.readers[Arm.STANDARD].username)
    admin = signed_in_client(dash_app, ADMIN)
    for path in ("/", "/cohort", "/compare", "/trends", "/runs"):
        assert '"study-closed"' in page(reader, path), path
        assert '"study-closed"' not in page(admin, path), path
    assert '"study-closed"' not in page(reader, "/worklist")
    table = call(reader, dash_app, "cohort-grid.rowData", "cohort-structures.value", {})
    assert table.status_code == 403 and "open review study" in table.get_data(as_text=True)
    assert call(admin, dash_app, "cohort-grid.rowData", "cohort-structures.value", {}).status_code == 200
    for export in ("/export/cohort.csv", "/export/cost.csv"):
        assert reader.get(export).status_code == 403, export
    assert "POST /_dash-update-component" in _refusals(store.url, study.readers[Arm.STANDARD].username)


def _prop(content: str, ident: str, prop: str) -> Any:
    """The property ``prop`` of the component with id ``ident`` in a page's JSON."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("props", {}).get("id") == ident:
                return node["props"].get(prop)
            return next((found for v in node.values() if (found := walk(v)) is not None), None)
        if isinstance(node, list):
            return next((found for v in node if (found := walk(v)) is not None), None)
        return None

    return walk(json.loads(content))


def test_a_study_with_a_time_budget_opens_at_that_budget(store: SeededStore, dash_app: dash.Dash) -> None:
    """The study worklist links a minutes budget as ``&minutes=``; the slice browser, from that link or a bare
    address, opens at the fraction of the case's ROI it becomes at the rate in force (the worklist's own conversion),
    not at the default 2 %, and says the time budget."""
    budget = Budget("minutes", 0.05)
    study = define_study(store.url, store.seeded.map_cases, budget)
    try:
        reader = study.readers[Arm.GUIDED]
        client = signed_in_client(dash_app, reader.username)
        listed = page(client, "/worklist")
        assert "minutes=0.05" in listed and "budget=2" not in listed
        expected = load_worklist(get_store(), "DE", budget, reader.case).cases[0].fraction
        assert 0 < expected < PLAN.budget
        for search in (f"?a={store.seeded.configurations['DE']}&minutes={budget.value:g}", ""):  # link, bare
            content = page(client, f"/patient/{reader.case}", search)
            assert _prop(content, "viewer-budget", "value") == pytest.approx(expected), search
            assert _prop(content, "review-scope", "data")["value"] == pytest.approx(expected, abs=1e-6)
            assert "budget regions at 0.05 min per patient (" in content
    finally:
        study.service.close_study(CommandLine("t"), study.name)
