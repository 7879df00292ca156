"""What the audit report PDF shows, read from the store (``pipeline.review.report_pdf`` draws it): the cohort numbers,
budget curves and reliability bins of a cohort filter, the worklist, and every reviewer decision.

The cohort part is the cohort page's: ``pipeline.store.cohort_numbers`` computes it for a
:class:`~pipeline.store.cohort_numbers.CohortFilter` (default: the newest protocol of the worklist's model set, every
repeat, every reference, any processing date — the page's defaults), so for the same filter the report and the page
show the same numbers. Without a protocol there are no cohort numbers, on the page or in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from pipeline.errors import NotFoundError
from pipeline.metrics.calibration import ReliabilityBins
from pipeline.metrics.cost_benefit import CostBenefit
from pipeline.metrics.review_budget import Budget
from pipeline.metrics.statistics import DEFAULT_STATISTICS, StatisticsSettings
from pipeline.review.worklist import Worklist, build_worklist
from pipeline.settings import ReviewSettings
from pipeline.store import cohort_numbers
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.cohort_cost import cost_benefit_rows
from pipeline.store.cohort_numbers import CohortFilter
from pipeline.store.cohort_rows import latest_protocol
from pipeline.store.configurations import resolve_configuration
from pipeline.store.references import EVERY_REFERENCE_LABEL, KIND_LABELS
from pipeline.store.review_schema import ReviewItem, User
from pipeline.store.schema import Configuration, Image, ModelSet, Protocol

DECISION_COLUMNS = ["case", "configuration", "structure", "state", "decision", "reviewer", "reviewed_at",
                    "approver", "approved_at", "comment"]


@dataclass(frozen=True)
class Cohort:
    """The cohort numbers of one filter (``chosen`` None: no protocol yet), as ``cohort_numbers`` computes them.

    ``names`` and ``positions``: configuration id → name and grid position (its look, ``pipeline.styles``);
    ``summary``: mean ± SD over repeats per configuration, with ``n_cases`` and ``n_repeats``; ``curves``: mean
    budget curves; ``reliability``: pooled bins per configuration id.
    """

    chosen: CohortFilter | None
    filters: tuple[str, ...]
    names: dict[int, str]
    positions: dict[int, int]
    summary: pd.DataFrame
    curves: pd.DataFrame
    reliability: dict[int, ReliabilityBins]
    cost: tuple[CostBenefit, ...] = ()

    def n_cases(self) -> dict[int, int]:
        """Test cases per configuration id."""
        if self.summary.empty:
            return {}
        return {int(c): int(n) for c, n in zip(self.summary["configuration_id"], self.summary["n_cases"],
                                                strict=True)}


@dataclass(frozen=True)
class ReportContent:
    """Everything the report shows."""

    generated_at: datetime
    store: str
    configuration: str
    budget: Budget
    cohort: Cohort
    worklist: Worklist
    decisions: pd.DataFrame


def describe_filter(session: Session, chosen: CohortFilter) -> tuple[str, ...]:
    """The filter in words, one line per filter (protocol, repeats, references, processing dates)."""
    protocol = session.get(Protocol, chosen.protocol_id)
    if protocol is None:
        raise NotFoundError(f"there is no protocol {chosen.protocol_id}")
    model_set = session.get_one(ModelSet, protocol.model_set_id)
    repeats = (f"every repeat ({protocol.repeats})" if chosen.repeats is None
               else ", ".join(str(r) for r in chosen.repeats))
    kind = EVERY_REFERENCE_LABEL if chosen.reference_kind is None else KIND_LABELS[chosen.reference_kind]
    dates = (f"{chosen.start or 'any date'} to {chosen.end or 'any date'}" if chosen.start or chosen.end
             else "any date")
    lines = [f"Protocol {protocol.id}: cohort {protocol.cohort}, model set {model_set.name}, seed {protocol.seed}",
             f"Repeats: {repeats}", f"References: {kind}", f"Processed: {dates}"]
    if chosen.configurations is not None:
        lines.append(f"Configurations: ids {', '.join(str(c) for c in chosen.configurations)}")
    return tuple(lines)


def gather_cohort(session: Session, model_set_id: int, chosen: CohortFilter | None = None,
                  statistics: StatisticsSettings = DEFAULT_STATISTICS) -> Cohort:
    """The cohort numbers of ``chosen`` (default: the newest protocol of the model set, the page's defaults), with the
    cost–benefit rows (CIs at ``statistics``)."""
    if chosen is None:
        protocol = latest_protocol(session, model_set_id=model_set_id)
        if protocol is None:
            return Cohort(None, ("No protocol has been run yet: no cohort numbers (the cohort page shows none "
                                 "either).",), {}, {}, pd.DataFrame(), pd.DataFrame(), {})
        chosen = CohortFilter(protocol.id)
    filters = describe_filter(session, chosen)
    protocol_model_set = session.get_one(Protocol, chosen.protocol_id).model_set_id
    grid = cohort_numbers.configurations(session, protocol_model_set)
    overall, _ = cohort_numbers.summary(session, chosen)
    return Cohort(chosen, filters, dict(grid), {c: position for position, (c, _) in enumerate(grid)}, overall,
                  cohort_numbers.curves(session, chosen), cohort_numbers.reliability(session, chosen),
                  tuple(cost_benefit_rows(session, chosen, statistics)))


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
    rows = [tuple(row) for row in session.execute(query)]
    return pd.DataFrame(rows, columns=DECISION_COLUMNS, dtype=object)


def gather_report(session: Session, artifacts: ArtifactStore, store: str, configuration: str, budget: Budget,
                  settings: ReviewSettings | None = None, model_set: str | None = None,
                  chosen: CohortFilter | None = None) -> ReportContent:
    """Read the report's content from the store (``store`` is the URL shown, without its password): the worklist of
    ``configuration`` (of ``model_set``, default the newest with a result of it) and the cohort numbers of ``chosen``
    (default: the newest protocol of that model set)."""
    model_set_id = resolve_configuration(session, configuration, model_set).model_set_id
    return ReportContent(
        generated_at=datetime.now(UTC), store=store, configuration=configuration, budget=budget,
        cohort=gather_cohort(session, model_set_id, chosen),
        worklist=build_worklist(session, artifacts, configuration, budget, settings, model_set=model_set),
        decisions=_decisions(session),
    )
