"""nnU-Net v2 trainers for small CPU machines, and the tiny plans configuration they train.

Import only after :func:`pipeline.nnunet.compat.prepare_nnunet_environment`.

- :class:`nnUNetTrainerTinyCPU`: few iterations per epoch (default 32 epochs of 25 training and 2 validation
  iterations), AdamW with a cosine learning rate set every iteration (down to ~0 at the end), mirror-only
  augmentation (``inference_allowed_mirroring_axes`` stays every patch axis, (0, 1, 2) in 3-D and (0, 1) in 2-D, so
  test-time mirroring remains available), seeded, CPU; 3-D and 2-D configurations alike. Writes
  checkpoint_final.pth only: no checkpoint_best/latest and no progress plot per epoch.
- :class:`nnUNetTrainerCheckpointEnsemble`: the same, trained for M cycles (default 3) of ``epochs`` epochs each,
  the cosine restarted at every cycle, saving checkpoint_cycle_<k>.pth (k = 1..M) at the end of each cycle: the
  members of a checkpoint ensemble.

Build them directly, ``Trainer(plans, configuration, fold, dataset_json)``, then :meth:`~nnUNetTrainerTinyCPU.
set_schedule` and ``run_training()``. nnU-Net's lookup by name (used by its predictor) finds them through
nnUNet_extTrainer, which :func:`~pipeline.nnunet.compat.prepare_nnunet_environment` sets.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from os.path import join
from time import time

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

TINY_CONFIGURATION = "3d_tiny"
TINY_FEATURES = (8, 16, 32, 64)
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Schedule:
    """How long and from which seed a trainer trains.

    Attributes:
        epochs: epochs of the run; for the checkpoint ensemble, epochs of each cycle.
        iterations: training iterations per epoch.
        val_iterations: validation iterations per epoch (nnU-Net's pseudo Dice).
        seed: seeds Python's, NumPy's and torch's generators before the network is built.
        cycles: cosine cycles (checkpoint ensemble only; 1 otherwise).
    """

    epochs: int = 32
    iterations: int = 25
    val_iterations: int = 2
    seed: int = 0
    cycles: int = 1

    def __post_init__(self) -> None:
        if min(self.epochs, self.iterations, self.val_iterations, self.cycles) < 1:
            raise ValueError(f"epochs, iterations, val_iterations and cycles must be >= 1, got {self}")


def add_tiny_configuration(
    plans: dict, features: tuple[int, ...] = TINY_FEATURES, source: str = "3d_fullres",
    name: str = TINY_CONFIGURATION, data_identifier: str | None = None,
) -> dict:
    """A copy of nnU-Net plans with a small configuration ``name`` that inherits from ``source``.

    The source's data_identifier unless ``data_identifier`` is given (no new preprocessing); a plain U-Net with
    len(features) stages (default 4: 8, 16, 32, 64 features) of the source's dimensionality (3-D from 3d_fullres,
    2-D from 2d: its convolution and normalisation ops), 3x3(x3) convolutions, stride 2 on every axis after the
    first stage; patch = the source's median image size (Z, Y, X in 3-D, Y, X in 2-D) rounded up to a multiple of
    the total stride, i.e. the whole image (slice) for phantoms.

    Args:
        plans: nnU-Net plans as loaded from nnUNetPlans.json (not modified).
        features: features per stage.
        data_identifier: the preprocessed data to train on, e.g. 3d_fullres's for a 2-D configuration whose
            preprocessing would be identical (see :func:`pipeline.nnunet.training.shares_preprocessed_data`).
    """
    result = copy.deepcopy(plans)
    base = result["configurations"][source]
    dims = len(base["patch_size"])
    stages = len(features)
    stride = 2 ** (stages - 1)
    architecture = copy.deepcopy(base["architecture"])
    architecture["arch_kwargs"].update(
        n_stages=stages,
        features_per_stage=list(features),
        kernel_sizes=[[3] * dims] * stages,
        strides=[[1] * dims] + [[2] * dims] * (stages - 1),
        n_conv_per_stage=[2] * stages,
        n_conv_per_stage_decoder=[2] * (stages - 1),
    )
    patch = [int(math.ceil(size / stride) * stride) for size in base["median_image_size_in_voxels"]]
    configuration = {"inherits_from": source, "architecture": architecture, "patch_size": patch}
    if data_identifier is not None:
        configuration["data_identifier"] = data_identifier
    result["configurations"][name] = configuration
    return result


class nnUNetTrainerTinyCPU(nnUNetTrainer):
    """A short, seeded CPU training with mirror-only augmentation (see the module's description)."""

    trains_in_cycles = False

    def __init__(self, plans: dict, configuration: str, fold: int | str, dataset_json: dict,
                 device: torch.device = CPU) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 3e-3
        self.schedule = Schedule()
        self._iteration = 0
        self.set_schedule(self.schedule)

    def set_schedule(self, schedule: Schedule) -> None:
        """Set epochs, iterations, seed (and cycles); before training starts."""
        if self.was_initialized:
            raise RuntimeError("set the schedule before the trainer is initialized")
        if schedule.cycles != 1 and not self.trains_in_cycles:
            raise ValueError(f"{type(self).__name__} does not train in cycles, got {schedule.cycles}")
        self.schedule = schedule
        self.num_epochs = schedule.epochs * schedule.cycles
        self.num_iterations_per_epoch = schedule.iterations
        self.num_val_iterations_per_epoch = schedule.val_iterations

    def initialize(self) -> None:
        """Seed every generator, then build the network, optimizer and loss."""
        random.seed(self.schedule.seed)
        np.random.seed(self.schedule.seed)
        torch.manual_seed(self.schedule.seed)
        super().initialize()

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, CosineAnnealingWarmRestarts]:
        """AdamW (lr 3e-3) with a cosine learning rate per cycle, set every iteration (see :meth:`train_step`).

        nnU-Net's SGD (lr 1e-2, momentum 0.99, poly decay) learned nothing in 400 iterations on the phantoms,
        whose structures fill 0.5 % of the image; AdamW found the spleen after ~200 and the nodes after ~450.
        """
        optimizer = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, CosineAnnealingWarmRestarts(optimizer, T_0=self.schedule.epochs, eta_min=0.0)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """nnU-Net's settings with the initial patch equal to the patch (no spatial transform to crop it);
        mirror axes every patch axis ((0, 1, 2) in 3-D, (0, 1) in 2-D), also kept for inference."""
        rotation, dummy_2d, _, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return rotation, dummy_2d, self.configuration_manager.patch_size, mirror_axes

    @staticmethod
    def get_training_transforms(
        patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
        use_mask_for_norm=None, is_cascaded=False, foreground_labels=None, regions=None, ignore_label=None,
    ) -> BasicTransform:
        """Random mirroring along ``mirror_axes`` only (plus nnU-Net's label clean-up and deep-supervision
        targets); no spatial or intensity augmentation, which converges far slower at this budget."""
        transforms: list[BasicTransform] = [MirrorTransform(allowed_axes=mirror_axes), RemoveLabelTansform(-1, 0)]
        if deep_supervision_scales is not None:
            transforms.append(DownsampleSegForDSTransform(ds_scales=deep_supervision_scales))
        return ComposeTransforms(transforms)

    def on_train_epoch_start(self) -> None:
        self._iteration = 0
        super().on_train_epoch_start()

    def train_step(self, batch: dict) -> dict:
        """Set this iteration's learning rate (cosine over the cycle, by fractional epoch), then nnU-Net's step."""
        self.lr_scheduler.step(self.current_epoch + self._iteration / self.num_iterations_per_epoch)
        self._iteration += 1
        return super().train_step(batch)

    def on_epoch_end(self) -> None:
        """Log the epoch's losses and pseudo Dice and move on; no checkpoint_best/latest, no progress plot."""
        self.logger.log("epoch_end_timestamps", time(), self.current_epoch)
        ends, starts = (self.logger.get_value(f"epoch_{k}_timestamps", -1) for k in ("end", "start"))
        self.print_to_log_file(
            f"train_loss {self.logger.get_value('train_losses', -1):.4f}",
            f"val_loss {self.logger.get_value('val_losses', -1):.4f}",
            f"pseudo Dice {[round(float(d), 4) for d in self.logger.get_value('dice_per_class_or_region', -1)]}",
            f"epoch time {ends - starts:.1f} s",
            also_print_to_console=False,
        )
        self.current_epoch += 1


class nnUNetTrainerCheckpointEnsemble(nnUNetTrainerTinyCPU):
    """Cosine learning rate with warm restarts over ``cycles`` cycles; a named checkpoint at each cycle's end."""

    trains_in_cycles = True

    def __init__(self, plans: dict, configuration: str, fold: int | str, dataset_json: dict,
                 device: torch.device = CPU) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.set_schedule(Schedule(cycles=3))

    def cycle_checkpoint(self, cycle: int) -> str:
        """Path of the checkpoint saved at the end of cycle ``cycle`` (1-based)."""
        return join(self.output_folder, f"checkpoint_cycle_{cycle}.pth")

    def on_epoch_end(self) -> None:
        """At the end of each cycle save checkpoint_cycle_<k>.pth, then the epoch's bookkeeping."""
        if (self.current_epoch + 1) % self.schedule.epochs == 0:
            cycle = (self.current_epoch + 1) // self.schedule.epochs
            self.save_checkpoint(self.cycle_checkpoint(cycle))
            self.print_to_log_file(f"end of cycle {cycle}: saved {self.cycle_checkpoint(cycle)}")
        super().on_epoch_end()
