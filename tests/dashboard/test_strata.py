"""Stratification by acquisition on SQLite and PostgreSQL: each image's group from its stored acquisition (scanner,
kernel, slice thickness, …; "unknown" where not stated), the cohort filter by group with its n, and the per-group
table whose n and ECE differences are the cases' own."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import dash
import numpy as np
import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from benchmarks.http_client import ensure_user, login
from pipeline.errors import InputError
from pipeline.metrics.review_budget import Budget
from pipeline.review.workflow import Role
from pipeline.review.worklist import in_group
from pipeline.settings import Settings
from pipeline.store import cohort_numbers
from pipeline.store.cohort_strata import stratified
from pipeline.store.schema import Image, SplitRole
from pipeline.store.strata import UNKNOWN_GROUP, group_counts, group_of, image_groups
from pipeline.store.trends import case_values, quantity
from qa_dashboard import filters
from qa_dashboard.queries import cohort
from qa_dashboard.queries.trends import group_trends, trend
from qa_dashboard.queries.worklist import acquisition_groups, load_worklist
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, SeededStore

ALPHA = {"manufacturer": "SimCT", "manufacturer_model": "Alpha 64", "convolution_kernel": "STANDARD",
         "slice_thickness_mm": 12.0, "kvp": 120.0}
BETA = {"manufacturer": "VoxelWorks", "manufacturer_model": "Beta 16", "convolution_kernel": "SOFT",
        "slice_thickness_mm": 24.0, "kvp": 100.0}


@pytest.fixture(autouse=True)
def served(dash_app: dash.Dash) -> None:
    """The app has served a page before a test imports a page module by its package name: Dash Pages checks its
    registry for duplicate paths once, at the first request, and would then find that module twice."""
    assert dash_app.server.test_client().get("/login").status_code == 200


@pytest.fixture
def scanners(store: SeededStore) -> Iterator[dict[str, str]]:
    """The protocol's cases on two scanners and one without acquisition; by case name, its scanner group."""
    with get_store().session() as session:
        names = sorted(session.scalars(select(Image.name).join(SplitRole, SplitRole.image_id == Image.id)
                                       .where(SplitRole.protocol_id == store.seeded.protocol_id).distinct()))
        chosen = {**{n: ALPHA for n in names[:3]}, **{n: BETA for n in names[3:-1]}}
        for name, record in chosen.items():
            session.execute(update(Image).where(Image.name == name).values(acquisition=record))
        session.commit()
    try:
        yield {n: ("SimCT Alpha 64" if n in names[:3] else "VoxelWorks Beta 16") if n in chosen else UNKNOWN_GROUP
               for n in names}
    finally:
        with get_store().session() as session:
            session.execute(update(Image).where(Image.name.in_(names)).values(acquisition=None))
            session.commit()


def test_groups_are_the_headers_values_and_unknown() -> None:
    assert group_of(BETA, "scanner") == "VoxelWorks Beta 16"
    assert group_of(BETA, "slice_thickness_mm") == "24 mm"
    assert group_of(BETA, "contrast_agent") == UNKNOWN_GROUP
    assert group_of(None, "scanner") == group_of({"kvp": 100.0}, "scanner") == UNKNOWN_GROUP
    with pytest.raises(ValueError, match="not a stratum"):
        group_of(BETA, "series_description")


def test_cohort_filter_by_acquisition_group_with_its_n(store: SeededStore, scanners: dict[str, str]) -> None:
    protocol_id = store.seeded.protocol_id
    with get_store().session() as session:
        counts = cohort.acquisition_counts(session, protocol_id, "scanner")
        thickness = cohort.acquisition_counts(session, protocol_id, "slice_thickness_mm")
        every = cohort_numbers.case_table(session, filters.cohort_filter(protocol_id, [], None, None))
        tables = {group: cohort_numbers.case_table(session, filters.cohort_filter(
            protocol_id, [], None, None, stratum_key="scanner", group=group)) for group in counts}
        thin = cohort_numbers.case_table(session, filters.cohort_filter(
            protocol_id, [], None, None, stratum_key="slice_thickness_mm", group="12 mm"))
        groups = image_groups(session, "scanner", select(Image.id).where(Image.name.in_(list(scanners))))
    assert counts == {"SimCT Alpha 64": 3, "VoxelWorks Beta 16": len(scanners) - 4, UNKNOWN_GROUP: 1}
    assert list(counts)[-1] == UNKNOWN_GROUP, "unknown comes last"
    assert thickness == {"12 mm": 3, "24 mm": len(scanners) - 4, UNKNOWN_GROUP: 1}
    assert sorted(groups.values()) == sorted(scanners.values())
    for group, table in tables.items():
        assert set(table["case"]) == {n for n in set(every["case"]) if scanners[n] == group}, group
    assert sum(len(t) for t in tables.values()) == len(every)
    assert set(thin["case"]) == set(tables["SimCT Alpha 64"]["case"])
    labels = [o["label"] for o in filters.group_options(counts)]
    assert labels[0] == f"every scan (n = {len(scanners)})" and labels[-1] == f"{UNKNOWN_GROUP} (n = 1)"
    assert filters.cohort_filter(protocol_id, [], None, None, stratum_key="kvp", group="").acquisition is None
    with pytest.raises(InputError, match="acquisition stratum must be one of scanner"):
        filters.cohort_filter(protocol_id, [], None, None, stratum_key="series_description", group="x")


def test_the_per_group_table_counts_and_compares_the_cases(store: SeededStore, scanners: dict[str, str]) -> None:
    protocol_id = store.seeded.protocol_id
    with get_store().session() as session:
        frame = stratified(session, cohort_numbers.CohortFilter(protocol_id), "scanner")
        cases = cohort_numbers.case_table(session, cohort_numbers.CohortFilter(protocol_id))
    base = store.seeded.configurations["Base"]
    rows = frame[frame["configuration_id"] == base].set_index("group")
    assert list(rows.index) == ["SimCT Alpha 64", "VoxelWorks Beta 16", UNKNOWN_GROUP]
    per_case = cases[cases["configuration_id"] == base].groupby("case")["ece"].mean()
    groups = per_case.index.map(scanners)
    for group, row in rows.iterrows():
        inside = per_case[groups == group]
        assert row["n_cases"] == len(inside)
        assert row["ece"] == pytest.approx(inside.mean())
        assert row["ece_difference"] == pytest.approx(inside.mean() - per_case[groups != group].mean())
        assert row["ece_low"] <= row["ece_difference"] <= row["ece_high"]
        assert row["differs"] == (row["n_cases"] >= 2 and not (row["ece_low"] <= 0 <= row["ece_high"]))
    assert not rows.loc[UNKNOWN_GROUP, "differs"], "a group of one case is never flagged"
    assert np.isfinite(rows["ece_difference"]).all()


def test_the_worklist_narrows_to_a_group_and_names_each_cases(store: SeededStore, scanners: dict[str, str]) -> None:
    from qa_dashboard.pages import worklist as page

    whole = load_worklist(get_store(), "DE", Budget("fraction", PLAN.budget))
    groups = acquisition_groups(get_store(), whole, "scanner")
    names = {case.image_id: case.case for case in whole.cases}
    assert {names[i]: g for i, g in groups.items()} == {n: g for n, g in scanners.items() if n in names.values()} | {
        n: UNKNOWN_GROUP for n in names.values() if n not in scanners}, "cases outside the protocol: unknown"
    counts = group_counts(groups)
    assert len(counts) >= 2, "the listed cases span several groups"
    for group in counts:
        narrowed = in_group(whole, groups, group)
        assert [c.case for c in narrowed.cases] == [c.case for c in whole.cases if groups[c.image_id] == group]
        assert [c.rank for c in narrowed.cases] == sorted(c.rank for c in narrowed.cases), "ranks kept, in order"
        assert {"label": f"{group} (n = {len(narrowed.cases)})", "value": group} in page._group_choices(counts)
    assert page._group_choices(counts)[0]["label"] == f"every scan (n = {len(whole.cases)})"


def test_the_worklist_exports_follow_the_group(store: SeededStore, scanners: dict[str, str], dash_app: dash.Dash,
                                              configure_app: Callable[..., Settings], tmp_path: Path) -> None:
    configure_app(database_url=store.url, artifacts_dir=store.root, exports_dir=tmp_path)
    name = f"reviewer-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, Role.REVIEWER)
    client = dash_app.server.test_client()
    assert login(client, name).status_code == 302
    whole = load_worklist(get_store(), "DE", Budget("fraction", PLAN.budget))
    groups = acquisition_groups(get_store(), whole, "scanner")
    query = urlencode({"configuration": "DE", "kind": "fraction", "value": PLAN.budget})
    for group in [*group_counts(groups), "no such scanner"]:
        response = client.get(f"/export/worklist.xlsx?{query}&{urlencode({'stratum': 'scanner', 'group': group})}")
        assert response.status_code == 200, response.get_data(as_text=True)
        book = load_workbook(io.BytesIO(response.data))
        assert [row[1].value for row in book["cases"].iter_rows(min_row=2)] == [
            c.case for c in whole.cases if groups[c.image_id] == group], group
        assert ["acquisition", f"Scanner: {group}"] in [[c.value for c in row] for row in book["about"].iter_rows()]
    every = client.get(f"/export/worklist.csv?{query}")
    assert {row["case"] for row in csv.DictReader(io.StringIO(every.get_data(as_text=True)))} == {
        c.case for c in whole.cases}, "no group: the whole list"
    bad = client.get(f"/export/worklist.csv?{query}&stratum=series_description&group=x")
    assert bad.status_code == 400 and "series_description" in bad.get_json()["error"]
    from qa_dashboard.pages import worklist as page

    with client:  # the signed-in request's context stays open for the links' role check
        client.get("/worklist")
        links = str(page.export_links("DE", Budget("fraction", PLAN.budget), "", "scanner", "SimCT Alpha 64"))
    assert "group=SimCT+Alpha+64" in links and links.count("group=") == 2, "the worklist's two files, not the report"


def test_trends_per_group_and_narrowed_to_one(store: SeededStore, scanners: dict[str, str]) -> None:
    from qa_dashboard.pages import trends as page

    with get_store().session() as session:
        values = case_values(session, quantities=[quantity("mean_entropy_roi")])
        every, _ = trend(session, "DE", "mean_entropy_roi")
        per_group = group_trends(session, "DE", "mean_entropy_roi", "scanner")
        beta, _ = trend(session, "DE", "mean_entropy_roi", acquisition=("scanner", "VoxelWorks Beta 16"))
    de = values[values["configuration"] == "DE"]
    groups = de["case"].map(lambda name: scanners.get(name, UNKNOWN_GROUP))
    assert list(per_group)[-1] == UNKNOWN_GROUP and set(per_group) == set(groups)
    for group, points in per_group.items():
        own = de[groups == group]
        assert [p["n"] for p in points] == [int(n) for n in own.groupby("run_id")["value"].count()], group
    assert beta == per_group["VoxelWorks Beta 16"]
    assert sum(p["n"] for p in every) == sum(p["n"] for points in per_group.values() for p in points)
    figure, _summary, options = page._chart("DE", "mean_entropy_roi", None, [], "scanner", "")
    dotted = [t for t in figure["data"] if t.get("legendgroup") == "acquisition"]
    assert [t["name"].split(" (n = ")[0] for t in dotted] == list(per_group)
    assert options[0]["value"] == "" and {o["value"] for o in options[1:]} == set(per_group)
    narrowed, _summary, _options = page._chart("DE", "mean_entropy_roi", None, [], "scanner", "VoxelWorks Beta 16")
    assert not [t for t in narrowed["data"] if t.get("legendgroup") == "acquisition"]


def test_the_paired_comparison_per_group(store: SeededStore, scanners: dict[str, str]) -> None:
    from qa_dashboard.pages import compare as page

    protocol_id, ids = store.seeded.protocol_id, store.seeded.configurations
    with get_store().session() as session:
        cases = cohort_numbers.case_table(session, cohort_numbers.CohortFilter(protocol_id))
        groups = image_groups(session, "scanner")
    per_group = cohort.paired_by_group(cases, "ece", ids["DE"], ids["Base"], groups)
    _, both = cohort.paired(cases, "ece", ids["DE"], ids["Base"])
    assert list(per_group)[-1] == UNKNOWN_GROUP
    for group, result in per_group.items():
        own = both[both["case"].map(scanners) == group]
        assert result.n == len(own) and result.mean_difference == pytest.approx((own["a"] - own["b"]).mean())
    table, _figure = page._paired(protocol_id, [], None, None, "all", "scanner", "", ids["DE"], ids["Base"], "ece",
                                  [ids["DE"], ids["Base"]])
    shown = str(table)
    for group, result in per_group.items():
        assert f"Scanner {group} (n = {result.n})" in shown
