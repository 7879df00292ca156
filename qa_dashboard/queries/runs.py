"""Batch runs, the cases they could not process, and the cases each worker processed or failed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.metrics.settings import DEFAULT_SETTINGS
from pipeline.store.schema import CaseFailure, Processing, Run

IN_PROCESS = "in-process"


def _duration(run: Run) -> str:
    if run.finished_at is None:
        return ""
    seconds = int((run.finished_at - run.started_at).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def settings_text(options: dict[str, Any] | None) -> str:
    """The metric settings a run stored, as the fields that differ from the spec's defaults ("spec defaults" when
    none does; "" when the run stored none)."""
    stored = (options or {}).get("settings")
    if not stored:
        return ""
    defaults = asdict(DEFAULT_SETTINGS)
    changed = [f"{name}={value}" for name, value in sorted(stored.items()) if defaults.get(name) != value]
    return ", ".join(changed) or "spec defaults"


def run_rows(session: Session) -> list[dict[str, Any]]:
    """One row per run, newest first: status, counts, duration, metric settings, where and with which code."""
    return [
        {"run": r.id, "kind": r.kind, "status": r.status, "started": f"{r.started_at:%Y-%m-%d %H:%M:%S}",
         "duration": _duration(r), "total": r.cases_total, "done": r.cases_done, "skipped": r.cases_skipped,
         "failed": r.cases_failed, "summary": r.error_summary or "", "host": f"{r.host} (pid {r.pid})",
         "code": r.code_version, "settings": settings_text(r.options)}
        for r in session.scalars(select(Run).order_by(Run.id.desc()))
    ]


def failure_rows(session: Session, run_id: int | None = None) -> list[dict[str, Any]]:
    """Each failed case (of one run, or of all runs) with its stage, reason and the worker it failed on."""
    query = select(CaseFailure).order_by(CaseFailure.run_id.desc(), CaseFailure.id)
    if run_id is not None:
        query = query.where(CaseFailure.run_id == run_id)
    return [
        {"run": f.run_id, "case": f.case_name, "stage": f.stage, "reason": f.reason, "source": f.source,
         "worker": f.worker or IN_PROCESS, "at": f"{f.at:%Y-%m-%d %H:%M:%S}"}
        for f in session.scalars(query)
    ]


def worker_rows(session: Session, run_id: int | None = None) -> list[dict[str, Any]]:
    """Per run and worker (a Dask worker's address; ``in-process`` for the batch's own process): the cases it
    processed (those whose stored processing is still the run's) and the cases that failed on it."""
    counts: dict[tuple[int, str], dict[str, Any]] = {}
    for table, column in ((Processing, "processed"), (CaseFailure, "failed")):
        query = (select(table.run_id, table.worker, func.count()).where(table.run_id.is_not(None))
                 .group_by(table.run_id, table.worker))
        if run_id is not None:
            query = query.where(table.run_id == run_id)
        for run, worker, count in session.execute(query):
            row = counts.setdefault((run, worker or IN_PROCESS), {"run": run, "worker": worker or IN_PROCESS,
                                                                 "processed": 0, "failed": 0})
            row[column] = count
    return [counts[key] for key in sorted(counts, key=lambda key: (-key[0], key[1]))]
