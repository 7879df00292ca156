"""``python -m pipeline train-demo-models``: the project's own tiny nnU-Net v2 models, trained on phantoms on CPU.

Steps, all through nnU-Net's Python API (no shell-outs):
1. a seeded phantom cohort (:mod:`pipeline.phantoms.ct`) written as nnU-Net raw data under the work folder;
2. fingerprint, planning and 3d_fullres preprocessing; the tiny configuration ``3d_tiny`` is added to the plans
   (same preprocessed data). With ``--configuration 2d`` it is ``2d_tiny`` (inheriting nnU-Net's ``2d``: 2-D
   convolutions over (Y, X), slice by slice), trained on the 3d_fullres data when :func:`shares_preprocessed_data`
   (nnU-Net's 2d preprocessing would write the same arrays), else on nnU-Net's own 2d preprocessing; its default
   folders are ``models/demo-2d`` and ``var/nnunet-2d`` (``var/smoke-2d`` for ``--smoke``), so a 2-D run never
   clears the 3-D models;
3. the deep ensemble (DE): folds 0..K-1 of nnU-Net's 5-fold split, :class:`~pipeline.nnunet.trainers.
   nnUNetTrainerTinyCPU`, ``epochs`` epochs of ``iterations`` iterations, network seeds ``seed * 1000 + fold``;
4. the checkpoint ensemble (CE): one run on fold 0's training cases, :class:`~pipeline.nnunet.trainers.
   nnUNetTrainerCheckpointEnsemble`, ``epochs`` epochs in all — the training budget of one DE member, so that DE
   and CE are compared at an equal budget per member — in M cosine cycles of ``epochs / M`` epochs, a checkpoint at
   each cycle's end (the last one has had exactly a DE member's budget), network seed ``seed * 1000 + 999``;
5. weights-only export (network_weights, trainer_name, inference_allowed_mirroring_axes, init_args.configuration)
   into a results folder that nnU-Net's predictor reads::

       <out>/Dataset501_TMLIPhantom/nnUNetTrainerTinyCPU__nnUNetPlans__3d_tiny/
           dataset.json, plans.json, fold_0/checkpoint_final.pth, ..., fold_<K-1>/checkpoint_final.pth
       <out>/Dataset501_TMLIPhantom/nnUNetTrainerCheckpointEnsemble__nnUNetPlans__3d_tiny/
           dataset.json, plans.json, fold_0/checkpoint_cycle_1.pth, ..., checkpoint_cycle_<M>.pth
       <out>/manifest.json

   (``2d_tiny`` in the folder names of a 2-D run);

6. Dice per class of every exported checkpoint on held-out phantoms (seeds never used for training), without
   test-time mirroring, against the phantoms' observer reference; all of it goes into manifest.json with each
   file's sha256 and size, the command, seeds, schedule and training times.

With nnUNet_n_proc_DA=0 and fixed seeds a run is deterministic (same thread count assumed).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import shlex
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from pipeline.errors import InputError
from pipeline.nnunet.compat import prepare_nnunet_environment
from pipeline.phantoms.ct import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING,
    LABELS,
    Phantom,
    generate_phantom,
    write_nnunet_raw,
)

if TYPE_CHECKING:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from pipeline.nnunet.trainers import Schedule, nnUNetTrainerTinyCPU

log = logging.getLogger(__name__)
Trainer = TypeVar("Trainer", bound="nnUNetTrainerTinyCPU")

DATASET_ID = 501
DATASET_NAME = "TMLIPhantom"
CASE_PREFIX = "phantom"
MANIFEST = "manifest.json"
HELD_OUT_OFFSET = 900  # held-out phantom seeds: seed * 1000 + 900 + j; training seeds: seed * 1000 + i, i < 900
CE_MEMBER = 999  # the CE run's network seed: seed * 1000 + 999
WEIGHTS_BUDGET_BYTES = 25 * 1024 * 1024
MIN_DICE = 0.6  # every DE fold and the CE run's last checkpoint, on every class of the held-out phantoms
TINY_CONFIGURATIONS = {"3d": ("3d_fullres", "3d_tiny"), "2d": ("2d", "2d_tiny")}
"""``--configuration`` → (the nnU-Net configuration the tiny one inherits from, the tiny configuration's name)."""


@dataclass(frozen=True)
class TrainingOptions:
    """What ``train-demo-models`` trains and where.

    Attributes:
        out: results folder (committed): the exported models and manifest.json.
        workdir: nnU-Net's raw, preprocessed and results folders (scratch).
        cases: training phantoms (nnU-Net's 5-fold split runs over them).
        held_out: evaluation phantoms, never trained on.
        folds: DE members, folds 0..folds-1 of the 5-fold split.
        cycles: CE members, cosine cycles of one run.
        epochs: the training budget of every member, in epochs: each DE model trains this many, and the CE run
            this many in all, ``epochs / cycles`` per cycle (a whole number).
        iterations: training iterations per epoch.
        val_iterations: nnU-Net validation iterations per epoch (pseudo Dice, for the logs).
        seed: base seed of phantoms and networks.
        features: features per stage of the tiny U-Net.
        processes: nnU-Net's pool size for fingerprinting and preprocessing.
        threads: torch threads for training and evaluation. 1 by default: on 2 cores, any other busy process
            (a test worker, a second job) makes a 2-thread step 3-14x slower, while 1 thread stays stable.
        smoke: a wiring-only run (tiny budget; Dice not checked).
        configuration: ``3d`` (``3d_tiny``, the demo models) or ``2d`` (``2d_tiny``): :data:`TINY_CONFIGURATIONS`.
    """

    out: Path = Path("models/demo")
    workdir: Path = Path("var/nnunet")
    cases: int = 20
    held_out: int = 8
    folds: int = 3
    cycles: int = 3
    epochs: int = 60
    iterations: int = 25
    val_iterations: int = 2
    seed: int = 0
    features: tuple[int, ...] = (8, 16, 32, 64)
    processes: int = 2
    threads: int = 1
    smoke: bool = False
    configuration: str = "3d"

    def __post_init__(self) -> None:
        if self.configuration not in TINY_CONFIGURATIONS:
            raise InputError(f"--configuration must be {' or '.join(TINY_CONFIGURATIONS)}, got {self.configuration!r}")
        if not 1 <= self.folds <= 5:
            raise InputError(f"--folds must be 1..5 (nnU-Net's 5-fold split), got {self.folds}")
        if not 5 <= self.cases < HELD_OUT_OFFSET:
            raise InputError(f"--cases must be 5..{HELD_OUT_OFFSET - 1} (5 folds need 5 cases), got {self.cases}")
        counts = (self.held_out, self.cycles, self.epochs, self.iterations, self.val_iterations, self.processes,
                  self.threads)
        if min(counts) < 1:
            raise InputError("--held-out, --cycles, --epochs, --iterations, --threads and processes must be >= 1")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")
        if self.epochs % self.cycles:
            raise InputError(f"--epochs ({self.epochs}) must be a multiple of --cycles ({self.cycles}): the CE run "
                             "trains one DE member's budget in cycles of equal length")

    def command(self) -> str:
        """The command line that reproduces this run."""
        parts = ["python", "-m", "pipeline", "train-demo-models", "--out", str(self.out), "--workdir",
                 str(self.workdir), "--cases", str(self.cases), "--held-out", str(self.held_out), "--folds",
                 str(self.folds), "--cycles", str(self.cycles), "--epochs", str(self.epochs), "--iterations",
                 str(self.iterations), "--seed", str(self.seed), "--features", ",".join(map(str, self.features)),
                 "--threads", str(self.threads)]
        if self.configuration != "3d":
            parts += ["--configuration", self.configuration]
        if self.smoke:
            parts.append("--smoke")
        return shlex.join(parts)


# A wiring-only run: 6 cases, 2 folds x 2 epochs x 5 iterations, CE 2 cycles x 1 epoch x 5 iterations; one pool
# worker for fingerprinting and preprocessing (each spawned worker costs seconds of imports).
SMOKE: dict[str, object] = {
    "cases": 6, "held_out": 2, "folds": 2, "cycles": 2, "epochs": 2, "iterations": 5, "val_iterations": 1,
    "processes": 1, "out": Path("var/smoke/models"), "workdir": Path("var/smoke/nnunet"), "smoke": True,
}
# A 2-D run's default folders (full and smoke): apart from the 3-D ones, which a run clears before it starts.
FOLDERS_2D = {"out": Path("models/demo-2d"), "workdir": Path("var/nnunet-2d")}
SMOKE_FOLDERS_2D = {"out": Path("var/smoke-2d/models"), "workdir": Path("var/smoke-2d/nnunet")}
# Preprocessing settings two configurations must share to share preprocessed data (besides the spacing).
_PREPROCESSING_KEYS = ("preprocessor_name", "normalization_schemes", "use_mask_for_norm", "resampling_fn_data",
                       "resampling_fn_data_kwargs", "resampling_fn_seg", "resampling_fn_seg_kwargs")


def training_options(given: dict[str, object], smoke: bool = False) -> TrainingOptions:
    """The options of a ``train-demo-models`` command line: what it gave over the defaults (:data:`SMOKE`'s under
    ``--smoke``), with a 2-D run's folders defaulting to :data:`FOLDERS_2D` / :data:`SMOKE_FOLDERS_2D`."""
    defaults: dict[str, object] = dict(SMOKE) if smoke else {}
    if given.get("configuration") == "2d":
        defaults.update(SMOKE_FOLDERS_2D if smoke else FOLDERS_2D)
    return TrainingOptions(**{**defaults, **given})  # type: ignore[arg-type]


def shares_preprocessed_data(plans: dict, spacings: Sequence[Sequence[float]], source: str = "3d_fullres",
                             target: str = "2d") -> bool:
    """Whether nnU-Net's preprocessing for ``target`` (a 2-D configuration) writes the same arrays as for
    ``source`` (3-D), so that ``target`` can train on ``source``'s data_identifier.

    True when both use the same preprocessor, normalisation and resampling, ``target``'s in-plane spacing is
    ``source``'s, and every case already has ``source``'s slice spacing (a 2-D configuration keeps each case's own,
    3-D resamples it to ``source``'s; nnU-Net leaves an array alone when its shape does not change).

    Args:
        plans: nnU-Net plans as the planner writes them (both configurations complete, no ``inherits_from``).
        spacings: every training case's voxel spacing in mm, (z, y, x) as in dataset_fingerprint.json.
    """
    full, flat = plans["configurations"][source], plans["configurations"][target]
    if any(full.get(key) != flat.get(key) for key in _PREPROCESSING_KEYS):
        return False
    if [float(s) for s in full["spacing"][1:]] != [float(s) for s in flat["spacing"]]:
        return False
    slice_axis = plans["transpose_forward"][0]
    return all(float(spacing[slice_axis]) == float(full["spacing"][0]) for spacing in spacings)


@dataclass(frozen=True)
class _Member:
    """One exported checkpoint and how it came about (a row of the manifest)."""

    ensemble: str
    index: int
    path: Path
    seed: int
    epochs: int
    training_seconds: float


def train_demo_models(options: TrainingOptions) -> tuple[Path, list[str]]:
    """Run the whole pipeline of the module's description.

    Returns:
        The path of manifest.json, and the problems found (weights over budget; outside smoke runs, a checkpoint
        whose held-out Dice is <= 0.5 for a class), each a line of text; empty when all is well.
    """
    env = prepare_nnunet_environment(options.workdir, processes=options.processes)
    torch.set_num_threads(options.threads)
    dataset = f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
    _clear(dataset, env, options.out)
    training_seeds = [options.seed * 1000 + i for i in range(options.cases)]
    held_out_seeds = [options.seed * 1000 + HELD_OUT_OFFSET + j for j in range(options.held_out)]
    write_nnunet_raw(Path(env["nnUNet_raw"]), [generate_phantom(s) for s in training_seeds], DATASET_ID,
                     DATASET_NAME, CASE_PREFIX)
    nnunet_log = Path(options.workdir) / "nnunet_stdout.log"
    log.info("nnU-Net's own output goes to %s", nnunet_log)
    held_out = [generate_phantom(s) for s in held_out_seeds]
    with _nnunet_output(nnunet_log):
        plans = _plan_and_preprocess(options)
        members = _train_all(options, plans, dataset)
        rows = [_manifest_row(options.out, m, _evaluate(m.path, held_out)) for m in members]
    manifest = {
        "command": options.command(),
        "dataset": dataset,
        "labels": dict(LABELS),
        "phantom": {"shape": list(DEFAULT_SHAPE), "spacing_mm": list(DEFAULT_SPACING)},
        "training_seeds": training_seeds,
        "held_out_seeds": held_out_seeds,
        "validation": "mean Dice per class over the held-out phantoms, final/cycle checkpoint, no mirroring",
        "training_budget": {
            "per_member": f"{options.epochs} epochs x {options.iterations} iterations: each DE fold, and the CE run "
                          f"in all ({options.cycles} cosine cycles of {options.epochs // options.cycles} epochs; its "
                          "last checkpoint has had one DE member's budget)",
            "epochs": options.epochs, "iterations_per_epoch": options.iterations, "ce_cycles": options.cycles,
            "ce_epochs_per_cycle": options.epochs // options.cycles},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "versions": _versions(),
        "torch_threads": torch.get_num_threads(),
        "total_bytes": sum(r["bytes"] for r in rows),
        "checkpoints": rows,
    }
    path = Path(options.out) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s: %d checkpoints, %.1f MB", path, len(rows), manifest["total_bytes"] / 1e6)
    return path, _problems(manifest, options)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_weights_only(checkpoint: Path, target: Path) -> None:
    """Write the parts of an nnU-Net checkpoint that inference needs: network_weights, trainer_name,
    inference_allowed_mirroring_axes and init_args.configuration (loadable with ``weights_only=True``)."""
    full = torch.load(checkpoint, map_location="cpu", weights_only=False)
    slim = {
        "network_weights": full["network_weights"],
        "trainer_name": full["trainer_name"],
        "inference_allowed_mirroring_axes": tuple(full["inference_allowed_mirroring_axes"]),
        "init_args": {"configuration": full["init_args"]["configuration"]},
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, target)


def dice_per_class(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Dice 2|P∩G| / (|P| + |G|) per foreground class (1 when both are empty), by class name."""
    scores = {}
    for name, label in LABELS.items():
        if label == 0:
            continue
        p, g = prediction == label, reference == label
        total = int(p.sum()) + int(g.sum())
        scores[name] = 1.0 if total == 0 else 2.0 * int((p & g).sum()) / total
    return scores


@contextlib.contextmanager
def _nnunet_output(path: Path) -> Iterator[None]:
    """Send what nnU-Net prints (banners, plans, per-epoch lines) to a file instead of stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream, contextlib.redirect_stdout(stream):
        yield


@contextlib.contextmanager
def environment_variables(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _root_logger_level(level: int) -> Iterator[None]:
    """Raise the root logger's level for the duration of the block."""
    root = logging.getLogger()
    saved = root.level
    root.setLevel(max(level, saved))
    try:
        yield
    finally:
        root.setLevel(saved)


def _clear(dataset: str, env: dict[str, str], out: Path) -> None:
    """Remove this dataset's folders from the work folder and from ``out`` (stale splits, checkpoints)."""
    for folder in (env["nnUNet_raw"], env["nnUNet_preprocessed"], env["nnUNet_results"], str(out)):
        shutil.rmtree(Path(folder) / dataset, ignore_errors=True)
    (Path(out) / MANIFEST).unlink(missing_ok=True)


def _plan_and_preprocess(options: TrainingOptions) -> dict:
    """Fingerprint, plan and preprocess (3d_fullres, or 2d where it does not share 3d_fullres's data); add the
    tiny configuration; return the plans."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.paths import nnUNet_preprocessed

    from pipeline.nnunet.trainers import add_tiny_configuration

    started = time.perf_counter()
    fingerprint = extract_fingerprint_dataset(DATASET_ID, num_processes=options.processes, show_progress_bar=False)
    # the planner calls torch.set_num_threads(nnUNet_n_proc_DA), which fails for 0
    with environment_variables(nnUNet_n_proc_DA="1"):
        _, plans_name = plan_experiment_dataset(DATASET_ID, ExperimentPlanner)
    plans_file = Path(str(nnUNet_preprocessed)) / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}" / f"{plans_name}.json"
    plans = json.loads(plans_file.read_text())
    source, name = TINY_CONFIGURATIONS[options.configuration]
    preprocessed, data_identifier = source, None
    if source != "3d_fullres" and shares_preprocessed_data(plans, fingerprint["spacings"], "3d_fullres", source):
        preprocessed = "3d_fullres"
        data_identifier = plans["configurations"][preprocessed]["data_identifier"]
    log.info("%s trains on the %s preprocessed data", name, preprocessed)
    with _root_logger_level(logging.WARNING):  # distutils logs every label file it copies
        preprocess_dataset(DATASET_ID, plans_name, (preprocessed,), (options.processes,), show_progress_bar=False)
    plans = add_tiny_configuration(plans, tuple(options.features), source, name, data_identifier)
    plans_file.write_text(json.dumps(plans, indent=2) + "\n", encoding="utf-8")
    log.info("planned and preprocessed %d cases in %.1f s", options.cases, time.perf_counter() - started)
    return plans


def _train_all(options: TrainingOptions, plans: dict, dataset: str) -> list[_Member]:
    """Train the DE folds and the CE run; export their checkpoints into ``options.out``."""
    from pipeline.nnunet.trainers import Schedule, nnUNetTrainerCheckpointEnsemble, nnUNetTrainerTinyCPU

    configuration = TINY_CONFIGURATIONS[options.configuration][1]
    members = []
    base = Schedule(epochs=options.epochs, iterations=options.iterations, val_iterations=options.val_iterations)
    for fold in range(options.folds):
        schedule = replace(base, seed=options.seed * 1000 + fold)
        trainer, seconds = _train(nnUNetTrainerTinyCPU, plans, configuration, fold, schedule)
        folder = _export_folder(trainer, options.out, dataset)
        target = folder / f"fold_{fold}" / "checkpoint_final.pth"
        export_weights_only(Path(trainer.output_folder) / "checkpoint_final.pth", target)
        members.append(_Member("DE", fold, target, schedule.seed, options.epochs, seconds))
        log.info("DE fold %d trained in %.0f s (%s)", fold, seconds, configuration)
        del trainer
        gc.collect()
    per_cycle = options.epochs // options.cycles
    schedule = replace(base, seed=options.seed * 1000 + CE_MEMBER, cycles=options.cycles, epochs=per_cycle)
    trainer, seconds = _train(nnUNetTrainerCheckpointEnsemble, plans, configuration, 0, schedule)
    folder = _export_folder(trainer, options.out, dataset)
    ends = trainer.logger.get_value("epoch_end_timestamps", step=None)
    started = ends[-1] - seconds
    for cycle in range(1, options.cycles + 1):
        target = folder / "fold_0" / f"checkpoint_cycle_{cycle}.pth"
        export_weights_only(Path(trainer.cycle_checkpoint(cycle)), target)
        at = ends[cycle * per_cycle - 1] - started
        members.append(_Member("CE", cycle, target, schedule.seed, cycle * per_cycle, at))
    log.info("CE run (%d cycles) trained in %.0f s", options.cycles, seconds)
    return members


def _train(trainer_class: type[Trainer], plans: dict, configuration: str, fold: int,
           schedule: Schedule) -> tuple[Trainer, float]:
    """Build a trainer of ``configuration`` directly (no lookup by name), train it, and return it with the seconds
    it took."""
    from nnunetv2.paths import nnUNet_preprocessed

    dataset_json = json.loads(
        (Path(str(nnUNet_preprocessed)) / plans["dataset_name"] / "dataset.json").read_text(encoding="utf-8")
    )
    trainer = trainer_class({**plans, "continue_training": False}, configuration, fold, dataset_json)
    trainer.set_schedule(schedule)
    started = time.perf_counter()
    trainer.run_training()
    return trainer, time.perf_counter() - started


def _export_folder(trainer: nnUNetTrainerTinyCPU, out: Path, dataset: str) -> Path:
    """The trainer's folder under ``out`` (Trainer__Plans__configuration) with its plans.json and dataset.json."""
    source = Path(trainer.output_folder_base)
    folder = Path(out) / dataset / source.name
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copyfile(source / name, folder / name)
    return folder


def _evaluate(checkpoint: Path, phantoms: Sequence[Phantom]) -> dict[str, float]:
    """Mean Dice per class of one exported checkpoint over ``phantoms`` (no mirroring), as nnU-Net predicts."""
    predictor = load_predictor(checkpoint, use_mirroring=False)
    scores = []
    for phantom in phantoms:
        image = phantom.ct.astype(np.float32)[None]
        segmentation = predictor.predict_single_npy_array(image, {"spacing": list(phantom.spacing)})
        scores.append(dice_per_class(np.asarray(segmentation), phantom.labels))
    return {name: float(np.mean([s[name] for s in scores])) for name in scores[0]}


def load_predictor(checkpoint: Path, use_mirroring: bool = True) -> nnUNetPredictor:
    """An nnUNetPredictor on CPU for one exported weights-only checkpoint (its folder's parent holds plans.json
    and dataset.json), built without nnU-Net's trainer lookup by name."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    model_folder = Path(checkpoint).parent.parent
    plans_manager = PlansManager(json.loads((model_folder / "plans.json").read_text(encoding="utf-8")))
    dataset_json = json.loads((model_folder / "dataset.json").read_text(encoding="utf-8"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    configuration = plans_manager.get_configuration(state["init_args"]["configuration"])
    network = nnUNetTrainer.build_network_architecture(
        plans_manager, configuration, determine_num_input_channels(plans_manager, configuration, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False,
    )
    predictor = nnUNetPredictor(use_mirroring=use_mirroring, perform_everything_on_device=False,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration, [state["network_weights"]],
                                    dataset_json, state["trainer_name"], state["inference_allowed_mirroring_axes"])
    return predictor


def _manifest_row(out: Path, member: _Member, dice: dict[str, float]) -> dict[str, object]:
    return {
        "path": member.path.relative_to(out).as_posix(),
        "ensemble": member.ensemble,
        "fold" if member.ensemble == "DE" else "cycle": member.index,
        "sha256": sha256_of(member.path),
        "bytes": member.path.stat().st_size,
        "seed": member.seed,
        "epochs": member.epochs,
        "training_seconds": round(member.training_seconds, 1),
        "validation_dice": {k: round(v, 4) for k, v in dice.items()},
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("nnunetv2", "torch", "numpy", "SimpleITK")}


def _problems(manifest: dict, options: TrainingOptions) -> list[str]:
    """Weights over the budget; outside smoke runs, a DE fold or the CE run's last checkpoint whose held-out Dice is
    below :data:`MIN_DICE` for a class (the earlier CE checkpoints are snapshots on the way and are only listed)."""
    problems = []
    if manifest["total_bytes"] > WEIGHTS_BUDGET_BYTES:
        problems.append(f"exported weights total {manifest['total_bytes'] / 2**20:.1f} MiB, over the 25 MiB budget")
    if not options.smoke:
        for row in manifest["checkpoints"]:
            counted = row["ensemble"] == "DE" or row.get("cycle") == options.cycles
            failed = {k: v for k, v in row["validation_dice"].items() if v < MIN_DICE}
            if failed and counted:
                problems.append(f"{row['path']}: held-out Dice below {MIN_DICE} for {failed}")
    return problems
