"""A review study's analysis for the dashboard: what the study measured, through the review service as the signed-in
user (:meth:`~pipeline.review.service.ReviewService.study_measurements`: approver or admin, each look audited as
``study.view_results``), analysed (:func:`pipeline.review.study_analysis.analyse_study`)."""

from __future__ import annotations

from pipeline.metrics.statistics import DEFAULT_STATISTICS, StatisticsSettings
from pipeline.review.study import StudyInfo
from pipeline.review.study_analysis import StudyAnalysis, analyse_study
from qa_dashboard import auth
from qa_dashboard.config import settings as app_settings
from qa_dashboard.store import Store


def study_analysis(store: Store, user_id: int, study: StudyInfo,
                   statistics: StatisticsSettings = DEFAULT_STATISTICS) -> StudyAnalysis:
    """The analysis of ``study`` (as :meth:`~pipeline.review.service.ReviewService.show_study` gave it) from the
    readings the store holds, read as user ``user_id``; PermissionDenied for a role that may not see results."""
    readings = auth.review_service(store.engine).study_measurements(
        user_id, study.name, store.maps.artifacts, app_settings().review, auth.client_ip())
    return analyse_study(readings, study.design, study.endpoint, study.seed, statistics)
