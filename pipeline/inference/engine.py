"""Forward passes of nnU-Net v2 members on one case, each (member, view) once, and the way back to the CT grid.

The case is preprocessed once with nnU-Net's own preprocessor; each member's weights are loaded once; each TTA
view flips the preprocessed input along the patch's axes (:func:`flip_dims`: 3-D and 2-D configurations differ),
runs nnU-Net's sliding window (mirroring off) and flips the logits back, on the network's grid
(:meth:`MemberPredictor.network_logits`). Two ways back to the original geometry: a pooled
probability map on the device with :func:`pipeline.inference.mapping.map_probabilities`
(:meth:`MemberPredictor.to_ct_grid`, the ``pooled`` grid mapping), or one pass's logits with nnU-Net's own
resampling function, un-cropping (background outside the crop) and inverse transpose in NumPy
(:meth:`MemberPredictor.forward`, the ``per_pass`` grid mapping). Pooling happens in
:mod:`pipeline.inference.pooling`.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from numpy.typing import NDArray

from pipeline.inference.extent import check_extent
from pipeline.inference.grid import View
from pipeline.inference.mapping import CtGeometry, ct_geometry, map_probabilities
from pipeline.inference.model_set import ModelSet, ModelSetError

log = logging.getLogger(__name__)

_OUTSIDE_LOGIT = -1.0e4


def flip_dims(view: View, patch_dims: int) -> list[int]:
    """The dimensions of the preprocessed data (C, Z, Y, X) that a TTA view flips.

    A view's axes are nnU-Net's mirror axes: axes of the configuration's patch. A 3-D patch spans (Z, Y, X), so
    axis a is dimension a + 1; a 2-D patch spans the in-plane (Y, X) and slides over Z, so axis a is dimension
    a + 2 (nnU-Net flips a + 2 of its (B, C, *patch) network input in both cases).

    Args:
        view: the flipped patch axes, e.g. ``(0, 2)``; ``()`` is the identity.
        patch_dims: the configuration's patch dimensionality, 2 or 3.
    """
    if patch_dims not in (2, 3):
        raise ValueError(f"patch_dims must be 2 or 3, got {patch_dims}")
    if any(not 0 <= axis < patch_dims for axis in view):
        raise ValueError(f"view {view} flips an axis outside a {patch_dims}-D patch")
    return [axis + 4 - patch_dims for axis in view]


def choose_device(requested: str | None = None) -> torch.device:
    """``requested`` ('cpu', 'cuda', 'cuda:1'), else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Preprocessed:
    """A case after nnU-Net's preprocessing: network input (channels, *spatial) and nnU-Net's properties."""

    data: torch.Tensor
    properties: dict[str, Any]
    original_shape: tuple[int, int, int]
    geometry: CtGeometry


class MemberPredictor:
    """Runs the members of a :class:`ModelSet` on cases; counts every forward pass it makes.

    Args:
        model_set: the members and their shared plans.
        device: torch device (default: CUDA if present, else CPU).
        mixed_precision: autocast on CUDA (nnU-Net's default there); ignored on CPU.
    """

    def __init__(self, model_set: ModelSet, device: torch.device | None = None, mixed_precision: bool = True) -> None:
        self.model_set = model_set
        self.device = device or choose_device()
        self.plans_manager = PlansManager(model_set.plans)
        self.configuration_manager = self.plans_manager.get_configuration(model_set.configuration)
        label_manager = self.plans_manager.get_label_manager(model_set.dataset_json)
        self.n_classes = int(label_manager.num_segmentation_heads)
        if self.n_classes != len(model_set.labels):
            raise ModelSetError(
                f"{model_set.folder}: plans give {self.n_classes} outputs for labels {model_set.labels}"
            )
        n_inputs = determine_num_input_channels(self.plans_manager, self.configuration_manager, model_set.dataset_json)
        network = nnUNetTrainer.build_network_architecture(
            self.plans_manager, self.configuration_manager, n_inputs, self.n_classes, enable_deep_supervision=False
        )
        with contextlib.redirect_stdout(io.StringIO()) as chatter:
            self._predictor = nnUNetPredictor(
                use_mirroring=False,
                perform_everything_on_device=self.device.type == "cuda",
                device=self.device,
                allow_tqdm=False,
            )
        log.debug("nnU-Net: %s", chatter.getvalue().strip())
        self._predictor.manual_initialization(
            network, self.plans_manager, self.configuration_manager, None, model_set.dataset_json, "nnUNetTrainer", None
        )
        self._mixed_precision = mixed_precision
        self._loaded: str | None = None
        self._weights: dict[str, dict[str, torch.Tensor]] = {}
        self.forward_passes: Counter[tuple[str, View]] = Counter()
        self.mappings = 0

    def _checkpoint(self, member_name: str) -> dict[str, Any]:
        member = self.model_set.member(member_name)
        try:
            checkpoint = torch.load(member.checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ModelSetError(f"{member.checkpoint}: not a loadable nnU-Net checkpoint ({error})") from error
        if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
            raise ModelSetError(f"{member.checkpoint}: no 'network_weights' in the checkpoint")
        return checkpoint

    @property
    def patch_dims(self) -> int:
        """The configuration's patch dimensionality: 3 (a 3-D model) or 2 (a 2-D model, slice by slice over Z)."""
        return len(self.configuration_manager.patch_size)

    def mirror_axes(self) -> tuple[int, ...]:
        """The TTA mirror axes the first member allows (``inference_allowed_mirroring_axes``; () when none): axes
        of the patch, (0, 1, 2) for nnU-Net's 3-D models, (0, 1) for its 2-D ones."""
        member = self.model_set.members[0]
        axes = self._checkpoint(member.name).get("inference_allowed_mirroring_axes")
        chosen = tuple(int(a) for a in axes) if axes else ()
        if any(not 0 <= axis < self.patch_dims for axis in chosen):
            raise ModelSetError(
                f"{member.checkpoint}: mirroring axes {chosen} do not fit the {self.patch_dims}-D patch of "
                f"configuration {self.model_set.configuration!r}"
            )
        return chosen

    def _load(self, member_name: str) -> None:
        if self._loaded == member_name:
            return
        member = self.model_set.member(member_name)
        if member_name not in self._weights:  # read from disk once per predictor, not once per case
            self._weights[member_name] = self._checkpoint(member_name)["network_weights"]
        weights = self._weights[member_name]
        try:
            self._predictor.network.load_state_dict(weights)
        except RuntimeError as error:
            raise ModelSetError(f"{member.checkpoint}: weights do not fit the plans' network ({error})") from error
        self._loaded = member_name

    def check_extent(self, image: sitk.Image, source: str = "the CT") -> None:
        """InputError when ``image`` is too small for the plan's preprocessing (an axis resampled to no voxel:
        :mod:`pipeline.inference.extent`); ``source`` names it in the message."""
        check_extent(list(reversed(image.GetSize())), list(reversed(image.GetSpacing())),
                     self.configuration_manager.spacing, self.plans_manager.transpose_forward, source)

    def preprocess(self, image: sitk.Image) -> Preprocessed:
        """nnU-Net's preprocessing of a single-channel CT ``image`` (once per case); a CT too small for the plan is
        refused first (:meth:`check_extent`)."""
        expected = len(self.model_set.dataset_json.get("channel_names", {"0": "CT"}))
        if expected != 1:
            raise ModelSetError(
                f"{self.model_set.folder}: {expected} input channels; only single-channel CT is supported"
            )
        self.check_extent(image)
        array = sitk.GetArrayViewFromImage(image)[None]  # no copy: nnU-Net makes its own float32 copy
        spacing_zyx = list(reversed(image.GetSpacing()))
        preprocessor = self.configuration_manager.preprocessor_class(verbose=False)
        data, _, properties = preprocessor.run_case_npy(
            array, None, {"spacing": spacing_zyx}, self.plans_manager, self.configuration_manager,
            self.model_set.dataset_json,
        )
        shape = array.shape[1:]
        geometry = ct_geometry(properties, self.configuration_manager, list(self.plans_manager.transpose_forward))
        return Preprocessed(torch.from_numpy(np.ascontiguousarray(data)), properties, (shape[0], shape[1], shape[2]),
                            geometry)

    def network_logits(self, case: Preprocessed, member_name: str, view: View) -> torch.Tensor:
        """Logits (C, z, y, x) of one member on one view, on the network's grid, float32, on the device."""
        self._load(member_name)
        flip_axes = flip_dims(view, self.patch_dims)
        data = torch.flip(case.data, flip_axes) if flip_axes else case.data
        with torch.autocast(self.device.type, enabled=self._mixed_precision and self.device.type == "cuda"):
            logits = self._predictor.predict_sliding_window_return_logits(data)
        logits = logits.float().to(self.device)
        if flip_axes:
            logits = torch.flip(logits, flip_axes)
        self.forward_passes[(member_name, view)] += 1
        return logits

    def forward(self, case: Preprocessed, member_name: str, view: View) -> NDArray[np.float32]:
        """Logits (C, Z, Y, X) of one member on one view, on the original CT grid, float32 (nnU-Net's mapping)."""
        logits = self.network_logits(case, member_name, view).cpu()
        self.mappings += 1
        return self._to_original_grid(logits, case.properties)

    def to_ct_grid(self, probabilities: torch.Tensor, case: Preprocessed) -> NDArray[np.float32]:
        """Class probabilities (C, z, y, x) on the network's grid → (C, Z, Y, X) on the CT grid, float32.

        Resampled, un-cropped and transposed on the tensor's device; only the CT-grid result comes back.
        """
        self.mappings += 1
        return map_probabilities(probabilities, case.geometry, self.configuration_manager).cpu().numpy()

    def _to_original_grid(self, logits: torch.Tensor, properties: dict[str, Any]) -> NDArray[np.float32]:
        transpose_forward = self.plans_manager.transpose_forward
        spacing_transposed = [properties["spacing"][i] for i in transpose_forward]
        target = self.configuration_manager.spacing
        current = target if len(target) == 3 else [spacing_transposed[0], *target]
        resampled = self.configuration_manager.resampling_fn_probabilities(
            logits, properties["shape_after_cropping_and_before_resampling"], current, spacing_transposed
        )
        resampled = np.asarray(resampled.numpy() if isinstance(resampled, torch.Tensor) else resampled, np.float32)
        full = np.full((self.n_classes, *properties["shape_before_cropping"]), _OUTSIDE_LOGIT, dtype=np.float32)
        full[0] = 0.0
        box = tuple(slice(int(lo), int(hi)) for lo, hi in properties["bbox_used_for_cropping"])
        full[(slice(None), *box)] = resampled
        return np.ascontiguousarray(full.transpose([0, *[i + 1 for i in self.plans_manager.transpose_backward]]))

    def ordered(self, schedule: Sequence[tuple[str, View]]) -> list[tuple[str, View]]:
        """The distinct pairs of ``schedule`` grouped by member (so weights load once), views in order."""
        rank = {member.name: index for index, member in enumerate(self.model_set.members)}
        return sorted(set(schedule), key=lambda pair: (rank[pair[0]], pair[1]))

    def passes(
        self, case: Preprocessed, schedule: Sequence[tuple[str, View]]
    ) -> Iterator[tuple[str, View, NDArray[np.float32]]]:
        """Run ``schedule`` (:meth:`ordered`) yielding each pass's logits on the CT grid (:meth:`forward`)."""
        for member_name, view in self.ordered(schedule):
            log.debug("forward %s view %s", member_name, view)
            yield member_name, view, self.forward(case, member_name, view)

    def network_passes(
        self, case: Preprocessed, schedule: Sequence[tuple[str, View]]
    ) -> Iterator[tuple[str, View, torch.Tensor]]:
        """Run ``schedule`` (:meth:`ordered`) yielding each pass's logits on the network's grid."""
        for member_name, view in self.ordered(schedule):
            log.debug("forward %s view %s (network grid)", member_name, view)
            yield member_name, view, self.network_logits(case, member_name, view)
