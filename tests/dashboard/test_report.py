"""The audit report PDF through a real review cycle, and its cohort numbers against the cohort page's, on SQLite and
PostgreSQL.

The cycle runs on the review tests' store (two synthetic cases with a reference and the real IBSI STS_019 CT) with a
two-repeat protocol added: at every state an item passes through (pending, in review, reviewed and rejected but not
approved, reopened, reviewed again, approved), with a second item a step behind (so some rows have a review or
approval time and others not), the report is written and each page rendered to PNG (pdfium), and the web download
answers 200 with a PDF. The numbers are compared on the dashboard tests' store (four configurations,
three repeats) with the cohort page's own functions for the same filters: the table's rows (``tables.load_rows``)
and the reliability diagram's legend (``charts.reliability_figure``), read back from the PDF's text.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
import numpy as np
import pypdfium2
import pytest
from sqlalchemy import select

from benchmarks.http_client import ensure_user, login
from pipeline.metrics import registry
from pipeline.metrics.review_budget import Budget
from pipeline.review.report import ReportContent, gather_report
from pipeline.review.report_pdf import MISSING, cohort_table, write_report
from pipeline.review.service import ItemKey, ReviewService
from pipeline.review.workflow import Role, State
from pipeline.settings import Settings
from pipeline.store import cohort_numbers
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import ModelSet, Protocol, SplitRole
from pipeline.styles import STYLES, style
from qa_dashboard import charts, filters, tables
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, SeededStore
from tests.review.conftest import FAST_HASH, STORED_BUDGET, Seeded, seeded  # noqa: F401

QUERY = f"configuration=DE&kind=fraction&value={STORED_BUDGET}"


def _pages(pdf: bytes | Path, folder: Path | None = None, name: str = "") -> list[str]:
    """Each page rendered to PNG (kept under ``folder``) and checked not to be blank; the pages' text."""
    document = pypdfium2.PdfDocument(pdf)
    texts = []
    try:
        for index in range(len(document)):
            picture = document[index].render(scale=0.6).to_pil()
            if folder is not None:
                picture.save(folder / f"{name}_page{index + 1}.png")
            ink = float((np.asarray(picture.convert("L")) < 200).mean())
            assert 0.002 < ink < 0.5, f"{name} page {index + 1} looks blank or black ({ink:.4f} inked)"
            texts.append(document[index].get_textpage().get_text_bounded())
    finally:
        document.close()
    return texts


def _add_protocol(seeded: Seeded) -> int:  # noqa: F811
    """A two-repeat protocol whose test cases are the two synthetic cases (as the protocol stage would write it)."""
    engine = make_engine(seeded.url)
    with session_factory(engine).begin() as session:
        model_set_id = session.scalar(select(ModelSet.id).where(ModelSet.name == "review-test"))
        protocol = Protocol(model_set_id=model_set_id, cohort="review-test", seed=0, repeats=2, test_fraction=0.5)
        session.add(protocol)
        session.flush()
        session.add_all(SplitRole(protocol_id=protocol.id, repeat=r, image_id=seeded.image_ids[case], role="test")
                        for r in range(2) for case in ("synthetic-1", "synthetic-2"))
        protocol_id = protocol.id
    engine.dispose()
    return protocol_id


def _report(seeded: Seeded, path: Path) -> tuple[ReportContent, Path]:  # noqa: F811
    engine = make_engine(seeded.url)
    with session_factory(engine)() as session:
        content = gather_report(session, ArtifactStore(seeded.artifacts), "test store", "DE",
                                Budget("fraction", STORED_BUDGET))
    engine.dispose()
    return content, write_report(content, path)


def test_the_report_renders_in_every_review_state(seeded: Seeded, dash_app: dash.Dash,  # noqa: F811
                                                  configure_app: Callable[..., Settings], tmp_path: Path) -> None:
    protocol_id = _add_protocol(seeded)
    configure_app(database_url=seeded.url, artifacts_dir=seeded.artifacts, exports_dir=tmp_path / "exports")
    suffix = uuid.uuid4().hex[:8]
    reviewer, approver = f"cycle-reviewer-{suffix}", f"cycle-approver-{suffix}"
    ids = {reviewer: ensure_user(seeded.url, reviewer, Role.REVIEWER),
           approver: ensure_user(seeded.url, approver, Role.APPROVER)}
    client = dash_app.server.test_client()
    assert login(client, reviewer).status_code == 302
    engine = make_engine(seeded.url)
    service = ReviewService(engine, password_method=FAST_HASH)
    key = ItemKey(seeded.image_ids["synthetic-1"], seeded.configuration_ids["DE"], 2)
    other = ItemKey(seeded.image_ids["synthetic-2"], seeded.configuration_ids["DE"], 1)  # a step behind
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("pending", lambda: None),
        ("in_review", lambda: (service.start_review(ids[reviewer], key), service.start_review(ids[reviewer], other))),
        ("rejected", lambda: service.record_decision(ids[reviewer], key, "rejected", "spleen tip missed")),
        ("reopened", lambda: service.reopen(ids[reviewer], key)),
        ("reviewed", lambda: (service.record_decision(ids[reviewer], key, "accepted", None),
                              service.record_decision(ids[reviewer], other, "accepted", None))),
        ("approved", lambda: service.approve(ids[approver], key)),
    ]
    pictures = tmp_path / "pages"
    pictures.mkdir()
    try:
        for name, step in steps:
            step()
            content, path = _report(seeded, tmp_path / f"{name}.pdf")
            assert content.cohort.chosen is not None and content.cohort.chosen.protocol_id == protocol_id
            texts = _pages(path, pictures, name)
            assert len(texts) == 7, name  # cover, charts, cost and benefit, its table, worklist, decisions, sign-off
            assert f"Protocol {protocol_id}: cohort review-test" in texts[0] and "Repeats: every repeat (2)" in texts[0]
            assert "Best UEO-AUC" in texts[2] and "Pareto front" in texts[2]
            assert all(row.configuration in texts[3] for row in content.cohort.cost) and content.cohort.cost
            decisions = texts[5]
            row = content.decisions[content.decisions["case"] == "synthetic-1"]
            if name == "pending":
                assert row.empty and "No review decision recorded yet." in decisions
            else:
                assert list(row["state"]) == [{"rejected": State.REVIEWED, "reopened": State.IN_REVIEW}.get(
                    name, name)], name
                assert reviewer[:39] in decisions
            if name in ("in_review", "rejected", "reviewed"):  # no approver nor approval time yet
                assert decisions.count(MISSING) >= 2, name
            if name == "rejected":
                assert "rejected" in decisions and "spleen tip missed" in decisions
            if name == "approved":
                assert approver[:39] in decisions
            response = client.get(f"/export/report.pdf?{QUERY}")
            assert response.status_code == 200, (name, response.get_data(as_text=True))
            assert response.mimetype == "application/pdf"
            assert len(_pages(response.data)) == 7
    finally:
        engine.dispose()
    assert len(list(pictures.glob("*.png"))) == 7 * len(steps)


def _ece_legend(text: str) -> dict[str, tuple[str, int]]:
    """``name (ECE x, n = k)`` entries of the report's reliability legend: name → (ECE as printed, n)."""
    return {m[1]: (m[2], int(m[3])) for m in re.finditer(r"(\S+) \(ECE (\d\.\d{3}), n = (\d+)\)", text)}


@pytest.mark.parametrize("repeats", [None, [0, 2]])
def test_the_reports_numbers_are_the_cohort_pages(store: SeededStore, repeats: list[int] | None,
                                                   dash_app: dash.Dash) -> None:
    page_filter = filters.cohort_filter(store.seeded.protocol_id, repeats, None, None)  # as the page's controls
    assert page_filter is not None
    rows = tables.load_rows(get_store(), page_filter, [tables.ALL_FOREGROUND])
    with get_store().session() as session:
        grid = cohort_numbers.configurations(session, store.seeded.model_set_id)
        figure = charts.reliability_figure(cohort_numbers.reliability(session, page_filter), dict(grid),
                                           {c: k for k, (c, _) in enumerate(grid)})
        content = gather_report(session, ArtifactStore(store.root), "test", "DE", Budget("fraction", PLAN.budget),
                                chosen=page_filter if repeats else None)  # None: the report's default filter
    assert content.cohort.chosen == page_filter
    shown = cohort_table(content.cohort)
    assert list(shown["configuration"]) == [r["configuration"] for r in rows] == list(PLAN.configurations)
    for metric in registry.summary_metrics():
        column = next(m.name for m in tables.table_metrics() if metric.name in (m.name, m.whole_case))
        expected = [f"{metric.format(r[column])} ± {metric.format(r[f'{column}_sd'])}" for r in rows]
        assert list(shown[metric.label]) == expected, metric.name
    assert list(shown["n cases"]) == [r["n_cases"] for r in rows]
    assert list(shown["repeats"]) == [r["n_repeats"] for r in rows] == [len(repeats or range(PLAN.repeats))] * 4

    name = f"numbers-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, Role.REVIEWER)
    client = dash_app.server.test_client()
    assert login(client, name).status_code == 302
    chosen = f"&protocol={store.seeded.protocol_id}" + "".join(f"&repeat={r}" for r in repeats or ())
    response = client.get(f"/export/report.pdf?configuration=DE&kind=fraction&value={PLAN.budget}{chosen}")
    assert response.status_code == 200 and response.mimetype == "application/pdf", response.get_data(as_text=True)
    texts = _pages(response.data)
    legend = _ece_legend(texts[1])
    page_legend = {t["name"].split(" (")[0]: t["name"].split("ECE ")[1].rstrip(")") for t in figure["data"][1:]}
    assert {name: ece for name, (ece, _) in legend.items()} == page_legend
    assert {name: n for name, (_, n) in legend.items()} == {r["configuration"]: r["n_cases"] for r in rows}
    said = f"Repeats: {', '.join(map(str, repeats))}" if repeats else f"Repeats: every repeat ({PLAN.repeats})"
    assert said in texts[0]
    assert "References: every reference" in texts[0]


def test_twelve_configurations_look_different() -> None:
    assert len({s.colour for s in STYLES}) == 12 and len({s.dash for s in STYLES}) >= 6
    assert all(style(k) != style(k + 1) and style(k).dash != style(k + 1).dash for k in range(11))
    assert style(12) == style(0)
