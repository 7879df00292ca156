"""Command line of the pipeline: ``python -m pipeline evaluate`` and ``python -m pipeline demo``.

Bad input gets a one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import evaluate_case
from pipeline.readers import read_labels, read_probabilities

log = logging.getLogger("pipeline")

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Bad command-line input, reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _spacing(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be three numbers Z,Y,X in mm, got {text!r}") from error
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be three positive numbers Z,Y,X in mm, got {text!r}")
    return (values[0], values[1], values[2])


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
        raise UsageError(f"the probability map's spacing {from_probs} differs from the reference's {from_labels}")
    spacing = from_probs or from_labels
    if spacing is None:
        raise UsageError("no spacing: give --spacing Z,Y,X (mm) for .npy inputs")
    return spacing


def evaluate_command(args: argparse.Namespace) -> int:
    """Compute the whole suite for one probability map and reference; write JSON to --json or stdout."""
    probs = read_probabilities(Path(args.probs))
    labels = read_labels(Path(args.reference))
    spacing = _resolve_spacing(args.spacing, probs.spacing, labels.spacing)
    try:
        result = evaluate_case(probs.array, labels.array, spacing, MetricSettings(), temperature=args.temperature)
    except ValueError as error:
        raise ValueError(f"--probs {probs.path} against --reference {labels.path}: {error}") from error
    document = result.metrics.to_dict() | {"spacing_mm": list(spacing)}
    text = json.dumps(document, indent=2, allow_nan=False)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
        log.info("wrote %s", args.json)
    else:
        sys.stdout.write(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pipeline``."""
    parser = _Parser(prog="python -m pipeline", description="Budget-aware uncertainty QA for auto-segmentation.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    evaluate = verbs.add_parser("evaluate", help="metrics of one probability map against a reference")
    evaluate.add_argument("--probs", required=True, help="probability map: .npy (C,Z,Y,X) or 4-D NIfTI")
    evaluate.add_argument("--reference", required=True, help="reference label map: .npy (Z,Y,X) or NIfTI")
    evaluate.add_argument("--spacing", type=_spacing, help="voxel size Z,Y,X in mm (default: from NIfTI)")
    evaluate.add_argument("--temperature", type=float, help="temperature T of TS (default: none)")
    evaluate.add_argument("--json", help="write the JSON here instead of stdout")
    evaluate.set_defaults(handler=evaluate_command)
    demo = verbs.add_parser("demo", help="the demo on synthetic cases")
    demo.add_argument("--workdir", default="var/demo", help="folder for the demo's files")
    demo.set_defaults(handler=_demo_command)
    return parser


def _demo_command(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(Path(args.workdir))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except (ValueError, OSError) as error:
        message = str(error).replace("\n", " ")
        sys.stderr.write(f"error: {message}\n")
        return EXIT_BAD_INPUT
