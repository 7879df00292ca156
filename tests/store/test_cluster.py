"""The batch on a Dask LocalCluster of 2 worker processes: a worker SIGKILLed mid-case (during inference, while
writing maps, during the database commit) has its case redone elsewhere, and the store equals an uninterrupted
in-process run's: rows, every metric value to the last bit, and the bytes of every stored map."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from alembic import command
from distributed import Client
from sqlalchemy import select

from pipeline.batch import process
from pipeline.batch.cases import discover
from pipeline.batch.cluster import ClusterSpec, DaskCases, connect, parse_cluster, torch_threads
from pipeline.batch.runner import BatchOptions, RunSummary, run_batch
from pipeline.batch.workers import predictor_loads
from pipeline.demo import DEMO_MODELS
from pipeline.inference.engine import MemberPredictor
from pipeline.inference.model_set import load_model_set_file
from pipeline.store.database import alembic_config, make_engine, session_factory
from pipeline.store.schema import Artifact, CaseFailure, CaseResult, Configuration, Image, MetricValue, Processing, Run
from tests.store.test_kill import _snapshot

#: each moment's seam: the function the worker runs at that moment, as (owner, attribute)
SEAMS: dict[str, tuple[Any, str]] = {
    "inference": (MemberPredictor, "network_logits"),  # one forward pass
    "maps": (process, "map_artifacts"),  # one configuration's maps
    "commit": (process, "write_results"),  # the case's result rows, into its open transaction
}


def _die_once(moment: str, marker: str) -> None:
    """In a worker: wrap the moment's seam so that the first worker to come out of it (across workers: the marker
    file is created exclusively) kills its own process with SIGKILL there: after one forward pass (inference), after
    the first configuration's maps are on disk (maps), after the case's rows are flushed into its open transaction
    (commit)."""
    owner, name = SEAMS[moment]
    original = getattr(owner, f"_original_{name}", None) or getattr(owner, name)
    setattr(owner, f"_original_{name}", original)

    def first_dies(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if moment == "commit":
            args[0].flush()
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return result
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, first_dies)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with connect(ClusterSpec(workers=2)) as client:
        yield client


def _options(phantom_folder: Path, url: str, artifacts: Path) -> BatchOptions:
    return BatchOptions(cases=tuple(discover(phantom_folder, "phantom")), model_set=load_model_set_file(DEMO_MODELS),
                        models_source=str(DEMO_MODELS), database_url=url, artifacts=artifacts, tta=False,
                        progress=False)


def _full_snapshot(url: str, artifacts: Path) -> dict[str, Any]:
    """:func:`tests.store.test_kill._snapshot`, plus every metric value unrounded and each map's bytes."""
    snapshot = _snapshot(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        snapshot["exact_values"] = sorted(session.execute(
            select(Image.name, Configuration.name, MetricValue.class_index, MetricValue.name, MetricValue.value)
            .join(CaseResult, CaseResult.id == MetricValue.result_id).join(Image, Image.id == CaseResult.image_id)
            .join(Configuration, Configuration.id == CaseResult.configuration_id)).all(), key=repr)
        paths = sorted(a.path for a in session.scalars(select(Artifact)))
    engine.dispose()
    snapshot["maps"] = {path: _checksum(artifacts / path) for path in paths}
    return snapshot


def _checksum(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(phantom_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The store of an in-process run with one torch thread (each of the 2 workers on 2 cores has one)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    url = f"sqlite:///{root / 'store.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_batch(_options(phantom_folder, url, root / "artifacts"))
    finally:
        torch.set_num_threads(threads)
    assert len(summary.done) == 3
    return _full_snapshot(url, root / "artifacts")


def _workers(url: str) -> tuple[list[str | None], list[str], list[str]]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        workers = [p.worker for p in session.scalars(select(Processing))]
        failures = [f.case_name for f in session.scalars(select(CaseFailure))]
        statuses = [r.status for r in session.scalars(select(Run))]
    engine.dispose()
    return workers, failures, statuses


@pytest.mark.parametrize("moment", list(SEAMS))
def test_a_worker_killed_mid_case_has_its_case_redone_and_the_store_equals_an_uninterrupted_run(
    moment: str, client: Client, phantom_folder: Path, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    from tests.store.conftest import _drop_postgres, _fresh_postgres

    name, url = _fresh_postgres()
    try:
        command.upgrade(alembic_config(url), "head")
        marker = tmp_path / "killed"
        before = set(client.scheduler_info()["workers"])
        client.run(_die_once, moment, str(marker))
        summary: RunSummary = run_batch(_options(phantom_folder, url, tmp_path / "artifacts"), DaskCases(client))
        assert marker.exists(), f"no worker reached the {moment} seam"
        client.wait_for_workers(2)
        assert set(client.scheduler_info()["workers"]) != before, "the killed worker was not replaced"
        assert (sorted(summary.done), summary.failed, summary.busy) == (
            sorted(c.name for c in discover(phantom_folder, "phantom")), [], [])
        assert _full_snapshot(url, tmp_path / "artifacts") == uninterrupted
        workers, failures, statuses = _workers(url)
        assert all(w is not None and w.startswith("tcp://") for w in workers) and len(workers) == 3
        assert (failures, statuses) == ([], ["succeeded"])
    finally:
        _drop_postgres(name)


def test_local_cluster_on_sqlite_equals_the_in_process_run_and_loads_the_models_once_per_worker(
    phantom_folder: Path, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    """local:N may use SQLite (one machine: flock claims and SQLite's own locks); each worker builds one predictor
    and runs with glibc's malloc settings (no Dask ``MALLOC_TRIM_THRESHOLD_``). A cluster of its own: fresh workers
    count their loads from zero (a restart of the killing tests' cluster can outlast its timeout on a loaded
    machine)."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    with connect(parse_cluster("local:2:1")) as client:
        summary = run_batch(_options(phantom_folder, url, tmp_path / "artifacts"), DaskCases(client))
        loads = client.run(predictor_loads)
        trim = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        threads = client.run(torch.get_num_threads)
    assert len(summary.done) == 3 and not summary.failed
    assert list(trim.values()) == [None, None], trim
    assert list(threads.values()) == [1, 1], threads
    assert _full_snapshot(url, tmp_path / "artifacts") == uninterrupted
    assert sorted(loads.values()) in ([1, 1], [0, 1]), loads
    assert len({w for w in _workers(url)[0]}) == sum(loads.values())


def test_a_local_cluster_shares_the_cores_out_unless_told_the_torch_threads_per_worker() -> None:
    assert parse_cluster("local:3") == ClusterSpec(workers=3)
    assert parse_cluster("local:1:1") == ClusterSpec(workers=1, threads=1)
    assert torch_threads(1, cores=2) == 2 and torch_threads(2, cores=2) == 1 and torch_threads(4, cores=2) == 1
