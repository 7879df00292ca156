"""Batch throughput: cases per hour on this machine, the share of inference, metrics and storage, and bulk inserts.

``python -m benchmarks.batch [--models M] [--cases N] [--no-tta] [--sweep] [--database-url URL] [--cluster SPEC ...]``

Runs the nightly batch (``pipeline.batch.runner.run_batch``) on N fresh held-out phantoms into a new SQLite store
(or the given empty database), then reads each case's stage timings back from the store. Then, on the stored rows
of one case, times the bulk insert the batch uses against a row-by-row ORM insert of the same rows (the peer), both
inside a transaction that is rolled back.

With ``--cluster local:1 --cluster local:2`` the same cases then run on each Dask cluster too, each into a new
SQLite store (``--database-url`` is for the in-process run only): cases per hour, the speed-up over the in-process
run (the peer), the cluster's start (processes, imports; once per batch, not per case) and the scheduling overhead
per case: (wall time x workers - the seconds the tasks took on their workers) / cases, measured within the same run
(so it does not depend on how busy the machine was during the other runs). Each row also gives the CPU seconds per
case (user + sys) and the minor page faults per case of the processes that ran the cases (the batch's own process
in-process; the workers, summed, on a cluster; ``getrusage``): they change little when other processes load the
machine, where wall times do. With ``--sweep`` the same phantoms then go
through the batch with the sweep's sub-configurations (``run --sweep``) into a new SQLite store, and its row is
printed beside the standard grid's (the peer, same run).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
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


def usage() -> tuple[float, float, int]:
    """This process's CPU seconds so far (user, sys) and its minor page faults."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime, own.ru_stime, own.ru_minflt


def _per_case(before: tuple[float, float, int], after: tuple[float, float, int], cases: int) -> str:
    """The CPU seconds (user + sys) and minor page faults per case between two :func:`usage` readings."""
    user, system, faults = (b - a for a, b in zip(before, after, strict=True))
    return f"{user / cases:.1f} + {system / cases:.1f} s | {faults / cases / 1e6:.2f} M"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEMO_MODELS, help="model-set JSON or manifest")
    parser.add_argument("--cases", type=int, default=4, help="phantoms to process (default 4)")
    parser.add_argument("--no-tta", action="store_true", help="leave the TTA configurations out")
    parser.add_argument("--database-url", help="an EMPTY database to use (default: a new SQLite file)")
    parser.add_argument("--sweep", action="store_true", help="then the same phantoms with the sweep (`run --sweep`)")
    parser.add_argument("--cluster", action="append", default=[],
                        help="also run the cases on this Dask cluster (local:N; repeatable), each into a new SQLite "
                             "store")
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
        before, start = usage(), time.perf_counter()
        summary = run_batch(options)
        wall = time.perf_counter() - start
        own = _per_case(before, usage(), max(1, len(summary.done)))
        engine = make_engine(url)
        with session_factory(engine)() as session:
            stages = [(p.seconds_inference, p.seconds_metrics, p.seconds_storage, p.forward_passes)
                      for p in session.scalars(select(Processing))]
        engine.dispose()
        bulk, row, n_rows = _insert_times(url)
        clusters = [_on_cluster(spec, options, root / f"cluster{index}") for index, spec in enumerate(args.cluster)]
        swept = _with_sweep(options, root / "sweep", wall / max(1, len(summary.done))) if args.sweep else ""
    inference, metrics, storage = (sum(s[i] for s in stages) for i in range(3))
    total = inference + metrics + storage
    per_case = wall / max(1, len(summary.done))
    sys.stdout.write(
        f"models {args.models} ({len(model_set.members)} members), TTA {'off' if args.no_tta else 'on'}, "
        f"{len(summary.done)} phantoms, {stages[0][3]} forward passes per case\n"
        f"| wall per case | cases per hour | inference | metrics | storage (maps + rows) |\n|---|---|---|---|---|\n"
        f"| {per_case:.1f} s | {3600 / per_case:.0f} | {inference / total:.0%} ({inference / len(stages):.1f} s) "
        f"| {metrics / total:.0%} ({metrics / len(stages):.1f} s) | {storage / total:.0%} "
        f"({storage / len(stages):.2f} s) |\n"
        f"rows of one case ({n_rows} rows): bulk insert {bulk * 1000:.1f} ms vs row by row {row * 1000:.1f} ms "
        f"({row / bulk:.1f}x), median of 5, {url.split(':')[0]}\n"
    )
    sys.stdout.write(swept)
    if clusters:
        n = len(summary.done)
        sys.stdout.write(
            f"\n{n} phantoms on each: in-process (the peer) and on Dask LocalClusters (1 thread per worker), "
            f"{os.cpu_count()} cores\n| run | wall | cases per hour | speed-up | cluster start | overhead per case "
            "| CPU per case (user + sys) | minor faults per case |\n|---|---|---|---|---|---|---|---|\n"
            f"| in-process | {wall:.1f} s | {3600 * n / wall:.0f} | 1.00x | - | - | {own} |\n"
            + "".join(f"| {spec} | {seconds:.1f} s | {3600 * n / seconds:.0f} | {wall / seconds:.2f}x "
                      f"| {start:.1f} s | {overhead:.2f} s | {cpu} |\n"
                      for spec, seconds, start, overhead, cpu, _ in clusters))
    return 1 if summary.failed or any(c[5] for c in clusters) else 0


def _with_sweep(options: BatchOptions, root: Path, grid_per_case: float) -> str:
    """The same cases with the sweep's sub-configurations into a new SQLite store: its line beside the standard
    grid's wall time per case (the peer, measured in the same run)."""
    url = f"sqlite:///{root / 'sweep.sqlite3'}"
    root.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
    start = time.perf_counter()
    summary = run_batch(dataclasses.replace(options, database_url=url, artifacts=root / "artifacts", sweep=True))
    per_case = (time.perf_counter() - start) / max(1, len(summary.done))
    engine = make_engine(url)
    with session_factory(engine)() as session:
        configurations = session.scalar(select(func.count()).select_from(Configuration))
        passes = session.scalars(select(Processing.forward_passes)).first()
    engine.dispose()
    return (f"with the sweep (run --sweep): {configurations} configurations, {passes} forward passes per case, "
            f"{per_case:.1f} s per case vs {grid_per_case:.1f} s for the standard grid (same run)\n")


def _on_cluster(spec: str, options: BatchOptions, root: Path) -> tuple[str, float, float, float, str, list[Any]]:
    """The same cases on a Dask cluster into a new SQLite store: (spec, wall seconds of the batch, seconds to start
    the cluster and import the pipeline on its workers, scheduling overhead per case, the workers' CPU seconds and
    minor page faults per case, failures)."""
    from pipeline.batch.cluster import DaskCases, connect, parse_cluster

    url = f"sqlite:///{root / 'bench.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    began = time.perf_counter()
    with connect(parse_cluster(spec)) as client:
        client.run(importlib.import_module, "pipeline.batch.workers")
        start = time.perf_counter() - began
        before, began = client.run(usage), time.perf_counter()
        outcomes: list[Any] = []
        cases = DaskCases(client)

        def recorded(job: Any, specs: Any) -> Any:
            for outcome in cases.map(job, specs):
                outcomes.append(outcome)
                yield outcome

        summary = run_batch(dataclasses.replace(options, database_url=url, artifacts=root / "artifacts"),
                            SimpleNamespace(map=recorded))
        seconds = time.perf_counter() - began
        after = client.run(usage)
    total = tuple(sum(reading[i] for reading in readings.values()) for readings in (before, after) for i in range(3))
    cpu = _per_case(total[:3], total[3:], max(1, len(outcomes)))
    workers = int(spec.split(":")[1])
    overhead = (seconds * workers - sum(o.seconds for o in outcomes)) / max(1, len(outcomes))
    return spec, seconds, start, overhead, cpu, summary.failed


if __name__ == "__main__":
    sys.exit(main())
