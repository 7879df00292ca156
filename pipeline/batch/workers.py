"""The worker side of ``run --cluster``: what a Dask worker process keeps between the cases it runs.

A worker runs :func:`run_on_worker` once per case. It keeps, per process: one engine per store, the model set's rows
per run, and one predictor per model set (keyed by its manifest identity, the device and the worker thread), whose
weights are read once (:class:`~pipeline.inference.engine.MemberPredictor` caches them), not once per case; the
model set is read from the worker's own disk (same path) and checked against the run's (checksums and identity).
:class:`WorkerSetup` sets each worker's torch threads when it starts, so N workers on one machine do not
oversubscribe its cores. The protocol stage's pieces run here too (:func:`fit_on_worker`, :func:`evaluate_on_worker`),
each on a session of its own on the worker's engine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path

from distributed import WorkerPlugin, get_worker
from sqlalchemy.orm import sessionmaker

from pipeline.batch.case_task import CaseContext, CaseJob, CaseOutcome, run_case
from pipeline.batch.cases import CaseSpec
from pipeline.batch.persist import deployed_fits, ensure_model_set
from pipeline.batch.protocol_pieces import CaseRows, Piece, evaluate_piece, fit_piece, piece_reader
from pipeline.inference.engine import MemberPredictor, choose_device
from pipeline.inference.model_set import ModelSet as LoadedModelSet
from pipeline.inference.model_set import ModelSetError, load_model_set_file
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import TemperatureFit

log = logging.getLogger(__name__)

#: how long a worker waits for a case that a worker killed a moment ago may still hold (its server connection)
CLAIM_WAIT_SECONDS = 30.0

_lock = threading.Lock()
_sessions: dict[str, sessionmaker] = {}
_predictors: dict[tuple[str, str, int], MemberPredictor] = {}
_rows: dict[str, tuple[tuple[int | None, str], tuple]] = {}


class WorkerSetup(WorkerPlugin):
    """Run on every worker when it starts (and when a nanny restarts it): torch threads, nnU-Net without compiling."""

    def __init__(self, torch_threads: int | None) -> None:
        self.torch_threads = torch_threads

    def setup(self, worker: object) -> None:
        """Set the worker process's threads before any case runs."""
        os.environ.setdefault("nnUNet_compile", "f")
        if self.torch_threads is not None:
            import torch

            torch.set_num_threads(self.torch_threads)


def predictor_loads() -> int:
    """How many predictors this process has built (one per model set, device and worker thread)."""
    return len(_predictors)


def _store_sessions(url: str) -> sessionmaker:
    """This process's sessions on the store at ``url`` (one engine per store); call under ``_lock``."""
    sessions = _sessions.get(url)
    if sessions is None:
        sessions = _sessions[url] = session_factory(make_engine(url))
    return sessions


def _context(job: CaseJob, worker: str) -> CaseContext:
    options = job.options
    identity = options.model_set.identity()
    with _lock:
        sessions = _store_sessions(options.database_url)
        key = (identity, options.device or "", threading.get_ident())
        predictor = _predictors.get(key)
        if predictor is None:
            predictor = _predictors[key] = MemberPredictor(_same_models(options.model_set, options.models_source),
                                                           choose_device(options.device))
            log.info("worker %s loaded model set %s on %s", worker, identity, predictor.device)
        cached = _rows.get(options.database_url)
        if cached is None or cached[0] != (job.run_id, identity) or job.run_id is None:
            with sessions.begin() as session:
                model_set, configurations = ensure_model_set(session, options.model_set, job.grid,
                                                             options.models_source)
                rows = (model_set, configurations, deployed_fits(session, configurations))
            cached = _rows[options.database_url] = ((job.run_id, identity), rows)
    model_set, configurations, fits = cached[1]
    return CaseContext(sessions, predictor, model_set, configurations, fits, worker, CLAIM_WAIT_SECONDS)


def _same_models(model_set: LoadedModelSet, source: str) -> LoadedModelSet:
    """The model set as this worker's machine has it (its checksums checked against the manifest there), refused
    unless it is the one the run was started with."""
    local = load_model_set_file(Path(source))
    if local.identity() != model_set.identity():
        raise ModelSetError(f"{source}: the model set on this worker ({local.identity()}) differs from the one the run "
                            f"was started with ({model_set.identity()}); install the same models on every node")
    return local


def run_on_worker(job: CaseJob, spec: CaseSpec) -> CaseOutcome:
    """One case as a Dask task (see :func:`pipeline.batch.case_task.run_case`)."""
    began = time.perf_counter()
    worker = get_worker().address
    outcome = run_case(job, _context(job, worker), spec)
    return dataclasses.replace(outcome, seconds=time.perf_counter() - began)


def fit_on_worker(piece: Piece) -> list[dict[str, object]]:
    """One protocol piece's fits as a Dask task (:func:`pipeline.batch.protocol_pieces.fit_piece`)."""
    with _lock:
        sessions = _store_sessions(piece.source.database_url)
    with sessions() as session, piece_reader(session, piece) as reader:
        return fit_piece(reader, piece)


def evaluate_on_worker(piece: Piece, fits: list[TemperatureFit]) -> list[CaseRows]:
    """One protocol piece's TS results as a Dask task (:func:`pipeline.batch.protocol_pieces.evaluate_piece`)."""
    with _lock:
        sessions = _store_sessions(piece.source.database_url)
    with sessions() as session, piece_reader(session, piece) as reader:
        return evaluate_piece(reader, piece, fits)
