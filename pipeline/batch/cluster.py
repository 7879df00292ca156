"""``run --cluster``: the batch's cases as tasks on Dask distributed, one task per case.

``local:N`` starts a ``LocalCluster`` of N worker processes on this machine (one thread each, torch threads = cores
// N, so N workers do not oversubscribe the cores; ``local:N:T`` gives each worker T torch threads instead);
``tcp://HOST:PORT`` joins a running scheduler whose workers were started with ``dask worker tcp://HOST:PORT
--nthreads 1 --resources GPU=1`` on the GPU nodes. A case run on a CUDA device (``--device cuda``) asks for the
``GPU`` resource, so each GPU takes one case at a time. A ``local:N`` worker starts with glibc's own malloc
settings, as the in-process batch has them, not Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` (:data:`WORKER_ENVIRON`).

Exactly once: the scheduler retries the task of a worker that died (a killed process, a lost node) on another
worker, up to Dask's ``distributed.scheduler.allowed-failures`` times; the case's claim and its one transaction
(:func:`pipeline.batch.case_task.run_case`) make a retried case replace whatever the dead worker left, and a case
that killed every worker it ran on is recorded as a failure of stage ``worker``. A multi-machine cluster needs a
store every machine reaches: a SQLite store is refused there. ``local:N`` may use SQLite: the workers share one
machine, its file locks (the claims) and SQLite's own locking, and each case's write waits its turn.

``protocol --cluster``: the protocol stage's pieces (:mod:`pipeline.batch.protocol_pieces`) as tasks,
:class:`DaskPieces`: each reads the stored maps and returns values and rows; the stage's process writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dask
from distributed import Client, KilledWorker, LocalCluster, as_completed
from sqlalchemy.engine import make_url

from pipeline.batch.case_task import CaseJob, CaseOutcome, record_failure
from pipeline.batch.cases import CaseSpec
from pipeline.batch.protocol_pieces import CaseRows, Piece
from pipeline.batch.workers import WorkerSetup, evaluate_on_worker, fit_on_worker, run_on_worker
from pipeline.errors import InputError
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import TemperatureFit

log = logging.getLogger(__name__)

_LOCAL = re.compile(r"local:([1-9][0-9]{0,3})(?::([1-9][0-9]{0,2}))?")
_REMOTE = re.compile(r"tcp://[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")
GPU = "GPU"

#: Dask settings for the processes of a ``local:N`` cluster. Dask's nanny starts every worker with
#: ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``); setting it at all turns off glibc's
#: sliding mmap threshold, so every array above 128 KiB (a case's probabilities, maps, network activations) is a fresh
#: ``mmap`` of zeroed pages, faulted in page by page and unmapped when freed: measured, per case of the demo batch,
#: about 3x the minor page faults and 3x the kernel time of a worker with glibc's defaults. ``None`` leaves the
#: variable out; a value set in the environment of the process that starts the cluster still reaches the workers.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@dataclass(frozen=True)
class ClusterSpec:
    """Where the cases run: N local worker processes (``threads`` torch threads each; None: the cores shared out),
    or the scheduler at ``address``."""

    workers: int = 0
    address: str | None = None
    threads: int | None = None

    @property
    def multi_machine(self) -> bool:
        """A scheduler's workers may be on other machines."""
        return self.address is not None


def parse_cluster(text: str) -> ClusterSpec:
    """``local:N`` (1 <= N <= 9999), ``local:N:T`` (T torch threads per worker, 1 <= T <= 999) or
    ``tcp://HOST:PORT``; anything else is a user's mistake."""
    if match := _LOCAL.fullmatch(text):
        return ClusterSpec(workers=int(match.group(1)), threads=int(match.group(2)) if match.group(2) else None)
    if _REMOTE.fullmatch(text):
        return ClusterSpec(address=text)
    raise InputError(f"--cluster must be local:N (N worker processes on this machine; local:N:T with T torch threads "
                     f"each) or tcp://HOST:PORT (a running Dask scheduler), got {text!r}")


def check_store(spec: ClusterSpec, database_url: str) -> None:
    """Refuse a SQLite store for a multi-machine cluster (its file is on one machine, its locks on one kernel)."""
    if spec.multi_machine and make_url(database_url).get_backend_name() == "sqlite":
        raise InputError(f"--cluster {spec.address}: a SQLite store cannot serve workers on other machines; set "
                         "QA_DATABASE_URL to a PostgreSQL store, or use --cluster local:N")


def torch_threads(workers: int, cores: int | None = None) -> int:
    """Torch threads per local worker: the machine's cores shared out, at least one."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def needs_gpu(device: str | None) -> bool:
    """A case run on a CUDA device asks for the ``GPU`` resource."""
    return bool(device) and str(device).startswith("cuda")


@contextlib.contextmanager
def connect(spec: ClusterSpec, gpu: bool = False) -> Iterator[Client]:
    """A client on the cluster (a ``LocalCluster`` started and closed here for ``local:N``), its workers set up;
    the dashboard's address goes to the log."""
    if spec.address is None:
        with dask.config.set(WORKER_ENVIRON):
            cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                                   resources={GPU: 1} if gpu else None)
        client = Client(cluster)
        threads: int | None = spec.threads or torch_threads(spec.workers)
    else:
        cluster, threads = None, None
        try:
            client = Client(spec.address, timeout="20s")
        except OSError as error:
            raise InputError(f"--cluster {spec.address}: no Dask scheduler answers there ({error})") from None
    try:
        client.register_plugin(WorkerSetup(threads), name="qa-worker-setup")
        log.info("Dask dashboard: %s", client.dashboard_link)
        if gpu:
            _check_gpu_workers(client, spec)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _check_gpu_workers(client: Client, spec: ClusterSpec) -> None:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if not any(w.get("resources", {}).get(GPU) for w in workers):
        raise InputError(f"--cluster {spec.address}: no worker offers the GPU resource that --device cuda needs; "
                         "start the GPU workers with `dask worker ADDRESS --resources GPU=1`")


@dataclass(frozen=True)
class DaskCases:
    """The cases as tasks on ``client``'s cluster; outcomes as they complete."""

    client: Client

    def map(self, job: CaseJob, cases: Sequence[CaseSpec]) -> Iterator[CaseOutcome]:
        """Submit one task per case (the job without the case list: each task carries its own case)."""
        job = dataclasses.replace(job, options=dataclasses.replace(job.options, cases=()))
        resources = {GPU: 1} if needs_gpu(job.options.device) else None
        futures = {
            self.client.submit(run_on_worker, job, spec, key=f"case-{job.run_id}-{index}", pure=False,
                               resources=resources): spec
            for index, spec in enumerate(cases)
        }
        for future in as_completed(futures):
            try:
                yield future.result()
            except KilledWorker as error:
                spec = futures[future]
                sessions = session_factory(make_engine(job.options.database_url))
                yield record_failure(sessions, job.run_id, spec, "worker",
                                     f"every worker that ran it died ({error})", None)
                sessions.kw["bind"].dispose()


@dataclass(frozen=True)
class DaskPieces:
    """The protocol stage's pieces as tasks on ``client``'s cluster, one task per piece and step; the answers in
    the pieces' order (a :class:`~pipeline.batch.protocol_pieces.PieceRunner`)."""

    client: Client

    def fits(self, pieces: Sequence[Piece]) -> list[list[dict[str, object]]]:
        """:func:`~pipeline.batch.protocol_pieces.fit_piece` of each piece."""
        return self.client.gather(self.client.map(fit_on_worker, list(pieces), pure=False))

    def results(self, pieces: Sequence[Piece], fits: Sequence[Sequence[TemperatureFit]]) -> list[list[CaseRows]]:
        """:func:`~pipeline.batch.protocol_pieces.evaluate_piece` of each piece with its inserted fits, all gathered
        before the stage writes any: no write of its transaction then shuts a task's read out of a SQLite store."""
        return self.client.gather(self.client.map(evaluate_on_worker, list(pieces), [list(f) for f in fits],
                                                  pure=False))
