"""What every verb's arguments share: a parser whose mistakes are :class:`UsageError` (one line, exit code 2), and
argument types."""

from __future__ import annotations

import argparse
import json
import math
from datetime import date
from pathlib import Path

from pipeline.errors import InputError
from pipeline.metrics.settings import MetricSettings


class UsageError(InputError):
    """Bad command-line input, reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, raising :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def spacing(text: str) -> tuple[float, float, float]:
    """``Z,Y,X`` voxel size in mm, each finite and > 0."""
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be three numbers Z,Y,X in mm, got {text!r}") from error
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be three positive numbers Z,Y,X in mm, got {text!r}")
    return (values[0], values[1], values[2])


def temperature(text: str) -> float:
    """A temperature T of temperature scaling: finite and > 0."""
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from error
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text!r}")
    return value


def features(text: str) -> tuple[int, ...]:
    """Comma-separated feature counts per U-Net stage, at least two, each >= 1."""
    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be comma-separated feature counts, got {text!r}") from error
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be at least two positive feature counts, got {text!r}")
    return values


def metric_settings_file(text: str) -> MetricSettings:
    """A JSON file of metric settings (``{"roi_radius_mm": 10, "ece_mode": "classwise"}``; every field of
    :class:`~pipeline.metrics.settings.MetricSettings` that it leaves out keeps the spec's default)."""
    path = Path(text)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise argparse.ArgumentTypeError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(values, dict):
        raise argparse.ArgumentTypeError(f"{path}: expected a JSON object of metric settings")
    try:
        return MetricSettings.from_mapping(values)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{path}: {error}") from error


def day(text: str) -> date:
    """A calendar day, ``YYYY-MM-DD``."""
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be a day YYYY-MM-DD, got {text!r}") from error


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names (spaces around them ignored), at least one."""
    values = tuple(part.strip() for part in text.split(","))
    if not all(values):
        raise argparse.ArgumentTypeError(f"must be comma-separated names, none empty, got {text!r}")
    return values
