"""The code version stored with every processing: package version and a hash of the pipeline's sources."""

from __future__ import annotations

import functools
import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def code_version() -> str:
    """``<version>+<12 hex digits>``: the hash covers every ``.py`` file of ``pipeline/``, so any code change
    (a metric, the inference, the batch) makes the batch redo its cases."""
    try:
        base = version("uncertainty-qa")
    except PackageNotFoundError:
        base = "0.1.0"
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{base}+{digest.hexdigest()[:12]}"
