"""``python -m pipeline demo`` (the demo cohort into the embedded store) and ``train-demo-models`` (the tiny nnU-Net
demo models, trained on phantoms on the CPU)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pipeline.cli.parsing import features
from pipeline.errors import InputError
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def add_verbs(verbs: Any) -> None:
    """Add ``demo`` and ``train-demo-models`` to ``python -m pipeline``'s sub-parsers."""
    demo = verbs.add_parser("demo", help="demo models on phantoms and a real CT, into the embedded store")
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"), help="folder for the demo's input files")
    demo.add_argument("--models", type=Path, help="model-set JSON or manifest (default: models/demo)")
    demo.add_argument("--cases", type=int, default=10, help="held-out phantoms (seeds 9000, 9001, …; default 10, the "
                      "last 4 (at most half) on the second simulated scanner)")
    demo.add_argument("--repeats", type=int, default=3, help="calibration/test repeats of the protocol (default 3)")
    demo.add_argument("--no-tta", action="store_true", help="leave the TTA configurations out (8x fewer passes)")
    demo.add_argument("--no-sweep", action="store_true",
                      help="leave the sweep's sub-configurations out (the demo stores them: `run --sweep`)")
    demo.add_argument("--no-study", action="store_true",
                      help="leave the simulated review study out (scripted readers on the phantoms)")
    demo.set_defaults(handler=demo_command)
    train = verbs.add_parser("train-demo-models", help="train the tiny nnU-Net demo models on phantoms (CPU)")
    train.add_argument("--out", type=Path, help="exported models and manifest.json (default models/demo)")
    train.add_argument("--workdir", type=Path, help="nnU-Net raw/preprocessed/results folders (default var/nnunet)")
    train.add_argument("--cases", type=int, help="training phantoms (default 20)")
    train.add_argument("--held-out", type=int, help="held-out phantoms for the Dice check (default 8)")
    train.add_argument("--folds", type=int, help="deep-ensemble folds of nnU-Net's 5-fold split (default 3)")
    train.add_argument("--cycles", type=int, help="checkpoint-ensemble cosine cycles (default 3)")
    train.add_argument("--epochs", type=int, help="training budget of every member in epochs: each DE fold, and the "
                       "CE run in all, in --cycles cycles (default 60; a multiple of --cycles)")
    train.add_argument("--iterations", type=int, help="training iterations per epoch (default 25)")
    train.add_argument("--seed", type=int, help="base seed of phantoms and networks (default 0)")
    train.add_argument("--features", type=features, help="features per U-Net stage (default 8,16,32,64)")
    train.add_argument("--threads", type=int, help="torch threads (default 1: stable beside other jobs)")
    train.add_argument("--configuration", choices=("3d", "2d"),
                       help="3d (default: 3d_tiny, the demo models) or 2d (2d_tiny, 2-D convolutions slice by "
                            "slice; default folders models/demo-2d and var/nnunet-2d, var/smoke-2d with --smoke)")
    train.add_argument("--smoke", action="store_true",
                       help="wiring-only run: 6 cases, 2 folds x 5 iterations, CE 2 cycles x 5 iterations, "
                            "into var/smoke unless --out/--workdir are given")
    train.set_defaults(handler=train_demo_models_command)


def demo_command(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.demo import DEMO_MODELS, run_demo

    if args.cases < 2 or args.repeats < 1:
        raise InputError("--cases must be >= 2 and --repeats >= 1")
    return run_demo(settings, args.workdir, args.models or DEMO_MODELS, args.cases, args.repeats, tta=not args.no_tta,
                    sweep=not args.no_sweep, study=not args.no_study)


def train_demo_models_command(args: argparse.Namespace, _settings: Settings) -> int:
    from pipeline.nnunet.training import train_demo_models, training_options

    names = ("out", "workdir", "cases", "held_out", "folds", "cycles", "epochs", "iterations", "seed", "features",
             "threads", "configuration")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    manifest, problems = train_demo_models(training_options(given, smoke=args.smoke))
    for problem in problems:
        log.error("%s", problem)
    log.info("manifest: %s", manifest)
    return 1 if problems else 0
