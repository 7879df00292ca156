"""Command line of the pipeline: ``python -m pipeline evaluate``, ``predict``, ``demo``, ``train-demo-models`` and
the store's and the review's verbs (:mod:`pipeline.batch.command`, :mod:`pipeline.review.command`).

One error handler (:func:`main`): a user's mistake (:class:`~pipeline.errors.UserError`, or the operating system
refusing a path) gets a one-line message on stderr and exit code 2, never a traceback; anything else is an internal
error, logged with its traceback, exit code 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.batch.command import add_store_verbs
from pipeline.errors import EXIT_BAD_INPUT, EXIT_FAILURE, InputError, UserError, one_line
from pipeline.io.maps import LoadedMap, read_labels, read_probabilities
from pipeline.metrics.pooling import pool_members
from pipeline.metrics.settings import MetricSettings, PoolingRule
from pipeline.metrics.suite import evaluate_case
from pipeline.metrics.temperature import log_probabilities
from pipeline.metrics.validation import check_probabilities
from pipeline.review.command import add_review_verbs

log = logging.getLogger("pipeline")


class UsageError(InputError):
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


def _pooled_members(paths: Sequence[str], rule: PoolingRule) -> tuple[LoadedMap, NDArray[np.float32]]:
    """Read member probability maps and pool them (one file: used as is)."""
    members = [read_probabilities(Path(p)) for p in paths]
    first = members[0]
    for member in members[1:]:
        if member.array.shape != first.array.shape:
            raise InputError(
                f"{member.path}: shape {member.array.shape} differs from {first.path}'s {first.array.shape}"
            )
    if len(members) == 1:
        return first, first.array
    for member in members:
        try:
            check_probabilities(member.array, MetricSettings().sum_tolerance, name=str(member.path))
        except ValueError as error:
            raise InputError(str(error)) from error
    pooled = pool_members((log_probabilities(m.array) for m in members), rule)
    return first, pooled


def evaluate_command(args: argparse.Namespace) -> int:
    """Compute the whole suite for one probability map (or pooled members) and a reference; JSON out."""
    first, probs = _pooled_members(args.probs, args.pooling)
    labels = read_labels(Path(args.reference))
    spacing = _resolve_spacing(args.spacing, first.spacing, labels.spacing)
    try:
        result = evaluate_case(probs, labels.array, spacing, MetricSettings(), temperature=args.temperature)
    except ValueError as error:
        raise InputError(f"--probs {first.path} against --reference {labels.path}: {error}") from error
    document = result.metrics.to_dict() | {"spacing_mm": list(spacing), "members": len(args.probs)}
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
    evaluate.add_argument(
        "--probs", required=True, nargs="+",
        help="probability map(s): .npy (C,Z,Y,X), nnU-Net --save_probabilities .npz, or 4-D NIfTI; "
        "several files are ensemble members, pooled",
    )
    evaluate.add_argument(
        "--pooling", choices=("prob_mean", "logit_mean"), default="prob_mean",
        help="pooling of several members: mean probability (default) or softmax of the mean log-probability",
    )
    evaluate.add_argument("--reference", required=True, help="reference label map: .npy (Z,Y,X) or NIfTI")
    evaluate.add_argument("--spacing", type=_spacing, help="voxel size Z,Y,X in mm (default: from NIfTI)")
    evaluate.add_argument("--temperature", type=float, help="temperature T of TS (default: none)")
    evaluate.add_argument("--json", help="write the JSON here instead of stdout")
    evaluate.set_defaults(handler=evaluate_command)
    predict = verbs.add_parser("predict", help="every uncertainty configuration's probabilities for one CT")
    predict.add_argument("--models", required=True, help="nnU-Net results folder, or a model-set JSON file")
    predict.add_argument("--folds", nargs="+", default=["0", "1", "2", "3", "4"], help="fold members (DE)")
    predict.add_argument("--checkpoint", default="checkpoint_final.pth", help="checkpoint file of each fold")
    predict.add_argument("--checkpoint-run", help="fold folder of the checkpoint-ensemble run (CE)")
    predict.add_argument("--run-checkpoints", nargs="+", help="checkpoint files of that run (CE members)")
    predict.add_argument("--ct", required=True, help="CT image file or DICOM series folder")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument("--temperatures", help="JSON: configuration name -> fitted temperature (for +TS)")
    predict.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if present)")
    predict.set_defaults(handler=_predict_command)
    demo = verbs.add_parser("demo", help="demo models on phantoms and a real CT, into the embedded store")
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"), help="folder for the demo's input files")
    demo.add_argument("--models", type=Path, help="model-set JSON or manifest (default: models/demo)")
    demo.add_argument("--cases", type=int, default=6, help="held-out phantoms (seeds 9000, 9001, …; default 6)")
    demo.add_argument("--repeats", type=int, default=3, help="calibration/test repeats of the protocol (default 3)")
    demo.add_argument("--no-tta", action="store_true", help="leave the TTA configurations out (8x fewer passes)")
    demo.set_defaults(handler=_demo_command)
    train = verbs.add_parser("train-demo-models", help="train the tiny nnU-Net demo models on phantoms (CPU)")
    train.add_argument("--out", type=Path, help="exported models and manifest.json (default models/demo)")
    train.add_argument("--workdir", type=Path, help="nnU-Net raw/preprocessed/results folders (default var/nnunet)")
    train.add_argument("--cases", type=int, help="training phantoms (default 20)")
    train.add_argument("--held-out", type=int, help="held-out phantoms for the Dice check (default 8)")
    train.add_argument("--folds", type=int, help="deep-ensemble folds of nnU-Net's 5-fold split (default 5)")
    train.add_argument("--cycles", type=int, help="checkpoint-ensemble cosine cycles (default 3)")
    train.add_argument("--epochs", type=int, help="epochs per fold model and per cycle (default 32)")
    train.add_argument("--iterations", type=int, help="training iterations per epoch (default 25)")
    train.add_argument("--seed", type=int, help="base seed of phantoms and networks (default 0)")
    train.add_argument("--features", type=_features, help="features per U-Net stage (default 8,16,32,64)")
    train.add_argument("--threads", type=int, help="torch threads (default 1: stable beside other jobs)")
    train.add_argument("--smoke", action="store_true",
                       help="wiring-only run: 6 cases, 2 folds x 5 iterations, CE 2 cycles x 5 iterations, "
                            "into var/smoke unless --out/--workdir are given")
    train.set_defaults(handler=_train_demo_models_command)
    add_store_verbs(verbs)
    add_review_verbs(verbs)
    return parser


def _features(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be comma-separated feature counts, got {text!r}") from error
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be at least two positive feature counts, got {text!r}")
    return values


def _predict_command(args: argparse.Namespace) -> int:
    from pipeline.inference.command import predict_command

    return predict_command(args)


def _demo_command(args: argparse.Namespace) -> int:
    from pipeline.demo import DEMO_MODELS, run_demo

    if args.cases < 2 or args.repeats < 1:
        raise UsageError("--cases must be >= 2 and --repeats >= 1")
    return run_demo(args.workdir, args.models or DEMO_MODELS, args.cases, args.repeats, tta=not args.no_tta)


def _train_demo_models_command(args: argparse.Namespace) -> int:
    from pipeline.nnunet.training import SMOKE, TrainingOptions, train_demo_models

    names = ("out", "workdir", "cases", "held_out", "folds", "cycles", "epochs", "iterations", "seed", "features",
             "threads")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    options = TrainingOptions(**({**SMOKE, **given} if args.smoke else given))  # type: ignore[arg-type]
    manifest, problems = train_demo_models(options)
    for problem in problems:
        log.error("%s", problem)
    log.info("manifest: %s", manifest)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except (UserError, OSError) as error:  # OSError: a path the operating system refuses (missing, unwritable)
        sys.stderr.write(f"error: {one_line(error)}\n")
        return EXIT_BAD_INPUT
    except Exception as error:
        log.exception("internal error")
        sys.stderr.write(f"internal error ({type(error).__name__}): {one_line(error)}; the traceback is above\n")
        return EXIT_FAILURE
