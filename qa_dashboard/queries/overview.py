"""The overview: what the store holds, and every case with a link to the slice browser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.store.schema import CaseResult, Image, Patient, Processing, Protocol, Run


@dataclass(frozen=True)
class Totals:
    """Counts of the store's main tables and the latest run."""

    patients: int
    cases: int
    results: int
    protocols: int
    latest_run: tuple[int, str, datetime] | None


def totals(session: Session) -> Totals:
    latest = session.execute(select(Run.id, Run.status, Run.started_at).order_by(Run.id.desc()).limit(1)).first()
    return Totals(
        session.scalar(select(func.count()).select_from(Patient)) or 0,
        session.scalar(select(func.count()).select_from(Image)) or 0,
        session.scalar(select(func.count()).select_from(CaseResult)) or 0,
        session.scalar(select(func.count()).select_from(Protocol)) or 0,
        (int(latest[0]), str(latest[1]), latest[2]) if latest else None,
    )


def case_rows(session: Session) -> list[dict[str, Any]]:
    """One row per case: name, cohort, reference, when it was last processed, how many results it has."""
    processed = (select(Processing.image_id, func.max(Processing.completed_at).label("processed"))
                 .group_by(Processing.image_id).subquery())
    results = (select(CaseResult.image_id, func.count().label("results"))
               .group_by(CaseResult.image_id).subquery())
    rows = session.execute(
        select(Image.name, Image.cohort, Patient.pseudonym, Image.reference_hash.is_not(None).label("reference"),
               Image.reference_note, processed.c.processed, results.c.results)
        .join(Patient, Patient.id == Image.patient_id)
        .outerjoin(processed, processed.c.image_id == Image.id)
        .outerjoin(results, results.c.image_id == Image.id)
        .order_by(Image.cohort, Image.name)
    )
    return [
        {"case": name, "cohort": cohort, "patient": pseudonym, "reference": "yes" if reference else "no",
         "note": note or "", "processed": f"{processed:%Y-%m-%d %H:%M}" if processed else "",
         "results": int(count or 0)}
        for name, cohort, pseudonym, reference, note, processed, count in rows
    ]
