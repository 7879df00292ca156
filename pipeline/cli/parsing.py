"""What every verb's arguments share: a parser whose mistakes are :class:`UsageError` (one line, exit code 2), and
argument types."""

from __future__ import annotations

import argparse
import math

from pipeline.errors import InputError


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


def features(text: str) -> tuple[int, ...]:
    """Comma-separated feature counts per U-Net stage, at least two, each >= 1."""
    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be comma-separated feature counts, got {text!r}") from error
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be at least two positive feature counts, got {text!r}")
    return values
