"""The dashboard served in a child process on loopback, for the load benchmark and the multi-process tests.

:func:`serving` starts ``gunicorn -w N app:server`` (or the Flask development server, the peer) on a free port of
127.0.0.1 with the given environment (``QA_DATABASE_URL``, ``QA_ARTIFACTS_DIR``, ``QA_SECRET_KEY``, ...), waits
until it answers, yields its base URL and stops it (SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
DEV_SERVER = 0  # ``workers`` meaning the Flask development server (threaded), not gunicorn


def free_port() -> int:
    """A port of 127.0.0.1 free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(workers: int, port: int, threads: int = 1) -> list[str]:
    """gunicorn with ``workers`` sync workers (``threads`` > 1: gthread) on 127.0.0.1:``port``, or ``python app.py``
    (the development server) for :data:`DEV_SERVER`."""
    if workers == DEV_SERVER:
        return [sys.executable, "app.py"]
    return [sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", str(threads), "-b",
            f"127.0.0.1:{port}", "--timeout", "120", "--log-level", "warning", "app:server"]


@contextmanager
def serving(workers: int, environment: Mapping[str, str], threads: int = 1, start_timeout: float = 180,
            log: Path | None = None) -> Iterator[str]:
    """The app served by :func:`server_command` with ``environment`` added to this process's; yields its URL."""
    port = free_port()
    env = {**os.environ, **environment, "QA_HOST": "127.0.0.1", "QA_PORT": str(port)}
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below, after the server
    process = subprocess.Popen(server_command(workers, port, threads), cwd=ROOT, env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, base, start_timeout)
        yield base
    finally:
        _stop(process)
        if log:
            out.close()


def _wait_until_up(process: subprocess.Popen[bytes], base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {base} exited with {process.returncode} before answering")
        try:
            if requests.get(f"{base}/login", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server at {base} did not answer within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (gunicorn's master and workers), SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
