"""Make nnU-Net v2 usable on this project's CPU machines; call before importing any ``nnunetv2`` module.

Two traps (see shared/notes/nnunet-on-cpu.md): nnU-Net reads its folders and process counts from environment
variables, some of them at import time; and PyPI's torchvision is a CUDA build that fails to import beside the CPU
torch ("operator torchvision::nms does not exist"). nnU-Net never uses torchvision, but its trainer lookup by name
imports every trainer module, one of which pulls in timm and so torchvision. The fix declares the two operators
torchvision registers fake kernels for, only when ``import torchvision`` fails.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_TORCHVISION_OPS = ("nms", "qnms")
_libraries: list[torch.library.Library] = []  # a Library unregisters its operators when garbage-collected


def prepare_nnunet_environment(base: Path, processes: int = 2) -> dict[str, str]:
    """Point nnU-Net at folders under ``base`` and set its process counts; make torchvision importable.

    Sets nnUNet_raw, nnUNet_preprocessed and nnUNet_results to ``base``/nnUNet_raw, ... (created), nnUNet_compile=f
    (no torch.compile on CPU), nnUNet_n_proc_DA=0 (data augmentation in the main process: deterministic, no
    workers competing for the 2 cores), nnUNet_def_n_proc=``processes`` (pool size of preprocessing and export)
    and nnUNet_extTrainer to this package's folder, so that nnU-Net's lookup by trainer name (e.g. in
    ``nnUNetPredictor.initialize_from_trained_model_folder``) finds the project's trainers. nnU-Net reads
    nnUNet_def_n_proc when ``nnunetv2.configuration`` is first imported, so call this first.

    Returns:
        The variables set, name -> value.
    """
    base = Path(base).resolve()
    settings = {
        "nnUNet_raw": str(base / "nnUNet_raw"),
        "nnUNet_preprocessed": str(base / "nnUNet_preprocessed"),
        "nnUNet_results": str(base / "nnUNet_results"),
        "nnUNet_compile": "f",
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": str(processes),
        "nnUNet_extTrainer": str(Path(__file__).resolve().parent),
    }
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(settings[name]).mkdir(parents=True, exist_ok=True)
    os.environ.update(settings)
    ensure_torchvision_importable()
    return settings


def ensure_torchvision_importable() -> bool:
    """Declare torchvision's ``nms``/``qnms`` operators when ``import torchvision`` fails; returns True if it did.

    Does nothing where torchvision imports (e.g. a GPU machine with matching builds) or is already patched.
    """
    if _libraries:
        return False
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    else:
        return False
    library = torch.library.Library("torchvision", "DEF")
    for op in _TORCHVISION_OPS:
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _libraries.append(library)
    import torchvision  # noqa: F401

    log.info("torchvision is a build for another torch: declared torchvision::nms and ::qnms so it imports")
    return True
