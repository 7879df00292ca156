"""The dashboard behind gunicorn under concurrent signed-in users: ``python -m benchmarks.serve_load [--workers 2]``.

One command, loopback only, bounded (``--iterations`` per user and ``--time-limit``), and it stops by itself: it
creates a PostgreSQL database of its own next to ``--admin-url``'s (dropped at the end), seeds it
(``benchmarks/store_seed.py``: ``--patients`` phantom patients × the 12-configuration grid under a 5-repeat protocol,
512 × 512 voxel maps for two cases), creates ``--users`` reviewer accounts, then for each server in turn — the peer
first (``--peer-workers``, default ``gunicorn -w 1``; 0 is the Flask development server), then ``gunicorn -w
--workers`` — starts it (``benchmarks/served.py``), signs every user in through the login form, and lets the users
work at once, each in its own thread: per iteration it opens the cohort page (Dash Pages' routing callback, then the
table and reliability-diagram callbacks, as the browser calls them) and changes slices in the slice browser
(``--slices`` axial slice changes of a case with maps, two overlays, a random slice each), with a think time
between requests (``--think`` seconds on average, uniform from half to one and a half of it), then stops the
server. Before the load one user opens the cohort page twice per worker (the cold first computations, reported
apart as ``warm_up_before_load``). Per server: p50 / p95 / max per request kind, the errors (any answer other than
200/204, or no answer), the requests per second, and whether it holds the target (issue 15: p95 ≤ 300 ms and no
error for 50 users).

The users' threads run on the same machine as the server: on a small machine they take CPU from it, which the
figures include; so does anything else running there (the 1-minute load average before and after the load is
reported with the cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.dashboard import cohort_requests, plane_request, rounded
from benchmarks.http_client import PASSWORD, Browser, callback_body, ensure_user, page_body
from benchmarks.served import DEV_SERVER, serving

log = logging.getLogger("benchmarks.serve_load")
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_P95_MS, TARGET_USERS = 300.0, 50
MAP_SHAPE = (100, 512, 512)


@dataclass
class Recorder:
    """Latencies per request kind and the errors, from every user's thread."""

    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, kind: str, call: Callable[[], Any]) -> None:
        began = time.perf_counter()
        try:
            response = call()
            failed = None if response.status_code in (200, 204) else f"{kind}: HTTP {response.status_code}"
        except Exception as error:  # a refused or timed-out request is an error to count
            failed = f"{kind}: {type(error).__name__}: {error}"
        elapsed = time.perf_counter() - began
        with self.lock:
            self.times[kind].append(elapsed)
            if failed:
                self.errors.append(failed[:300])

    def summary(self, seconds: float) -> dict[str, Any]:
        kinds = {kind: {"n": len(v), "p50_ms": 1000 * statistics.median(v), "p95_ms": 1000 * _percentile(v, 95),
                        "max_ms": 1000 * max(v)} for kind, v in sorted(self.times.items())}
        every = [t for v in self.times.values() for t in v]
        return {"requests": len(every), "seconds": seconds, "requests_per_second": len(every) / seconds,
                "all": {"p50_ms": 1000 * statistics.median(every), "p95_ms": 1000 * _percentile(every, 95),
                        "max_ms": 1000 * max(every)},
                "kinds": kinds, "errors": len(self.errors), "first_errors": self.errors[:5]}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Scenario:
    """What each user does: the seeded store's ids and the load's bounds."""

    protocol_id: int
    configurations: list[int]
    case: str
    configuration: int
    iterations: int
    slices: int
    think: float
    deadline: float


def _user(browser: Browser, scenario: Scenario, recorder: Recorder, seed: int) -> None:
    chance = random.Random(seed)
    table, diagram = cohort_requests(scenario.protocol_id, 5, ["all foreground", "lymph_nodes", "spleen"],
                                     scenario.configurations[:3])
    z, y, x = MAP_SHAPE

    def pause() -> None:
        time.sleep(scenario.think * chance.uniform(0.5, 1.5))

    for _ in range(scenario.iterations):
        for kind, body in (("cohort page (routing)", page_body("/cohort")), ("cohort table", callback_body(*table)),
                           ("cohort diagram", callback_body(*diagram))):
            if time.monotonic() > scenario.deadline:
                return
            recorder.timed(kind, lambda body=body: browser.post(body))
            pause()
        for _ in range(scenario.slices):
            if time.monotonic() > scenario.deadline:
                return
            slices = {"axial": chance.randrange(z), "coronal": y // 2, "sagittal": x // 2}
            body = callback_body(*plane_request("axial", slices, scenario.configuration, ["entropy", "reference"],
                                                "slice-axial.data", scenario.case, 0.02))
            recorder.timed("slice change", lambda body=body: browser.post(body))
            pause()


def warm_up(base: str, user: str, scenario: Scenario, times: int) -> dict[str, Any]:
    """One user opening the cohort page ``times`` times, one after another, before the load (each worker computes
    its cohort table and diagram once: the first requests of a worker are the cold ones)."""
    recorder, browser = Recorder(), Browser(base, user, PASSWORD)
    table, diagram = cohort_requests(scenario.protocol_id, 5, ["all foreground", "lymph_nodes", "spleen"],
                                     scenario.configurations[:3])
    began = time.perf_counter()
    for _ in range(times):
        for kind, body in (("cohort page (routing)", page_body("/cohort")), ("cohort table", callback_body(*table)),
                           ("cohort diagram", callback_body(*diagram))):
            recorder.timed(kind, lambda body=body: browser.post(body))
    browser.close()
    return recorder.summary(time.perf_counter() - began)


def load(base: str, users: list[str], scenario: Scenario) -> dict[str, Any]:
    """Sign every user in (timed), then let them work at once; the :meth:`Recorder.summary` of both."""
    sign_ins, recorder = Recorder(), Recorder()
    browsers: list[Browser] = []

    def sign_in(name: str) -> None:
        began = time.perf_counter()
        browsers.append(Browser(base, name, PASSWORD))
        with sign_ins.lock:
            sign_ins.times["sign-in (form, redirect, app shell)"].append(time.perf_counter() - began)

    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(sign_in, users))
    began = time.perf_counter()
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(lambda pair: _user(pair[1], scenario, recorder, pair[0]), enumerate(browsers)))
    figures = recorder.summary(time.perf_counter() - began)
    figures["sign_in"] = sign_ins.summary(1.0)["kinds"]
    for browser in browsers:
        browser.close()
    return figures


@contextmanager
def own_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database on ``admin_url``'s server, dropped afterwards; yields its URL."""
    from sqlalchemy import create_engine, text

    name = f"qa_serve_load_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _seed(url: str, artifacts: Path, patients: int) -> Any:
    from alembic import command

    from benchmarks.store_seed import FULL_GRID, SeedPlan, seed_store
    from pipeline.store.database import alembic_config

    command.upgrade(alembic_config(url), "head")
    plan = SeedPlan(patients=patients, configurations=FULL_GRID, repeats=5, map_cases=2,
                    map_configurations=("DE+TTA",), map_shape=MAP_SHAPE, spacing_xyz=(0.9, 0.9, 2.5))
    began = time.perf_counter()
    seeded = seed_store(url, artifacts, plan)
    log.info("seeded %d patients in %.0f s", patients, time.perf_counter() - began)
    return seeded


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Seed, then serve and load with the peer and with ``--workers``; every figure as a JSON-ready dict."""
    with own_database(args.admin_url) as url:
        seeded = _seed(url, workdir / "artifacts", args.patients)
        users = [f"load-user-{i:02d}" for i in range(args.users)]
        for name in users:
            ensure_user(url, name, "reviewer")
        environment = {"QA_DATABASE_URL": url, "QA_ARTIFACTS_DIR": str(workdir / "artifacts"),
                       "QA_EXPORTS_DIR": str(workdir / "exports"), "QA_SECRET_KEY": uuid.uuid4().hex}
        figures: dict[str, Any] = {"store": "postgresql", "patients": args.patients, "users": args.users,
                                   "iterations_per_user": args.iterations, "slice_changes_per_iteration": args.slices,
                                   "think_seconds": args.think, "servers": {}}
        for workers in (args.peer_workers, args.workers):
            label = "flask development server" if workers == DEV_SERVER else f"gunicorn -w {workers}"
            log.info("%s: starting, signing in %d users, then the load", label, args.users)
            with serving(workers, environment, log=workdir / "server.log") as base:
                scenario = Scenario(seeded.protocol_id, list(seeded.configurations.values()), seeded.map_cases[0],
                                    seeded.configurations["DE+TTA"], args.iterations, args.slices, args.think,
                                    time.monotonic() + args.time_limit)
                warm = warm_up(base, users[0], scenario, 2 * max(1, workers))
                before = os.getloadavg()[0]
                result = load(base, users, scenario)
                result["load_average_1min"] = {"before": before, "after": os.getloadavg()[0], "cores": os.cpu_count()}
                result["warm_up_before_load"] = {"requests": warm["requests"], "errors": warm["errors"],
                                                 "kinds": warm["kinds"]}
            result["holds_target"] = result["errors"] == 0 and result["all"]["p95_ms"] <= TARGET_P95_MS
            figures["servers"][label] = result
            log.info("%s: %s", label, json.dumps(result["all"]))
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers measured (default 2)")
    parser.add_argument("--peer-workers", type=int, default=1,
                        help="the peer in the same run: gunicorn workers, 0 for the Flask development server "
                             "(default 1)")
    parser.add_argument("--users", type=int, default=TARGET_USERS, help=f"signed-in users (default {TARGET_USERS})")
    parser.add_argument("--iterations", type=int, default=2, help="cohort page + slice changes per user (default 2)")
    parser.add_argument("--slices", type=int, default=10, help="slice changes per iteration (default 10)")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between a user's requests (default 1)")
    parser.add_argument("--time-limit", type=float, default=120, help="seconds of load per server at most (120)")
    parser.add_argument("--patients", type=int, default=200, help="phantom patients seeded (default 200)")
    parser.add_argument("--admin-url", default=ADMIN_URL, help=f"PostgreSQL to create the database on ({ADMIN_URL})")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped early: the server and the database go too
    with tempfile.TemporaryDirectory(prefix="qa-serve-load-") as folder:
        figures = run(args, Path(folder))
    text = json.dumps(rounded(figures), indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
