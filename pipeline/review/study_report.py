"""A review study's report: the analysis (:mod:`pipeline.review.study_analysis`) as CSV, and a PDF summary with the
protocol, the analysis with its CIs and the allocation, drawn with the audit report's machinery
(:mod:`pipeline.review.report_pdf`: A4, tables paged, every page footed with its number and the disclaimer).

Plain inputs: the :class:`~pipeline.review.study_analysis.StudyAnalysis`, the protocol as the audit log keeps it
(:meth:`pipeline.review.study.StudyInfo.record`) and the readings frame the analysis was computed from.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from pipeline.review.report_pdf import DISCLAIMER, MISSING, page, save_pages, table_pages
from pipeline.review.study_allocation import Endpoint
from pipeline.review.study_analysis import UNITS, ArmDifference, ArmSummary, StudyAnalysis, checked

CSV_COLUMNS = ("study", "measure", "unit", "arm_A", "arm_B", "difference_B_minus_A", "ci_low", "ci_high",
               "confidence", "cases_A", "cases_B", "paired", "primary")
#: the per-arm rows of the CSV: (measure, unit, ArmSummary attribute)
ARM_MEASURES = (("readings", "readings", "readings"), ("opened", "readings", "opened"),
                ("decided", "readings", "decided"), ("cases", "cases", "cases"),
                ("mean_minutes", "min", "mean_minutes"), ("median_minutes", "min", "median_minutes"),
                ("edited_ml_per_minute", "mL/min", "edited_ml_per_minute"),
                ("edit_detected_fraction", "fraction", "edit_detected_fraction"),
                ("mean_edits_in_regions", "fraction", "mean_edits_in_regions"), ("kappa", "kappa", "kappa"),
                ("kappa_pairs", "pairs", "kappa_pairs"))
PROTOCOL = (("Study", "name"), ("Design", "design"), ("Washout (days)", "washout_days"),
            ("Configuration", "configuration"), ("Model set", "model_set"), ("Budget", "budget"),
            ("Cases from", "cases_from"), ("Cases", "cases"), ("Reviewers", "reviewers"),
            ("Primary endpoint", "endpoint"), ("Seed", "seed"), ("Allocation method", "allocation"),
            ("Allocation SHA-256", "allocation_sha256"))


def _number(value: float | int | None) -> float | int | None:
    """A CSV cell: None (an empty cell) for a missing or NaN value."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def csv_rows(analysis: StudyAnalysis) -> list[dict[str, Any]]:
    """The CSV's rows: each per-arm measure (:data:`ARM_MEASURES`), then each endpoint's difference B − A with its
    CI (``measure`` the endpoint's name; arm values over the cases the difference rests on)."""
    a, b = analysis.arms
    rows: list[dict[str, Any]] = [
        {"study": analysis.study, "measure": measure, "unit": unit, "arm_A": _number(getattr(a, field)),
         "arm_B": _number(getattr(b, field))} for measure, unit, field in ARM_MEASURES]
    rows += [{"study": analysis.study, "measure": d.endpoint.value, "unit": UNITS[d.endpoint], "arm_A": _number(d.a),
              "arm_B": _number(d.b), "difference_B_minus_A": _number(d.estimate), "ci_low": _number(d.low),
              "ci_high": _number(d.high), "confidence": analysis.confidence, "cases_A": d.cases_a,
              "cases_B": d.cases_b, "paired": d.paired, "primary": d.primary} for d in analysis.differences]
    return rows


def study_report_csv(analysis: StudyAnalysis) -> str:
    """The analysis as CSV text (:data:`CSV_COLUMNS`, one row per :func:`csv_rows` row; an empty cell where a value
    is missing). The study name needs no formula guard: a study name starts with a letter or digit."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(analysis))
    return out.getvalue()


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def protocol_lines(protocol: Mapping[str, Any]) -> list[str]:
    """The protocol (:meth:`pipeline.review.study.StudyInfo.record`) as ``label: value`` lines (:data:`PROTOCOL`)."""
    return [f"{label}: {_shown(protocol.get(key))}" for label, key in PROTOCOL]


def difference_line(difference: ArmDifference, confidence: float) -> str:
    """A difference in words: ``B − A = x [low, high] (95% CI, paired by case; n cases)``."""
    pairing = "paired by case" if difference.paired else "unpaired"
    cases = (f"{difference.cases_a} cases" if difference.paired else
             f"{difference.cases_a} cases in A, {difference.cases_b} in B")
    return (f"B − A = {_shown(difference.estimate)} {UNITS[difference.endpoint]} "
            f"[{_shown(difference.low)}, {_shown(difference.high)}] ({confidence:.0%} CI, {pairing}; {cases}; "
            f"favours {difference.favours})")


def arms_frame(analysis: StudyAnalysis) -> pd.DataFrame:
    """The per-arm table: one row per arm, the measures as the page and the PDF show them."""
    def row(arm: ArmSummary) -> dict[str, Any]:
        return {"arm": f"{arm.arm.value} ({arm.arm.label})", "readings": arm.readings, "opened": arm.opened,
                "decided": arm.decided, "cases": arm.cases, "mean min/case": arm.mean_minutes,
                "median min/case": arm.median_minutes, "edited mL/min": arm.edited_ml_per_minute,
                "edit detected": arm.edit_detected_fraction, "edits in regions": arm.mean_edits_in_regions,
                "kappa (pairs)": f"{_shown(arm.kappa)} ({arm.kappa_pairs})"}
    return pd.DataFrame([row(arm) for arm in analysis.arms])


def differences_frame(analysis: StudyAnalysis) -> pd.DataFrame:
    """The differences table: one row per endpoint, the primary one marked."""
    return pd.DataFrame([{"endpoint": d.endpoint.value + (" (primary)" if d.primary else ""),
                          "unit": UNITS[d.endpoint], "A": d.a, "B": d.b, "B − A": d.estimate,
                          "CI low": d.low, "CI high": d.high, "paired": "yes" if d.paired else "no",
                          "cases A": d.cases_a, "cases B": d.cases_b, "favours": d.favours}
                         for d in analysis.differences])


def _cover(analysis: StudyAnalysis, protocol: Mapping[str, Any]) -> Figure:
    figure, axes = page(f"Review study — {protocol.get('name', analysis.study)}")
    primary = analysis.primary
    lines = [DISCLAIMER, "", *protocol_lines(protocol),
             f"Endpoint definition: {Endpoint(primary.endpoint).description}", "",
             f"Primary endpoint {primary.endpoint.value}: A {_shown(primary.a)}, B {_shown(primary.b)} "
             f"{UNITS[primary.endpoint]}",
             difference_line(primary, analysis.confidence),
             f"Percentile bootstrap of cases, {analysis.n_bootstrap} resamples, seeded with the study's seed "
             f"{analysis.seed}.", "", "Per arm:"]
    axes.text(0.0, 1.0, "\n".join(lines), fontsize=8, va="top")
    table_axes = figure.add_axes((0.04, 0.06, 0.92, 0.55))
    table_axes.axis("off")
    shown = arms_frame(analysis).T.reset_index()
    shown.columns = ["measure", *(arm.arm.value for arm in analysis.arms)]
    table_axes.table(cellText=[[_shown(v) for v in row] for row in shown.itertuples(index=False)],
                     colLabels=list(shown.columns), loc="upper center", cellLoc="left").set_fontsize(7)
    return figure


def _readings_frame(readings: pd.DataFrame) -> pd.DataFrame:
    ordered = checked(readings).sort_values(["reviewer", "period", "case"])
    return pd.DataFrame({"case": ordered["case"], "reviewer": ordered["reviewer"], "arm": ordered["arm"],
                         "period": ordered["period"], "opened": ordered["opened"].map({True: "yes", False: "no"}),
                         "active min": ordered["active_seconds"].astype("float64") / 60.0,
                         "decision": ordered["decision"], "edited mL": ordered["edited_ml"].astype("float64")})


def write_study_report(analysis: StudyAnalysis, protocol: Mapping[str, Any], readings: pd.DataFrame,
                       path: Path) -> Path:
    """The study's PDF summary at ``path``: the protocol and the primary result, the differences of every endpoint,
    and the allocation with each reading's measurements; returns ``path``."""
    pages: Sequence[Callable[[], Figure]] = [
        lambda: _cover(analysis, protocol),
        *table_pages(f"Arm differences (B − A), {analysis.confidence:.0%} bootstrap CI", differences_frame(analysis),
                    "No reading yet."),
        *table_pages("Allocation and readings", _readings_frame(readings), "No reading allocated."),
    ]
    return save_pages(pages, path, f"Review study {analysis.study}")

