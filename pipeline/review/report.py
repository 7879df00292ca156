"""The audit report PDF: cohort table, budget curves, reliability diagram, worklist summary, reviewer decisions,
and signature and date lines (matplotlib's PdfPages, A4 portrait, every page footed with its number).

:func:`gather_report` reads what the report shows from the store; :func:`write_report` only draws it. Cohort
numbers are the latest protocol's (mean ± SD over repeats of the per-repeat test means) or, without a protocol,
mean ± SD over the reference-backed cases; curves and reliability bins pool the reference-backed results that are
not protocol fits (uncalibrated and deployed TS).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from pipeline.metrics import registry
from pipeline.metrics.calibration import ReliabilityBins
from pipeline.metrics.cohort import summarise_repeats
from pipeline.metrics.review_budget import Budget
from pipeline.review.exports import case_state
from pipeline.review.worklist import Worklist, WorklistCase, build_worklist
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.cohort_rows import latest_protocol, protocol_case_rows
from pipeline.store.configurations import resolve_configuration
from pipeline.store.deployed import deployed_result
from pipeline.store.metric_values import with_values
from pipeline.store.review_schema import ReviewItem, User
from pipeline.store.schema import (
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    ReliabilityBin,
    TemperatureFit,
)

A4 = (8.27, 11.69)
LANDSCAPE = (11.69, 8.27)
ROWS_PER_PAGE = 24
DISCLAIMER = "Research / QA support software, not a medical device."


@dataclass(frozen=True)
class ReportContent:
    """Everything the report shows."""

    generated_at: datetime
    store: str
    configuration: str
    budget: Budget
    cohort_note: str
    cohort: pd.DataFrame
    curves: pd.DataFrame
    reliability: dict[str, ReliabilityBins]
    worklist: Worklist
    decisions: pd.DataFrame


def _deployed(query: Select[Any], model_set_id: int) -> Select[Any]:
    """Restrict a query over CaseResult to the reference-backed deployed results of one model set."""
    return (query.select_from(CaseResult).join(Configuration, Configuration.id == CaseResult.configuration_id)
            .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
            .where(CaseResult.has_reference.is_(True), deployed_result(),
                   Configuration.model_set_id == model_set_id))


def _cohort(session: Session, model_set_id: int) -> tuple[str, pd.DataFrame]:
    shown = list(registry.names(registry.summary_metrics()))
    protocol = latest_protocol(session, model_set_id=model_set_id)
    if protocol is not None:
        rows = protocol_case_rows(session, protocol)
        if not rows.empty:
            note = (f"Protocol {protocol.id} (cohort {protocol.cohort}, {protocol.repeats} repeats): mean ± SD over "
                    "repeats of the per-repeat test means.")
            return note, summarise_repeats(rows, shown)
    frame = with_values(session, _deployed(select(CaseResult.id.label("result_id"),
                                                  Configuration.name.label("configuration")), model_set_id))
    if frame.empty:
        return "No reference-backed result in the store yet.", pd.DataFrame()
    grouped = frame.groupby("configuration")
    summary = pd.concat({"mean": grouped[shown].mean(), "sd": grouped[shown].std(ddof=1)}, axis=1)
    summary.columns = [f"{metric}_{stat}" for stat, metric in summary.columns]
    summary["n_cases"] = grouped.size()
    return "No protocol yet: mean ± SD over the reference-backed cases.", summary.reset_index()


def _curves(session: Session, model_set_id: int) -> pd.DataFrame:
    query = (_deployed(select(Configuration.name, CurvePoint.budget, func.avg(CurvePoint.ueo),
                              func.avg(CurvePoint.recall)), model_set_id)
             .join(CurvePoint, CurvePoint.result_id == CaseResult.id)
             .group_by(Configuration.name, CurvePoint.budget))
    return pd.DataFrame(session.execute(query).all(), columns=["configuration", "budget", "ueo", "recall"])


def _reliability(session: Session, model_set_id: int) -> dict[str, ReliabilityBins]:
    query = (_deployed(select(Configuration.name, ReliabilityBin.bin, func.sum(ReliabilityBin.count),
                              func.sum(ReliabilityBin.sum_confidence), func.sum(ReliabilityBin.sum_correct)),
                       model_set_id)
             .join(ReliabilityBin, ReliabilityBin.result_id == CaseResult.id)
             .where(ReliabilityBin.group == 0).group_by(Configuration.name, ReliabilityBin.bin))
    frame = pd.DataFrame(session.execute(query).all(), columns=["configuration", "bin", "count", "conf", "correct"])
    found = {}
    for name, rows in frame.groupby("configuration"):
        n_bins = int(rows["bin"].max()) + 1
        arrays = [np.zeros((1, n_bins)) for _ in range(3)]
        for column, array in zip(("count", "conf", "correct"), arrays, strict=True):
            array[0, rows["bin"].to_numpy()] = rows[column].to_numpy(dtype=np.float64)
        found[str(name)] = ReliabilityBins(arrays[0].astype(np.int64), arrays[1], arrays[2].astype(np.int64))
    return found


def _decisions(session: Session) -> pd.DataFrame:
    reviewer, approver = aliased(User), aliased(User)
    query = (select(Image.name, Configuration.name, ReviewItem.structure, ReviewItem.state, ReviewItem.decision,
                    reviewer.username, ReviewItem.reviewed_at, approver.username, ReviewItem.approved_at,
                    ReviewItem.comment)
             .join(Image, Image.id == ReviewItem.image_id)
             .join(Configuration, Configuration.id == ReviewItem.configuration_id)
             .outerjoin(reviewer, reviewer.id == ReviewItem.reviewer_id)
             .outerjoin(approver, approver.id == ReviewItem.approver_id)
             .order_by(Image.name, Configuration.name, ReviewItem.class_index))
    columns = ["case", "configuration", "structure", "state", "decision", "reviewer", "reviewed_at", "approver",
               "approved_at", "comment"]
    return pd.DataFrame(session.execute(query).all(), columns=columns)


def gather_report(session: Session, artifacts: ArtifactStore, store: str, configuration: str, budget: Budget,
                  settings: ReviewSettings | None = None, model_set: str | None = None) -> ReportContent:
    """Read the report's content from the store (``store`` is the URL shown, without its password): the model set of
    ``configuration`` (``model_set``, default the newest with a result of it), its cohort numbers and worklist."""
    model_set_id = resolve_configuration(session, configuration, model_set).model_set_id
    note, cohort = _cohort(session, model_set_id)
    return ReportContent(
        generated_at=datetime.now(UTC), store=store, configuration=configuration, budget=budget, cohort_note=note,
        cohort=cohort, curves=_curves(session, model_set_id), reliability=_reliability(session, model_set_id),
        worklist=build_worklist(session, artifacts, configuration, budget, settings, model_set=model_set),
        decisions=_decisions(session),
    )


def _text(value: object, width: int = 40) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _page(title: str, size: tuple[float, float] = A4) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size)
    figure.text(0.06, 0.94, title, fontsize=15, weight="bold")
    axes = figure.add_axes((0.04, 0.06, 0.92, 0.84))
    axes.axis("off")
    return figure, axes


def _table(axes: Axes, frame: pd.DataFrame, font: float, widths: Mapping[str, int] | None = None) -> None:
    """``frame`` as a table at the top of ``axes``, columns as wide as their text (cut at 40 characters, or at the
    column's entry in ``widths``)."""
    limits = [(widths or {}).get(str(column), 40) for column in frame.columns]
    cells = [[_text(v, limit) for v, limit in zip(row, limits, strict=True)] for row in frame.itertuples(index=False)]
    table = axes.table(cellText=cells, colLabels=list(frame.columns), loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(font)
    table.auto_set_column_width(list(range(len(frame.columns))))
    table.scale(1.0, 1.3)


def _table_pages(title: str, frame: pd.DataFrame, empty: str, font: float = 7.0,
                 widths: Mapping[str, int] | None = None) -> list[Callable[[], Figure]]:
    """One drawing function per landscape page of ``frame`` (ROWS_PER_PAGE rows each); a note when it is empty."""
    def draw(part: pd.DataFrame, number: int, count: int) -> Figure:
        figure, axes = _page(title if count == 1 else f"{title} ({number}/{count})", LANDSCAPE)
        if part.empty:
            axes.text(0.0, 0.95, empty, fontsize=11, va="top")
        else:
            _table(axes, part, font, widths)
        return figure

    count = max(1, math.ceil(len(frame) / ROWS_PER_PAGE))
    return [lambda i=i: draw(frame.iloc[i * ROWS_PER_PAGE:(i + 1) * ROWS_PER_PAGE], i + 1, count)
            for i in range(count)]


def _cover(content: ReportContent) -> Figure:
    figure, axes = _page("Uncertainty QA — audit report")
    lines = [DISCLAIMER, f"Generated {content.generated_at:%Y-%m-%d %H:%M} UTC from {content.store}",
             f"Worklist: configuration {content.configuration}, budget {content.budget.describe()}",
             "", "Cohort metrics", content.cohort_note]
    axes.text(0.0, 1.0, "\n".join(lines), fontsize=9, va="top")
    if content.cohort.empty:
        return figure
    shown = pd.DataFrame({"configuration": content.cohort["configuration"]})
    for metric in registry.summary_metrics():
        pairs = zip(content.cohort[f"{metric.name}_mean"], content.cohort[f"{metric.name}_sd"].fillna(0.0),
                    strict=True)
        shown[metric.name] = [f"{metric.format(m)} ± {metric.format(s)}" if not math.isnan(m) else "" for m, s in pairs]
    shown["n"] = content.cohort["n_cases"].to_numpy()
    table_axes = figure.add_axes((0.04, 0.1, 0.92, 0.62))
    table_axes.axis("off")
    _table(table_axes, shown, 7.0)
    return figure


def _charts(content: ReportContent) -> Figure:
    figure = Figure(figsize=A4)
    figure.text(0.08, 0.95, "Budget curves and calibration", fontsize=15, weight="bold")
    ueo, recall, reliability = (figure.add_axes(box) for box in
                                ((0.1, 0.67, 0.8, 0.23), (0.1, 0.38, 0.8, 0.23), (0.25, 0.09, 0.5, 0.22)))
    for name, rows in content.curves.groupby("configuration"):
        rows = rows.sort_values("budget")
        ueo.plot(100 * rows["budget"], rows["ueo"], label=str(name))
        recall.plot(100 * rows["budget"], rows["recall"], label=str(name))
    for axes, label in ((ueo, "mean UEO(b)"), (recall, "mean error recall(b)")):
        axes.set_xlabel("budget b (% of ROI voxels)")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        if content.curves.empty:
            axes.text(0.5, 0.5, "no reference-backed curves yet", ha="center", transform=axes.transAxes)
    if not content.curves.empty:
        ueo.legend(fontsize=6, ncol=3)
    reliability.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, bins in content.reliability.items():
        confidence, accuracy = bins.mean_confidence()[0], bins.accuracy()[0]
        kept = bins.count[0] > 0
        reliability.plot(confidence[kept], accuracy[kept], marker="o", markersize=3, label=f"{name} "
                         f"(ECE {bins.ece():.3f})")
    reliability.set_xlabel("confidence")
    reliability.set_ylabel("accuracy")
    reliability.set_title("Reliability diagram (pooled ROI voxels)", fontsize=9)
    reliability.legend(fontsize=5)
    return figure


def _notes(case: WorklistCase) -> str:
    """A case's state (:func:`~pipeline.review.exports.case_state`) where it needs attention: no reference yet, an
    empty prediction, out of distribution."""
    state = case_state(case)
    return "; ".join(word for word in (state["reference"] if not case.has_reference else "", state["prediction"],
                                       state["ood"] if case.ood_flag else "") if word)


def _worklist_frame(worklist: Worklist) -> pd.DataFrame:
    rows = [{"rank": c.rank, "case": c.case, "budget %": 100 * c.fraction, "flagged mL": c.flagged_ml,
             "regions": len(c.regions), "score": c.score,
             "expected recall": c.expected_recall,
             "items": ", ".join(f"{i.structure}: {i.state.value}" for i in c.items), "notes": _notes(c)}
            for c in worklist.cases]
    return pd.DataFrame(rows)


def _sign_off(content: ReportContent) -> Figure:
    figure, axes = _page("Sign-off")
    states = content.decisions["state"].value_counts().to_dict() if not content.decisions.empty else {}
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "no review item yet"
    lines = [f"Review items: {summary}.", f"Unreviewed items in the worklist: {content.worklist.unreviewed()}.", "",
             "I confirm that the review regions listed in this report were reviewed as recorded.", ""]
    axes.text(0.0, 1.0, "\n".join(lines), fontsize=10, va="top")
    for top, role in ((0.72, "Reviewer (physicist)"), (0.52, "Approver (physicist)"), (0.32, "Head of physics")):
        axes.text(0.0, top, role, fontsize=10, weight="bold")
        for x0, x1, label in ((0.0, 0.45, "Name"), (0.5, 0.8, "Signature"), (0.85, 1.0, "Date")):
            axes.plot([x0, x1], [top - 0.08, top - 0.08], color="black", linewidth=0.8)
            axes.text(x0, top - 0.11, label, fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    return figure


def write_report(content: ReportContent, path: Path) -> Path:
    """Draw ``content`` into a PDF at ``path``; returns ``path``."""
    pages: Sequence[Callable[[], Figure]] = [
        lambda: _cover(content), lambda: _charts(content),
        *_table_pages(f"Worklist — {content.configuration}, {content.budget.describe()}",
                      _worklist_frame(content.worklist), "No case in the worklist.", font=6.0,
                      widths={"notes": 125}),
        *_table_pages("Reviewer decisions", content.decisions, "No review decision recorded yet."),
        lambda: _sign_off(content),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with PdfPages(path) as pdf:
        metadata = pdf.infodict()
        metadata["Title"] = "Uncertainty QA audit report"
        metadata["Subject"] = DISCLAIMER
        for number, draw in enumerate(pages, start=1):
            figure = draw()
            figure.text(0.5, 0.02, f"page {number} of {len(pages)} — {DISCLAIMER}", ha="center", fontsize=7)
            pdf.savefig(figure)
    return path
