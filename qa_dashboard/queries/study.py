"""A review study's analysis for the dashboard: its readings from the store, analysed
(:func:`pipeline.review.study_analysis.analyse_study`). The caller checks the role (approver or admin)."""

from __future__ import annotations

from sqlalchemy import select

from pipeline.errors import NotFoundError
from pipeline.metrics.statistics import DEFAULT_STATISTICS, StatisticsSettings
from pipeline.review.study_analysis import StudyAnalysis, analyse_study
from pipeline.store.study_schema import Study
from qa_dashboard.store import Store


def study_analysis(store: Store, name: str, settings: StatisticsSettings = DEFAULT_STATISTICS) -> StudyAnalysis:
    """The analysis of study ``name`` from its stored readings; NotFoundError when there is no such study."""
    from pipeline.review.study_measure import reading_rows  # the measurement slice of issue 16

    with store.session() as session:
        study = session.scalar(select(Study).where(Study.name == name))
        if study is None:
            raise NotFoundError(f"there is no study named {name[:100]!r}")
        design, endpoint, seed = study.design, study.endpoint, study.seed
        readings = reading_rows(session, study.id)
    return analyse_study(readings, design, endpoint, seed, settings)
