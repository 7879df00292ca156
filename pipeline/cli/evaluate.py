"""``python -m pipeline evaluate``: every metric of one probability map (or pooled members) against a reference,
as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.cli.parsing import metric_settings_file, spacing, temperature
from pipeline.errors import InputError
from pipeline.io.geometry import mismatch
from pipeline.io.maps import LoadedMap, read_labels, read_probabilities
from pipeline.metrics.pooling import pool_members
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import evaluate_case
from pipeline.metrics.temperature import log_probabilities
from pipeline.metrics.validation import check_probabilities
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def add_verbs(verbs: Any) -> None:
    """Add ``evaluate`` to ``python -m pipeline``'s sub-parsers."""
    evaluate = verbs.add_parser("evaluate", help="metrics of one probability map against a reference")
    evaluate.add_argument(
        "--probs", required=True, nargs="+",
        help="probability map(s): .npy (C,Z,Y,X), nnU-Net --save_probabilities .npz, or 4-D NIfTI; "
        "several files are ensemble members, pooled",
    )
    evaluate.add_argument(
        "--pooling", choices=("prob_mean", "logit_mean"),
        help="pooling of several members: mean probability (default) or softmax of the mean log-probability; "
        "overrides --settings",
    )
    evaluate.add_argument("--settings", type=metric_settings_file, default=MetricSettings(),
                          help="JSON file of metric settings (docs/metrics.md, 'Options'; default: the spec's)")
    evaluate.add_argument("--reference", required=True, help="reference label map: .npy (Z,Y,X) or NIfTI")
    evaluate.add_argument("--spacing", type=spacing, help="voxel size Z,Y,X in mm (default: from NIfTI)")
    evaluate.add_argument("--temperature", type=temperature,
                          help="temperature T of TS (default: none); applied to each member's ln p before pooling "
                               "under the settings' temperature_mode per_member, to the pooled map otherwise")
    evaluate.add_argument("--json", help="write the JSON here instead of stdout")
    evaluate.set_defaults(handler=evaluate_command)


def _resolve_spacing(
    given: tuple[float, float, float] | None,
    from_probs: tuple[float, float, float] | None,
    from_labels: tuple[float, float, float] | None,
) -> tuple[float, float, float]:
    if given is not None:
        return given
    if from_probs and from_labels and not all(
        math.isclose(a, b, rel_tol=1e-5) for a, b in zip(from_probs, from_labels, strict=True)
    ):
        raise InputError(f"the probability map's spacing {from_probs} differs from the reference's {from_labels}")
    spacing = from_probs or from_labels
    if spacing is None:
        raise InputError("no spacing: give --spacing Z,Y,X (mm) for .npy inputs")
    return spacing


def _same_grid(loaded: LoadedMap, first: LoadedMap, what: str) -> None:
    """Refuse ``loaded`` when both files record a grid and the grids differ (both are named in the message)."""
    if loaded.geometry is None or first.geometry is None:
        return
    differs = mismatch(first.geometry, loaded.geometry)
    if differs:
        raise InputError(f"{loaded.path}: {what} grid differs from the probability map's ({first.path}): {differs}; "
                         f"{what} {loaded.geometry.describe()}; probabilities {first.geometry.describe()}")


def _pooled_members(paths: Sequence[str], settings: MetricSettings, max_voxels: int, member_temperature: float = 1.0
                    ) -> tuple[LoadedMap, NDArray[np.float32]]:
    """Read member probability maps and pool them (one file: used as is), each member's ln p scaled by
    ``member_temperature`` (the ``per_member`` temperature mode)."""
    members = [read_probabilities(Path(p), max_voxels) for p in paths]
    first = members[0]
    for member in members[1:]:
        if member.array.shape != first.array.shape:
            raise InputError(
                f"{member.path}: shape {member.array.shape} differs from {first.path}'s {first.array.shape}"
            )
        _same_grid(member, first, "member")
    if len(members) == 1:
        return first, first.array
    for member in members:
        try:
            check_probabilities(member.array, settings.sum_tolerance, name=str(member.path))
        except ValueError as error:
            raise InputError(str(error)) from error
    pooled = pool_members((log_probabilities(m.array) for m in members), settings.pooling, member_temperature)
    return first, pooled


def evaluate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Compute the whole suite for one probability map (or pooled members) and a reference; JSON out. A reference
    whose NIfTI grid (size, spacing, origin, direction) differs from the probability map's is refused."""
    metric_settings = replace(args.settings, pooling=args.pooling) if args.pooling else args.settings
    per_member = metric_settings.temperature_mode == "per_member" and len(args.probs) > 1
    member_temperature = args.temperature if per_member and args.temperature is not None else 1.0
    first, probs = _pooled_members(args.probs, metric_settings, settings.max_voxels, member_temperature)
    labels = read_labels(Path(args.reference), settings.max_voxels)
    _same_grid(labels, first, "reference")
    spacing = _resolve_spacing(args.spacing, first.spacing, labels.spacing)
    try:
        result = evaluate_case(probs, labels.array, spacing, metric_settings,
                               temperature=None if per_member else args.temperature)
    except ValueError as error:
        raise InputError(f"--probs {first.path} against --reference {labels.path}: {error}") from error
    document = result.metrics.to_dict() | {"spacing_mm": list(spacing), "members": len(args.probs),
                                           "settings": asdict(metric_settings)}
    text = json.dumps(document, indent=2, allow_nan=False)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
        log.info("wrote %s", args.json)
    else:
        sys.stdout.write(text + "\n")
    return 0
