"""Where the store lives: ``QA_DATABASE_URL``, ``QA_ARTIFACTS_DIR`` and the dashboard's ``QA_EXPORTS_DIR``, with
embedded defaults under ``var/``."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATABASE = Path("var") / "qa.sqlite3"
DEFAULT_ARTIFACTS = Path("var") / "artifacts"
DEFAULT_EXPORTS = Path("var") / "exports"


def database_url(cwd: Path | None = None) -> str:
    """``QA_DATABASE_URL``, or a SQLite file ``var/qa.sqlite3`` under ``cwd`` (default: the working directory)."""
    url = os.environ.get("QA_DATABASE_URL", "").strip()
    if url:
        return url
    path = (cwd or Path.cwd()) / DEFAULT_DATABASE
    return f"sqlite:///{path.resolve()}"


def artifacts_dir(cwd: Path | None = None) -> Path:
    """``QA_ARTIFACTS_DIR``, or ``var/artifacts`` under ``cwd`` (default: the working directory)."""
    value = os.environ.get("QA_ARTIFACTS_DIR", "").strip()
    return Path(value).resolve() if value else ((cwd or Path.cwd()) / DEFAULT_ARTIFACTS).resolve()


def exports_dir(cwd: Path | None = None) -> Path:
    """``QA_EXPORTS_DIR``, or ``var/exports`` under ``cwd``: where the dashboard keeps the files it exported (the
    audit log names each one with its SHA-256)."""
    value = os.environ.get("QA_EXPORTS_DIR", "").strip()
    return Path(value).resolve() if value else ((cwd or Path.cwd()) / DEFAULT_EXPORTS).resolve()
