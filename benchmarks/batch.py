"""Batch throughput: cases per hour on this machine, the share of inference, metrics and storage, and bulk inserts.

``python -m benchmarks.batch [--models M] [--cases N] [--no-tta] [--sweep] [--database-url URL]``

Runs the nightly batch (``pipeline.batch.runner.run_batch``) on N fresh held-out phantoms into a new SQLite store
(or the given empty database), then reads each case's stage timings back from the store. Then, on the stored rows
of one case, times the bulk insert the batch uses against a row-by-row ORM insert of the same rows (the peer), both
inside a transaction that is rolled back. With ``--sweep`` the same phantoms then go through the batch with the sweep's
sub-configurations (``run --sweep``) into a second new SQLite store, and its row is printed beside the spec grid's
(the peer, same run).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import func, select

from pipeline.batch.cases import discover
from pipeline.batch.persist import ResultRows, write_results
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.demo import DEMO_MODELS, write_phantom_cohort
from pipeline.inference.model_set import load_model_set_file
from pipeline.store.database import alembic_config, make_engine, session_factory
from pipeline.store.schema import (
    Artifact,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    MetricValue,
    Processing,
    ReliabilityBin,
    StructureResult,
)

SEEDS_FROM = 9500


def _rows_of(session: Any, processing: Processing) -> list[ResultRows]:
    rows = []
    for result in session.scalars(select(CaseResult).where(CaseResult.processing_id == processing.id)):
        def children(table: Any, skip: tuple[str, ...] = ("result_id",), result_id: int = result.id) -> list[dict]:
            items = session.scalars(select(table).where(table.result_id == result_id)).all()
            return [{c.name: getattr(i, c.key) for c in table.__table__.columns if c.name not in skip} for i in items]

        values = {c.name: getattr(result, c.key) for c in CaseResult.__table__.columns
                  if c.name not in ("id", "processing_id", "image_id", "configuration_id", "temperature_fit_id")}
        rows.append(ResultRows(result.configuration_id, result.temperature_fit_id, values, children(MetricValue),
                               children(StructureResult), children(CurvePoint), children(ReliabilityBin),
                               children(Artifact, ("id", "result_id", "image_id", "processing_id",
                                                   "configuration_id"))))
    return rows


def _row_by_row(session: Any, image: Image, processing_id: int, results: list[ResultRows]) -> None:
    for rows in results:
        result = CaseResult(processing_id=processing_id, image_id=image.id, configuration_id=rows.configuration_id,
                            temperature_fit_id=rows.temperature_fit_id, **rows.result)
        session.add(result)
        session.flush()
        for table, items in ((MetricValue, rows.values), (StructureResult, rows.structures), (CurvePoint, rows.curve),
                             (ReliabilityBin, rows.bins)):
            for item in items:
                session.add(table(result_id=result.id, **item))
                session.flush()
        for item in rows.artifacts:
            session.add(Artifact(result_id=result.id, image_id=image.id, processing_id=processing_id, **item))
            session.flush()


def _insert_times(url: str, repeats: int = 5) -> tuple[float, float, int]:
    engine = make_engine(url)
    sessions = session_factory(engine)
    timings: dict[str, list[float]] = {"bulk": [], "row": []}
    with sessions() as session:
        processing = session.scalars(select(Processing).order_by(Processing.id)).first()
        image = session.get(Image, processing.image_id)
        results = _rows_of(session, processing)
    n_rows = sum(1 + len(r.values) + len(r.structures) + len(r.curve) + len(r.bins) + len(r.artifacts)
                 for r in results)
    for _ in range(repeats):
        for name, write in (("bulk", write_results), ("row", _row_by_row)):
            with sessions() as session:
                start = time.perf_counter()
                write(session, session.merge(image), processing.id, results)
                session.flush()
                timings[name].append(time.perf_counter() - start)
                session.rollback()
    engine.dispose()
    return statistics.median(timings["bulk"]), statistics.median(timings["row"]), n_rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEMO_MODELS, help="model-set JSON or manifest")
    parser.add_argument("--cases", type=int, default=4, help="phantoms to process (default 4)")
    parser.add_argument("--no-tta", action="store_true", help="leave the TTA configurations out")
    parser.add_argument("--database-url", help="an EMPTY database to use (default: a new SQLite file)")
    parser.add_argument("--sweep", action="store_true", help="then the same phantoms with the sweep (`run --sweep`)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        url = args.database_url or f"sqlite:///{root / 'bench.sqlite3'}"
        command.upgrade(alembic_config(url), "head")
        cohort = write_phantom_cohort(root / "cohort", range(SEEDS_FROM, SEEDS_FROM + args.cases))
        model_set = load_model_set_file(args.models)
        options = BatchOptions(cases=tuple(discover(cohort, "bench")), model_set=model_set,
                               models_source=str(args.models), database_url=url, artifacts=root / "artifacts",
                               tta=not args.no_tta, progress=False)
        done, lines = _measure(options, "spec grid")
        bulk, row, n_rows = _insert_times(url)
        if args.sweep:
            swept = f"sqlite:///{root / 'sweep.sqlite3'}"
            command.upgrade(alembic_config(swept), "head")
            more, sweep_lines = _measure(replace(options, database_url=swept, artifacts=root / "sweep", sweep=True),
                                         "with the sweep")
            done, lines = min(done, more), lines + sweep_lines
    sys.stdout.write(
        f"models {args.models} ({len(model_set.members)} members), TTA {'off' if args.no_tta else 'on'}, "
        f"{args.cases} phantoms\n| grid | configurations | passes per case | wall per case | cases per hour | "
        f"inference | metrics | storage (maps + rows) |\n|---|---|---|---|---|---|---|---|\n{''.join(lines)}"
        f"rows of one case ({n_rows} rows): bulk insert {bulk * 1000:.1f} ms vs row by row {row * 1000:.1f} ms "
        f"({row / bulk:.1f}x), median of 5, {url.split(':')[0]}\n"
    )
    return 0 if done == args.cases else 1


def _measure(options: BatchOptions, label: str) -> tuple[int, list[str]]:
    """Run the batch; the cases done and its table row (stage times read back from the store)."""
    start = time.perf_counter()
    summary = run_batch(options)
    wall = time.perf_counter() - start
    engine = make_engine(options.database_url)
    with session_factory(engine)() as session:
        stages = [(p.seconds_inference, p.seconds_metrics, p.seconds_storage, p.forward_passes)
                  for p in session.scalars(select(Processing))]
        configurations = session.scalar(select(func.count()).select_from(Configuration))
    engine.dispose()
    inference, metrics, storage = (sum(s[i] for s in stages) for i in range(3))
    total = inference + metrics + storage
    per_case = wall / max(1, len(summary.done))
    return len(summary.done), [
        f"| {label} | {configurations} | {stages[0][3]} | {per_case:.1f} s | {3600 / per_case:.0f} "
        f"| {inference / total:.0%} ({inference / len(stages):.1f} s) | {metrics / total:.0%} "
        f"({metrics / len(stages):.2f} s) | {storage / total:.0%} ({storage / len(stages):.2f} s) |\n"]


if __name__ == "__main__":
    sys.exit(main())
