"""The metric settings a processing was computed with: those its run stored (``runs.options["settings"]``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.metrics.settings import MetricSettings
from pipeline.store.schema import Processing, Run


def processing_settings(session: Session, processing_id: int) -> MetricSettings | None:
    """The settings of the run that made the processing; None when the run is gone or stored none."""
    stored = session.scalar(select(Run.options).join(Processing, Processing.run_id == Run.id)
                            .where(Processing.id == processing_id))
    values = (stored or {}).get("settings")
    return MetricSettings(**values) if values else None
