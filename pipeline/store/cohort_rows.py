"""Per-case rows of a protocol, as the cohort tables read them (SQL over the store, no torch), with every
case-level metric of the registry as a column (``pipeline.store.metric_values``).

For repeat r of a protocol: its test cases; an uncalibrated configuration's result is the one without temperature
fit, a TS configuration's the one fitted on r's calibration cases. Rows without a reference are never in a protocol.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from pipeline.store.deployed import deployed_result
from pipeline.store.metric_values import with_values
from pipeline.store.schema import CaseResult, Configuration, Image, Protocol, SplitRole, TemperatureFit


def latest_protocol(session: Session, cohort: str | None = None, model_set_id: int | None = None) -> Protocol | None:
    """The newest protocol (of ``cohort`` and of the model set ``model_set_id`` when given)."""
    query = select(Protocol).order_by(Protocol.created_at.desc(), Protocol.id.desc()).limit(1)
    if cohort is not None:
        query = query.where(Protocol.cohort == cohort)
    if model_set_id is not None:
        query = query.where(Protocol.model_set_id == model_set_id)
    return session.scalar(query)


def counts_in_repeat(protocol_id: int) -> ColumnElement[bool]:
    """The rule of the module's description as a WHERE clause over ``SplitRole``, ``Configuration``, ``CaseResult``
    and (outer-joined) ``TemperatureFit``: the result counts in ``SplitRole.repeat`` of ``protocol_id``."""
    return and_(
        SplitRole.protocol_id == protocol_id, SplitRole.role == "test",
        or_(and_(Configuration.temperature_scaling.is_(False), CaseResult.temperature_fit_id.is_(None)),
            and_(Configuration.temperature_scaling.is_(True), TemperatureFit.protocol_id == protocol_id,
                 TemperatureFit.repeat == SplitRole.repeat)),
    )


def protocol_case_rows(session: Session, protocol: Protocol) -> pd.DataFrame:
    """One row per (repeat, test case, configuration): ``repeat, case, configuration, position`` + every case-level
    metric of the registry."""
    query = (
        select(CaseResult.id.label("result_id"), SplitRole.repeat.label("repeat"), Image.name.label("case"),
               Configuration.name.label("configuration"), Configuration.position.label("position"))
        .select_from(SplitRole)
        .join(Image, Image.id == SplitRole.image_id)
        .join(CaseResult, CaseResult.image_id == Image.id)
        .join(Configuration, Configuration.id == CaseResult.configuration_id)
        .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
        .where(counts_in_repeat(protocol.id), Configuration.model_set_id == protocol.model_set_id)
    )
    frame = with_values(session, query).drop(columns="result_id")
    return frame.sort_values(["position", "repeat", "case"]).reset_index(drop=True)


def deployed_case_rows(session: Session, cohort: str) -> pd.DataFrame:
    """Every case of ``cohort`` with each configuration's result (TS configurations: the deployed fit):
    ``case, configuration, position`` + every case-level metric of the registry."""
    query = (
        select(CaseResult.id.label("result_id"), Image.name.label("case"), Configuration.name.label("configuration"),
               Configuration.position.label("position"))
        .select_from(Image)
        .join(CaseResult, CaseResult.image_id == Image.id)
        .join(Configuration, Configuration.id == CaseResult.configuration_id)
        .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
        .where(Image.cohort == cohort,
               deployed_result())
    )
    frame = with_values(session, query).drop(columns="result_id")
    return frame.sort_values(["case", "position"]).reset_index(drop=True)


def deployed_ood_rows(session: Session, model_set_id: int, cohorts: tuple[str, ...]) -> pd.DataFrame:
    """The stored out-of-distribution score of every deployed result (uncalibrated, or TS with the fit applied to the
    case) of the model set on the cohorts' images: ``case, cohort, configuration, position, value`` (the mean body
    entropy), ``percentile``, ``reference_n`` and ``flagged`` (:mod:`pipeline.store.ood`; None where not ranked)."""
    query = (
        select(Image.name, Image.cohort, Configuration.name, Configuration.position, CaseResult.ood_entropy,
               CaseResult.ood_percentile, CaseResult.ood_reference_n, CaseResult.ood_flag)
        .select_from(CaseResult)
        .join(Image, Image.id == CaseResult.image_id)
        .join(Configuration, Configuration.id == CaseResult.configuration_id)
        .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
        .where(Configuration.model_set_id == model_set_id, Image.cohort.in_(cohorts), deployed_result())
    )
    frame = pd.DataFrame(session.execute(query).all(), columns=["case", "cohort", "configuration", "position", "value",
                                                                 "percentile", "reference_n", "flagged"])
    return frame.sort_values(["position", "cohort", "case"]).reset_index(drop=True)
