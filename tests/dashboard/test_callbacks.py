"""The logic behind the pages' callbacks, on a seeded store of each backend: the cohort table and its CSV, the
filters, the paired summary, and the slice browser's figures, clicks, jumps, regions, probe and metrics."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from pipeline.metrics.statistics import wilcoxon_p
from pipeline.metrics.temperature import apply_temperature
from pipeline.settings import ReviewSettings
from pipeline.store import cohort_numbers
from qa_dashboard import charts, filters, tables, viewer
from qa_dashboard.cell_statistics import cell_statistics, family_adjusted_p
from qa_dashboard.queries import cohort
from qa_dashboard.rendering import views
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, SeededStore, decode_png

SETTINGS = viewer.Settings("1", ("reference", "prediction", "entropy", "budget"), (1, 2), 0.6, 0.1, PLAN.budget)


def _rows(store: SeededStore, structures: list[str]) -> list[dict[str, object]]:
    with get_store().session() as session:
        chosen = cohort_numbers.CohortFilter(store.seeded.protocol_id)
        overall, per_structure = cohort_numbers.summary(session, chosen)
        names = dict(cohort_numbers.configurations(session, store.seeded.model_set_id))
        stats = cell_statistics(cohort_numbers.case_values(session, chosen), tables.table_metrics())
    return tables.cohort_rows(overall, per_structure, names, structures, stats)


def _column(case_metric: str) -> str:
    """The table column whose all-foreground row shows ``case_metric`` (its own, or a structure metric's)."""
    return next(m.name for m in tables.table_metrics() if case_metric in (m.name, m.whole_case))


def test_cohort_rows_mark_the_best_value_per_structure_and_export_as_csv(store: SeededStore) -> None:
    rows = _rows(store, [tables.ALL_FOREGROUND, "spleen"])
    assert [(r["configuration"], r["structure"]) for r in rows] == [
        *((c, tables.ALL_FOREGROUND) for c in PLAN.configurations), *((c, "spleen") for c in PLAN.configurations)]
    overall = [r for r in rows if r["structure"] == tables.ALL_FOREGROUND]
    spleen = [r for r in rows if r["structure"] == "spleen"]
    ece, ueo_auc = _column("ece"), _column("ueo_auc")
    for group, metric, pick in ((overall, ece, min), (overall, ueo_auc, max), (spleen, "dsc", max)):
        marks = [r[f"{metric}_mark"] for r in group]
        top = next(r for r in group if r[metric] == pick(x[metric] for x in group))
        # best only where the data separate it, else the top and those it cannot be told apart from are tied
        assert top[f"{metric}_mark"] in ("best", "tied") and top[f"{metric}_versus"] is None
        assert marks.count("best") + marks.count("tied") >= 1 and not (marks.count("best") and marks.count("tied"))
        assert all(r[f"{metric}_best"] == (r[f"{metric}_mark"] == "best") for r in group)
        for row in group:
            assert row[f"{metric}_low"] <= row[metric] <= row[f"{metric}_high"], "the CI holds the cohort number"
            assert row[f"{metric}_n"] == row["n_cases"]
            versus = row[f"{metric}_versus"]
            if versus is not None and row[f"{metric}_mark"] == "":
                assert versus[0] > 0 and versus[2] < 0.05, "below the top: separated from it"
    for metric in tables.table_metrics():  # structure rows show the structure-level metrics, and only those
        assert all((r[metric.name] is None) == (metric.level == "case") for r in spleen), metric.name
    parsed = list(csv.DictReader(io.StringIO(tables.cohort_csv(rows))))
    assert len(parsed) == len(rows) and parsed[0]["configuration"] == "Base"
    assert float(parsed[0][f"{ece}_mean"]) == pytest.approx(rows[0][ece], rel=1e-5)
    assert {f"{ece}_{s}" for s in ("sd", "low", "high", "n", "mark")} | {"n_cases", "n_repeats"} <= set(parsed[0])
    assert _rows(store, ["lymph_nodes"])[0]["structure"] == "lymph_nodes"


def test_filters_parse_the_controls_and_the_address() -> None:
    chosen = filters.cohort_filter(3, [2, 0], "2026-11-02T00:00:00", None, [5])
    assert chosen == cohort_numbers.CohortFilter(3, (0, 2), (5,), chosen.start, None)
    assert str(chosen.start) == "2026-11-02"
    assert filters.cohort_filter(None, [], None, None) is None
    assert filters.cohort_filter(3, [], None, None).repeats is None  # no repeat chosen = every repeat


def test_charts_of_a_seeded_cohort(store: SeededStore) -> None:
    ids = store.seeded.configurations
    names, positions = {v: k for k, v in ids.items()}, {v: i for i, v in enumerate(ids.values())}
    with get_store().session() as session:
        chosen = cohort_numbers.CohortFilter(store.seeded.protocol_id)
        diagram = charts.reliability_figure(cohort_numbers.reliability(session, chosen), names, positions)
        curves = charts.curve_figure(cohort_numbers.curves(session, chosen), "ueo", names, positions)
        result, values = cohort.paired(cohort_numbers.case_table(session, chosen), "ece", ids["DE"], ids["DE+TS"])
    assert [t["name"].split(" (")[0] for t in diagram["data"][1:]] == list(PLAN.configurations)
    assert len(curves["data"]) == 2 * len(PLAN.configurations)  # a band and a mean line each
    scatter = charts.paired_figure(values, "ECE", "DE", "DE+TS")["data"][1]
    assert scatter["customdata"] == list(values["case"])
    summary = dict(charts.paired_summary(result, "ECE", "DE", "DE+TS", 0.0123, 6, "holm"))
    assert summary["cases (pairs)"] == str(result.n) and summary["A"] == "DE"
    assert summary["p adjusted (Holm, 6 pairs of the shown configurations)"] == "0.0123"


def test_plane_figures_show_both_configurations_with_crosshair(store: SeededStore) -> None:
    app_store = get_store()
    view = viewer.load(app_store, "phantom_9000")
    assert view is not None
    slices = viewer.middle(view.case)
    a, b = store.seeded.configurations["DE"], store.seeded.configurations["Base+TS"]
    first, second = viewer.plane_figures(app_store, view, "axial", slices, a, b, SETTINGS)
    assert [t["name"] for t in first["data"]] == ["ct", "overlay"] and len(second["data"]) == 2
    assert first["data"][0]["source"] == second["data"][0]["source"], "one CT picture for both"
    assert first["data"][1]["source"] != second["data"][1]["source"]
    titles = [x["text"] for x in first["layout"]["annotations"]]
    assert f"axial {slices['axial'] + 1}/{PLAN.map_shape[0]} · A: DE" in titles
    only_a = viewer.plane_figures(app_store, view, "coronal", slices, a, None, SETTINGS)
    assert only_a[1]["data"] == [] and len(only_a[0]["layout"]["shapes"]) == 3
    bare = viewer.Settings("2", (), (), 0.6, 0.1, PLAN.budget)
    assert len(viewer.plane_figures(app_store, view, "axial", slices, a, None, bare)[0]["data"]) == 1


def test_a_smaller_budget_draws_fewer_flagged_voxels(store: SeededStore) -> None:
    app_store = get_store()
    view = viewer.load(app_store, "phantom_9000")
    result = view.results[store.seeded.configurations["DE"]]
    mask = app_store.maps.volume(result.maps["budget_mask"])
    busiest = int(np.argmax(mask.sum(axis=(1, 2))))
    style = viewer.Settings("1", ("budget",), (), 0.6, 0.1, 0).style()

    def drawn(budget: float) -> int:
        request = views.OverlayRequest("axial", busiest, style, budget)
        picture = views.overlay_picture(app_store, view.case, result, request, result.roi_voxels)
        return 0 if picture is None else int((decode_png(picture)[..., 3] > 0).sum())

    assert drawn(PLAN.budget) > drawn(0.005) > 0
    assert drawn(0.0) == 0


def test_clicks_jumps_and_regions_move_the_slices(store: SeededStore) -> None:
    app_store = get_store()
    view = viewer.load(app_store, "phantom_9000")
    slices = viewer.middle(view.case)
    spacing_z, spacing_y, spacing_x = view.case.spacing_zyx
    moved = viewer.clicked(view, "axial", slices, {"points": [{"x": 10.5 * spacing_x, "y": 20.5 * spacing_y}]})
    assert moved == {**slices, "coronal": 20, "sagittal": 10}
    top = viewer.clicked(view, "coronal", slices, {"points": [{"x": 3.2 * spacing_x, "y": 0.5 * spacing_z}]})
    assert top == {**slices, "axial": PLAN.map_shape[0] - 1, "sagittal": 3}, "superior is up"
    assert viewer.clicked(view, "axial", slices, {"points": []}) is None
    result = view.results[store.seeded.configurations["DE"]]
    entropy = app_store.maps.volume(result.maps["entropy"]).astype(np.float32)
    jumped = viewer.jump_to_most_uncertain(app_store, result, slices)
    assert jumped == {**slices, "axial": int(np.argmax(entropy.sum(axis=(1, 2))))}
    found = viewer.regions(app_store, view, result, PLAN.budget)
    mask = app_store.maps.volume(result.maps["budget_mask"]).astype(bool)
    assert 0 < sum(r.voxels for r in found) <= mask.sum() and [r.rank for r in found] == list(range(1, len(found) + 1))
    assert all(mask[r.centroid] for r in found), "each region's centre voxel lies inside it"
    smaller = viewer.regions(app_store, view, result, 0.005)
    listed = ReviewSettings().min_region_ml  # regions under it are not listed; their voxels stay in U_b
    assert 0 < sum(r.voxels for r in smaller) <= math.ceil(0.005 * result.roi_voxels)
    assert all(r.volume_ml >= listed for r in smaller)
    assert viewer.regions(app_store, view, result, 0.0) == ()


def test_probe_reads_the_voxel_from_every_map_and_rescales_ts_probabilities(store: SeededStore) -> None:
    app_store = get_store()
    view = viewer.load(app_store, "phantom_9000")
    de, ts = (view.results[store.seeded.configurations[n]] for n in ("DE", "DE+TS"))
    voxel = (12, 30, 40)
    probe = views.probe(app_store, view.case, [de, ts], voxel)
    ct = app_store.maps.volume(view.case.ct_path)
    assert probe.hu == float(ct[voxel]) and probe.voxel == voxel
    x, y, z = view.case.origin_xyz
    sx, sy, sz = view.case.spacing_xyz
    assert probe.position_mm == pytest.approx((x + 40 * sx, y + 30 * sy, z + 12 * sz))
    stored = app_store.maps.volume(de.probabilities_path)[(slice(None), *voxel)].astype(np.float64)
    plain = stored / stored.sum()
    assert list(probe.results[0].probabilities.values()) == pytest.approx(plain)
    expected = apply_temperature(plain[:, None], ts.temperature)[:, 0]
    assert list(probe.results[1].probabilities.values()) == pytest.approx(expected)
    assert probe.results[0].entropy == pytest.approx(float(app_store.maps.volume(de.maps["entropy"])[voxel]))
    table = str(viewer.probe_table(app_store, view, voxel, [de.configuration_id]))
    assert "HU" in table and "DE: entropy" in table and "position (mm, LPS)" in table


def test_metrics_table_lists_both_configurations(store: SeededStore) -> None:
    app_store = get_store()
    view = viewer.load(app_store, "prospective_001")
    ids = store.seeded.configurations
    text = str(viewer.metrics_table(app_store, view, [ids["Base"], ids["DE+TS"]], PLAN.budget))
    assert "Base" in text and "DE+TS" in text and "flagged mL at 2.0 %" in text
    assert text.count("no reference yet") >= 2 * 7, "a case without reference says so for its DSC, ECE, …"
    assert "deployed fit on 6 cases" in text and "this case included" not in text
    phantom = str(viewer.metrics_table(app_store, viewer.load(app_store, "phantom_9000"), [ids["DE+TS"]], PLAN.budget))
    assert "deployed fit on 6 cases (this case included)" in phantom


def test_the_paired_comparison_is_adjusted_over_the_pairs_shown(store: SeededStore) -> None:
    with get_store().session() as session:
        chosen = cohort_numbers.CohortFilter(store.seeded.protocol_id)
        table = cohort.per_case(cohort_numbers.case_table(session, chosen), "ece")
    ids = store.seeded.configurations
    a, b = ids["DE"], ids["DE+TS"]
    raw = wilcoxon_p(table[a], table[b])
    assert family_adjusted_p(table, a, b, [a, b], "holm") == (pytest.approx(raw), 1)
    family = [ids[n] for n in ("Base", "Base+TS", "DE", "DE+TS")]
    adjusted, count = family_adjusted_p(table, a, b, family, "holm")
    assert count == 6 and raw <= adjusted <= min(1.0, 6 * raw)
    bh, _ = family_adjusted_p(table, a, b, family, "bh")
    assert raw <= bh <= adjusted + 1e-12
