"""The review study's analysis (pure): per-arm numbers with known answers, Cohen's kappa, the case-level bootstrap
(reproducible from the seed, paired for a crossover) and its renderings (CSV, PDF)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pypdfium2
import pytest
from sklearn.metrics import cohen_kappa_score

from pipeline.metrics.statistics import StatisticsSettings
from pipeline.review.study_allocation import Arm, Design, Endpoint
from pipeline.review.study_analysis import COLUMNS, analyse_study, cohen_kappa, difference
from pipeline.review.study_report import CSV_COLUMNS, study_report_csv, write_study_report

FAST = StatisticsSettings(n_bootstrap=400)


def reading(case: str, reviewer: str, arm: str, minutes: float | None, decision: str | None,
            edited_ml: float | None = None, period: int = 1, study: str = "s1") -> dict[str, Any]:
    """One row as ``study_measure.reading_rows`` gives it (a final contour attached where ``edited_ml`` is given)."""
    final = edited_ml is not None
    return {"study": study, "case": case, "reviewer": reviewer, "arm": arm, "period": period,
            "opened": decision is not None or minutes is not None,
            "active_seconds": math.nan if minutes is None else 60.0 * minutes, "decision": decision,
            "final_attached": final, "added_voxels": 10 if final else None, "removed_voxels": 0 if final else None,
            "edited_ml": edited_ml if final else math.nan, "any_edit": bool(edited_ml) if final else None,
            "edits_in_regions_fraction": 0.5 if final else math.nan, "regions_opened": 1}


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    return out.astype({"added_voxels": "Int64", "removed_voxels": "Int64", "any_edit": "boolean",
                       "period": int, "regions_opened": int})


def per_case() -> pd.DataFrame:
    return frame([
        reading("c1", "ann", "A", 10, "accepted", 1.0), reading("c2", "ben", "A", 20, "edited", 3.0),
        reading("c3", "ann", "B", 5, "edited", 2.0), reading("c4", "ben", "B", 5, "edited", 2.0),
        reading("c5", "ann", "B", 20, "rejected"), reading("c6", "ben", "B", None, None),
    ])


def test_per_arm_numbers_have_their_known_values() -> None:
    analysis = analyse_study(per_case(), "per-case", "edited-ml-per-minute", seed=3, settings=FAST)
    a, b = analysis.arms
    assert (a.arm, a.readings, a.opened, a.decided, a.cases) == (Arm.STANDARD, 2, 2, 2, 2)
    assert (b.arm, b.readings, b.opened, b.decided, b.cases) == (Arm.GUIDED, 4, 3, 3, 3)
    assert (a.mean_minutes, a.median_minutes, b.mean_minutes, b.median_minutes) == (15.0, 15.0, 10.0, 5.0)
    assert a.edited_ml_per_minute == pytest.approx(4.0 / 30.0)
    assert b.edited_ml_per_minute == pytest.approx(4.0 / 10.0), "only readings with a final contour count"
    assert (a.edit_detected_fraction, b.edit_detected_fraction) == (0.5, pytest.approx(2 / 3))
    assert a.kappa is None and b.kappa is None and a.kappa_pairs == 0, "a per-case design has no double read"
    assert analysis.primary.endpoint is Endpoint.EDITED_ML_PER_MINUTE
    assert [d.primary for d in analysis.differences] == [e is Endpoint.EDITED_ML_PER_MINUTE for e in Endpoint]
    minutes = next(d for d in analysis.differences if d.endpoint is Endpoint.MINUTES_PER_CASE)
    assert (minutes.a, minutes.b, minutes.estimate, minutes.paired) == (15.0, 10.0, -5.0, False)
    assert (minutes.cases_a, minutes.cases_b) == (2, 3)
    assert minutes.low <= minutes.estimate <= minutes.high


def test_kappa_of_double_reads_against_a_hand_computed_value_and_scikit_learn() -> None:
    # arm A double-reads four cases: (edited, edited), (accepted, accepted), (edited, accepted), (accepted, accepted)
    # p_o = 3/4; rater 1 edits 1/2, rater 2 1/4: p_e = 1/2 · 1/4 + 1/2 · 3/4 = 1/2; kappa = (3/4 − 1/2) / (1/2) = 1/2
    pairs = [("edited", "edited"), ("accepted", "accepted"), ("edited", "accepted"), ("accepted", "accepted")]
    rows = [reading(f"c{i}", reviewer, "A", 10, decision, period=1)
            for i, pair in enumerate(pairs) for reviewer, decision in zip(("ann", "ben"), pair, strict=True)]
    rows += [reading(f"c{i}", reviewer, "B", 10, "accepted", period=2)
             for i in range(4) for reviewer in ("cy", "dee")]
    analysis = analyse_study(frame(rows), "crossover", "edit-detected-fraction", seed=1, settings=FAST)
    assert analysis.arms[0].kappa == pytest.approx(0.5) and analysis.arms[0].kappa_pairs == 4
    kappa_b = analysis.arms[1].kappa
    assert kappa_b is not None and math.isnan(kappa_b), "one category only: kappa undefined"
    rng = np.random.default_rng(0)
    first, second = (list(rng.choice(["accepted", "edited", "rejected"], 50)) for _ in range(2))
    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))


def simulated(n_cases: int, crossover: bool, seed: int = 0) -> pd.DataFrame:
    """Minutes = case difficulty (5-35 min) + 2 min in arm A + small noise: the true B − A is −2 min per case."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(5, 35, n_cases)
    rows = []
    for c in range(n_cases):
        arms = ("A", "B") if crossover else (("A",) if c % 2 else ("B",))
        for k, arm in enumerate(arms):
            minutes = difficulty[c] + (2.0 if arm == "A" else 0.0) + rng.normal(0, 0.5)
            rows.append(reading(f"case{c:03d}", ("ann", "ben")[(c + k) % 2], arm, minutes, "accepted", 0.0))
    return frame(rows)


def test_the_bootstrap_ci_covers_the_true_difference_and_is_reproducible_from_the_seed() -> None:
    readings = simulated(80, crossover=False)
    first = analyse_study(readings, "per-case", "minutes-per-case", seed=11, settings=FAST).primary
    assert first.endpoint is Endpoint.MINUTES_PER_CASE and not first.paired
    assert first.low < -2.0 < first.high
    again = analyse_study(readings, Design.PER_CASE, Endpoint.MINUTES_PER_CASE, seed=11, settings=FAST).primary
    assert (again.low, again.high) == (first.low, first.high)
    other = analyse_study(readings, "per-case", "minutes-per-case", seed=12, settings=FAST).primary
    assert (other.low, other.high) != (first.low, first.high) and other.estimate == first.estimate


def test_a_crossover_is_paired_by_case_and_pairing_narrows_the_ci() -> None:
    readings = simulated(30, crossover=True)
    analysis = analyse_study(readings, "crossover", "minutes-per-case", seed=5, settings=FAST)
    paired = analysis.primary
    unpaired = difference(readings, Endpoint.MINUTES_PER_CASE, paired=False, settings=FAST)
    assert paired.paired and paired.cases_a == paired.cases_b == 30
    assert paired.low < -2.0 < paired.high and unpaired.low < -2.0 < unpaired.high
    assert paired.estimate == pytest.approx(unpaired.estimate), "every case read in both arms: same estimate"
    assert paired.high - paired.low < 0.25 * (unpaired.high - unpaired.low), "case difficulty cancels when paired"
    assert paired.favours == "B" and unpaired.favours == "neither"


def test_a_bad_frame_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError, match=r"lack column\(s\) edited_ml"):
        analyse_study(per_case().drop(columns=["edited_ml"]), "per-case", "minutes-per-case", seed=0)
    with pytest.raises(ValueError, match="arm"):
        analyse_study(per_case().assign(arm="C"), "per-case", "minutes-per-case", seed=0)
    with pytest.raises(ValueError, match="mix studies"):
        analyse_study(per_case().assign(study=["s1", "s2"] * 3), "per-case", "minutes-per-case", seed=0)
    with pytest.raises(ValueError, match="twice"):
        analyse_study(pd.concat([per_case(), per_case().head(1)]), "per-case", "minutes-per-case", seed=0)
    with pytest.raises(ValueError):
        analyse_study(per_case(), "per-case", "most-edits", seed=0)


def test_no_decided_reading_gives_missing_numbers_not_an_error() -> None:
    readings = frame([reading("c1", "ann", "A", None, None), reading("c2", "ben", "B", None, None)])
    analysis = analyse_study(readings, "per-case", "minutes-per-case", seed=0, settings=FAST)
    assert all(math.isnan(d.estimate) and math.isnan(d.low) for d in analysis.differences)
    assert math.isnan(analysis.arms[0].mean_minutes) and analysis.arms[0].decided == 0
    assert "minutes-per-case" in study_report_csv(analysis)


def test_the_csv_has_the_per_arm_rows_then_one_difference_per_endpoint() -> None:
    analysis = analyse_study(per_case(), "per-case", "edit-detected-fraction", seed=3, settings=FAST)
    rows = list(csv.DictReader(io.StringIO(study_report_csv(analysis))))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_measure = {row["measure"]: row for row in rows}
    assert (by_measure["mean_minutes"]["arm_A"], by_measure["mean_minutes"]["arm_B"]) == ("15.0", "10.0")
    assert by_measure["kappa"]["arm_A"] == "" and by_measure["readings"]["arm_B"] == "4"
    primary = [row for row in rows if row["primary"] == "True"]
    assert [row["measure"] for row in primary] == ["edit-detected-fraction"]
    assert float(primary[0]["difference_B_minus_A"]) == pytest.approx(2 / 3 - 1 / 2)
    assert float(primary[0]["ci_low"]) <= float(primary[0]["ci_high"])
    assert {row["study"] for row in rows} == {"s1"}


def test_the_pdf_summary_renders_the_protocol_analysis_and_allocation(tmp_path: Path) -> None:
    readings = simulated(30, crossover=True)
    analysis = analyse_study(readings, "crossover", "minutes-per-case", seed=5, settings=FAST)
    protocol = {"name": "nodes 2027", "configuration": "DE", "model_set": "phantoms", "budget": "2% of ROI voxels",
                "cases_from": {"cohort": "clinical"}, "cases": 30, "reviewers": ["ann", "ben"],
                "design": "crossover", "washout_days": 28, "endpoint": "minutes-per-case", "seed": 5,
                "allocation": "qa-study-allocation-v1", "allocation_sha256": "ab" * 32}
    path = write_study_report(analysis, protocol, readings, tmp_path / "study.pdf")
    document = pypdfium2.PdfDocument(str(path))
    try:
        texts = [p.get_textpage().get_text_range() for p in document]
        assert len(texts) == 5  # cover, differences, allocation of 60 readings (24 a page)
        for index in range(len(document)):
            pixels = np.asarray(document[index].render(scale=0.5).to_pil().convert("L"))
            assert 0.002 < float((pixels < 200).mean()) < 0.5, f"page {index + 1} looks blank or black"
    finally:
        document.close()
    cover = texts[0]
    assert "minutes-per-case" in cover and "ab" * 32 in cover and "paired by case" in cover
    assert "Arm differences" in texts[1] and "(primary)" in texts[1]
    assert "Allocation and readings" in texts[2] and "case000" in "".join(texts[2:])
