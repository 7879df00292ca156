"""``python -m pipeline predict``: every configuration's probabilities for one CT, written as 4-D NIfTI (torch is
imported only when the verb runs)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.inference.model_set import ModelSet, load_model_set, load_model_set_file
from pipeline.io.ct import read_ct
from pipeline.io.maps import write_probabilities
from pipeline.metrics.temperature import apply_temperature
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def add_verbs(verbs: Any) -> None:
    """Add ``predict`` to ``python -m pipeline``'s sub-parsers."""
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
    predict.add_argument("--grid-mapping", choices=("pooled", "per_pass"), default="pooled",
                         help="pool on the network's grid and map each configuration once (pooled, default), or map "
                              "every pass to the CT grid first (per_pass, validation)")
    predict.set_defaults(handler=predict_command)


def model_set_from_args(args: argparse.Namespace) -> ModelSet:
    """``--models`` is a results folder (with ``--folds``/``--checkpoint-run``) or a model-set JSON file."""
    models = Path(args.models)
    if models.suffix == ".json":
        return load_model_set_file(models)
    run = Path(args.checkpoint_run) if args.checkpoint_run else None
    return load_model_set(models, args.folds, args.checkpoint, run, args.run_checkpoints or ())


def _temperatures(path: str | None) -> dict[str, float]:
    if not path:
        return {}
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not readable JSON ({error})") from error
    if not isinstance(values, dict) or not all(isinstance(v, int | float) and v > 0 for v in values.values()):
        raise InputError(f"{path}: expected an object of configuration name -> temperature > 0")
    return {str(k): float(v) for k, v in values.items()}


def predict_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the grid on one CT; write <out>/<configuration>.nii.gz (one configuration at a time) and
    <out>/summary.json (``seconds``: preprocessing, passes and mapping, not writing)."""
    from pipeline.inference.engine import MemberPredictor, choose_device  # torch loads only for this verb
    from pipeline.inference.grid import grid_for
    from pipeline.inference.pooling import predict_grid

    model_set = model_set_from_args(args)
    image = read_ct(Path(args.ct), max_voxels=settings.max_voxels).image
    temperatures = _temperatures(args.temperatures)
    predictor = MemberPredictor(model_set, choose_device(args.device))
    predictor.check_extent(image, str(args.ct))
    grid = grid_for(model_set, predictor.mirror_axes())
    start = time.perf_counter()
    prediction = predict_grid(predictor, image, grid, grid_mapping=args.grid_mapping)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    scaled = {configuration.name for configuration in grid if configuration.temperature_scaling}
    for name, probs in prediction:
        if name in scaled and name not in temperatures:
            skipped.append(name)
        else:
            calibrated = apply_temperature(probs, temperatures[name]) if name in scaled else probs
            write_probabilities(out / f"{name}.nii.gz", calibrated, image)
            written.append(name)
            del calibrated
        del probs
    seconds += prediction.seconds_mapping
    summary = {
        "ct": str(args.ct),
        "model_set": model_set.identity(),
        "labels": list(model_set.labels),
        "device": str(predictor.device),
        "grid_mapping": args.grid_mapping,
        "forward_passes": prediction.forward_passes,
        "mappings": predictor.mappings,
        "seconds": round(seconds, 3),
        "written": written,
        "skipped_without_temperature": skipped,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0

