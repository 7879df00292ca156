"""Where the store lives: ``QA_DATABASE_URL`` and ``QA_ARTIFACTS_DIR``, with embedded defaults under ``var/``."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATABASE = Path("var") / "qa.sqlite3"
DEFAULT_ARTIFACTS = Path("var") / "artifacts"


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
