"""Benchmark of the inference grid: all 12 configurations of one case against the largest one alone.

Run::

    python -m benchmarks.inference_grid [--models models/demo/manifest.json] [--device cpu|cuda] [--seed 4242]

On one phantom case, in one process: (1) the whole grid (every configuration, each (member, view) pass once),
(2) the largest single configuration alone (the one with most passes), (3) the time per member pass, (4) the peak
resident memory of each (and CUDA's peak allocation on a GPU). The grid can never cost less than its unique passes
allow, so the ratio is printed beside that lower bound (unique passes of the grid / passes of the largest one).
Runs unchanged on a GPU machine (device auto-selected).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import SimpleITK as sitk
import torch

from benchmarks.memory import reset_peak_resident, status_kib
from pipeline.inference.engine import MemberPredictor, choose_device
from pipeline.inference.grid import IDENTITY, grid_for
from pipeline.inference.model_set import load_model_set_file
from pipeline.inference.pooling import predict_grid
from pipeline.phantoms.ct import generate_phantom

LOG = logging.getLogger("benchmarks.inference_grid")
TARGET_RATIO = 1.2
DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "models" / "demo" / "manifest.json"


def measured(run: Callable[[], object]) -> tuple[float, int]:
    """(seconds, peak extra resident bytes) of ``run``; Linux's VmHWM is reset first."""
    gc.collect()
    before = reset_peak_resident()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return seconds, (status_kib("VmHWM") - before) * 1024


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference_grid", description=__doc__)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="model-set JSON (default: demo models)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if present)")
    parser.add_argument("--seed", type=int, default=4242, help="phantom seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    model_set = load_model_set_file(args.models)
    predictor = MemberPredictor(model_set, choose_device(args.device))
    grid = grid_for(model_set, predictor.mirror_axes())
    largest = max(grid, key=lambda c: len(c.passes))
    phantom = generate_phantom(args.seed)
    image = sitk.GetImageFromArray(phantom.ct)
    image.SetSpacing(tuple(reversed(phantom.spacing)))
    case = predictor.preprocess(image)
    predictor.forward(case, model_set.members[0].name, IDENTITY)

    cuda = predictor.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(predictor.device)
    grid_s, grid_bytes = measured(lambda: predict_grid(predictor, image, grid))
    grid_gpu = torch.cuda.max_memory_allocated(predictor.device) if cuda else 0
    if cuda:
        torch.cuda.reset_peak_memory_stats(predictor.device)
    single_s, single_bytes = measured(lambda: predict_grid(predictor, image, [largest]))
    single_gpu = torch.cuda.max_memory_allocated(predictor.device) if cuda else 0
    members = [m.name for m in model_set.members]
    pass_s, _ = measured(lambda: [predictor.forward(case, m, IDENTITY) for m in members])

    unique = len(set().union(*(c.passes for c in grid)))
    ratio = grid_s / single_s
    bound = unique / len(largest.passes)
    out = sys.stdout
    out.write(
        f"inference grid benchmark: torch {torch.__version__}, device {predictor.device}, threads "
        f"{torch.get_num_threads()}, case {phantom.ct.shape} at {phantom.spacing} mm, {len(members)} members\n"
        f"  whole grid ({len(grid)} configurations, {unique} unique passes)   {grid_s:8.2f} s   "
        f"peak +{grid_bytes / 2**20:7.0f} MiB RSS{f', {grid_gpu / 2**20:.0f} MiB CUDA' if cuda else ''}\n"
        f"  largest alone ({largest.name}, {len(largest.passes)} passes)            {single_s:8.2f} s   "
        f"peak +{single_bytes / 2**20:7.0f} MiB RSS{f', {single_gpu / 2**20:.0f} MiB CUDA' if cuda else ''}\n"
        f"  per member pass (incl. mapping to the CT grid)        {pass_s / len(members):8.3f} s\n"
        f"  grid / largest = {ratio:.2f}x (target <= {TARGET_RATIO}x; lower bound from unique passes {bound:.2f}x)\n"
        f"  grid time per unique pass / largest's time per pass = "
        f"{(grid_s / unique) / (single_s / len(largest.passes)):.2f} (1.00 = no overhead for sharing)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
