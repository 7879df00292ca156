"""The trend quantities, declared once each (:data:`QUANTITIES`), and their values per case and per nightly run.

A quantity is read per deployed result (:mod:`pipeline.store.deployed`) of the cases a run processed
(``processings.run_id``), as one value per result and structure (``""`` for the whole case). A run's value of a
quantity, per configuration and structure, is the mean of its cases' values where they are defined; ``n`` counts
them (ECE and UEO-AUC are defined on cases with a reference only). ``level`` says what the tolerance and action
levels judge: ``case`` quantities are judged per case and per run, ``run`` quantities per run only (a cohort number).

A case redone by a later run counts in that later run (the store keeps a case's latest processing). Adding a quantity
is one entry of :data:`QUANTITIES`: the trend page, the levels form, the marks and ``pipeline run``'s check read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from pipeline.metrics import registry
from pipeline.metrics.review_budget import DEFAULT_FRACTION, flagged_count
from pipeline.store.deployed import deployed_result
from pipeline.store.schema import (
    WHOLE_CASE,
    CaseResult,
    Configuration,
    Image,
    MetricValue,
    Processing,
    Run,
    StructureResult,
    TemperatureFit,
)

CASE = ""  # the structure of a whole-case value
RESULT_COLUMNS = ["result_id", "run_id", "started", "case", "configuration", "position", "roi_voxels", "voxel_ml",
                  "budget"]
VALUE_COLUMNS = ["result_id", "structure", "value"]
#: a reader: (session, the selected results as a query with RESULT_COLUMNS but budget, the same as a frame) → one row
#: per result and structure with VALUE_COLUMNS
Reader = Callable[[Session, Select[Any], pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Quantity:
    """One trend quantity: ``name`` (stored levels and URLs), ``label`` and ``unit`` (what people read), ``level``
    (module description), ``digits`` shown, ``per_structure`` (one value per structure, else one per case) and
    ``read``, how it is read from the store."""

    name: str
    label: str
    unit: str
    level: Literal["case", "run"]
    digits: int
    per_structure: bool
    read: Reader

    def describe(self, value: float) -> str:
        """``value`` with the quantity's digits and unit."""
        return f"{value:.{self.digits}f} {self.unit}".rstrip()


def _frame(rows: Sequence[Any], structure: str | None = None) -> pd.DataFrame:
    """Rows (result id, structure, value), or (result id, value) of one ``structure``, as a frame."""
    listed = [tuple(r) if structure is None else (r[0], structure, r[1]) for r in rows]
    return pd.DataFrame(listed, columns=VALUE_COLUMNS).astype({"value": "float64"})


def _case_metric(name: str) -> Reader:
    """A case-level metric of the registry (``metric_values`` at WHOLE_CASE); NULL (no reference) stays NaN."""
    registry.metric(name)  # an unknown name fails at import

    def read(session: Session, results: Select[Any], _frame_: pd.DataFrame) -> pd.DataFrame:
        listed = results.subquery()
        return _frame(session.execute(
            select(MetricValue.result_id, MetricValue.value)
            .where(MetricValue.result_id.in_(select(listed.c.result_id)), MetricValue.name == name,
                   MetricValue.class_index == WHOLE_CASE)).all(), CASE)

    return read


def _flagged_ml(_session: Session, _results: Select[Any], frame: pd.DataFrame) -> pd.DataFrame:
    """The volume of the top-budget mask at the run's review budget: ceil(b·|R|) ROI voxels (the budget's owner,
    :func:`~pipeline.metrics.review_budget.flagged_count`) × the voxel volume."""
    return _frame([(row.result_id, CASE, flagged_count(row.budget, int(row.roi_voxels)) * float(row.voxel_ml))
                   for row in frame.itertuples()])


def _predicted_volume(session: Session, results: Select[Any], _frame_: pd.DataFrame) -> pd.DataFrame:
    """Each foreground structure's predicted volume (``structure_results.predicted_ml``)."""
    listed = results.subquery()
    return _frame(session.execute(
        select(StructureResult.result_id, StructureResult.structure, StructureResult.predicted_ml)
        .where(StructureResult.result_id.in_(select(listed.c.result_id)), StructureResult.class_index > 0)).all())


def _ood_flag(session: Session, results: Select[Any], _frame_: pd.DataFrame) -> pd.DataFrame:
    """Each result's out-of-distribution flag (``case_results.ood_flag``, :mod:`pipeline.store.ood`) as 1 or 0; NaN
    where it is not scored (too few reference cases): the run's mean is the share of its cases flagged."""
    listed = results.subquery()
    return _frame([(result_id, CASE, None if flag is None else float(flag)) for result_id, flag in session.execute(
        select(CaseResult.id, CaseResult.ood_flag).where(CaseResult.id.in_(select(listed.c.result_id)))).all()])


QUANTITIES: tuple[Quantity, ...] = (
    *(Quantity(m.name, m.label, m.unit, "case", m.digits, False, _case_metric(m.name))
      for m in registry.trend_metrics() if m.trend == "case"),
    Quantity("flagged_ml", "flagged mL", "mL", "case", 2, False, _flagged_ml),
    Quantity("predicted_volume", "predicted volume", "mL", "case", 1, True, _predicted_volume),
    *(Quantity(m.name, m.label, m.unit, "run", m.digits, False, _case_metric(m.name))
      for m in registry.trend_metrics() if m.trend == "run"),
    Quantity("ood_rate", "out-of-distribution rate", "", "run", 2, False, _ood_flag),
)


def quantity(name: str) -> Quantity:
    """The quantity called ``name``; KeyError for an unknown one."""
    for item in QUANTITIES:
        if item.name == name:
            return item
    raise KeyError(f"no trend quantity {name!r}")


def _results(run_ids: Sequence[int] | None) -> Select[Any]:
    query = (
        select(CaseResult.id.label("result_id"), Run.id.label("run_id"), Run.started_at.label("started"),
               Image.name.label("case"), Configuration.name.label("configuration"),
               Configuration.position.label("position"), CaseResult.roi_voxels.label("roi_voxels"),
               CaseResult.voxel_ml.label("voxel_ml"), Run.options.label("options"))
        .select_from(CaseResult)
        .join(Processing, Processing.id == CaseResult.processing_id)
        .join(Run, and_(Run.id == Processing.run_id, Run.kind == "run"))
        .join(Image, Image.id == CaseResult.image_id)
        .join(Configuration, Configuration.id == CaseResult.configuration_id)
        .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
        .where(deployed_result())
    )
    return query if run_ids is None else query.where(Run.id.in_(list(run_ids)))


def case_values(session: Session, run_ids: Sequence[int] | None = None,
                quantities: Sequence[Quantity] = QUANTITIES) -> pd.DataFrame:
    """One row per deployed result of the runs ``run_ids`` (default every run), quantity and structure:
    ``run_id, started, case, configuration, position, quantity, structure, value`` (NaN where undefined)."""
    query = _results(run_ids)
    rows = session.execute(query).all()
    frame = pd.DataFrame([(*r[:-1], float((r[-1] or {}).get("budget", DEFAULT_FRACTION))) for r in rows],
                         columns=RESULT_COLUMNS)
    listed = query.with_only_columns(*query.selected_columns[:-1])
    parts = [q.read(session, listed, frame).assign(quantity=q.name) for q in quantities]
    values = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*VALUE_COLUMNS, "quantity"])
    merged = frame.drop(columns=["roi_voxels", "voxel_ml", "budget"]).merge(values, on="result_id")
    columns = ["run_id", "started", "case", "configuration", "position", "quantity", "structure", "value"]
    return merged[columns].sort_values(["run_id", "position", "quantity", "structure", "case"]).reset_index(drop=True)


def run_values(cases: pd.DataFrame) -> pd.DataFrame:
    """Per run, configuration, quantity and structure of :func:`case_values`' rows: ``value`` (the mean of the
    defined values; NaN when none is) and ``n`` (how many are defined)."""
    keys = ["run_id", "started", "configuration", "position", "quantity", "structure"]
    if cases.empty:
        return pd.DataFrame(columns=[*keys, "value", "n"])
    grouped = cases.groupby(keys, sort=True, dropna=False)["value"]
    return grouped.agg(value="mean", n="count").reset_index()
