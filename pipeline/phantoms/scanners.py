"""Simulated CT scanners for the phantoms (:mod:`pipeline.phantoms.ct`): how the rendered anatomy becomes voxels.

A scanner turns the fine-grid HU volume (2x finer per axis than the voxels) into the CT the phantom ships, in three
steps, each a documented, measurable property:

- **slice thickness**: along z each voxel averages the fine samples over a window centred on it, ``slices`` times
  the z spacing wide (the slice sensitivity profile is a boxcar; its full width at half maximum is the thickness,
  reconstructed every z spacing, so thicker slices overlap);
- **kernel sharpness**: in-plane the voxel averages its own fine samples (the 7 mm voxel's boxcar) and a smoother
  reconstruction kernel adds a Gaussian blur of ``kernel_blur_mm`` (SD, mm) on top;
- **noise level**: correlated Gaussian noise (white noise smoothed with an SD of 0.6 voxels, then scaled) whose SD in
  HU is drawn uniformly from ``noise_hu`` per scan; it is added last, so it is the SD of the difference between the
  CT and the same scan without noise.

Each scanner also states its acquisition as a DICOM header would (manufacturer, model, kernel, slice thickness, kVp,
contrast): keys of :data:`pipeline.io.acquisition.FIELDS`, which the demo writes as manifest columns, so the batch
stores them per image. kVp and contrast are labels only: the phantom's HU do not depend on them.

Scanners (:data:`SCANNERS`):

====  ==================  ==========  ============  ================  =====  ============
name  manufacturer model  kernel      noise SD      kernel blur       kVp    slice
====  ==================  ==========  ============  ================  =====  ============
A     SimCT Alpha 64      STANDARD    10-20 HU      none              120    1 x spacing
B     VoxelWorks Beta 16  SOFT        25-40 HU      SD 5 mm in-plane  100    2 x spacing
====  ==================  ==========  ============  ================  =====  ============

A is the default and renders exactly the phantoms the demo models were trained on (the same random draws, bit for
bit); B, an older, noisier scanner with a smooth kernel and slices twice as thick, sees the same anatomy from the
same seed (its draws are made in the same order), so the two differ only by the scanner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from pipeline.phantoms.solids import Array, Shape3, Spacing3

HU_MIN, HU_MAX = -1024, 3071
NOISE_GRAIN_VOXELS = 0.6  # SD (voxels) of the Gaussian that correlates the white noise


@dataclass(frozen=True)
class Scanner:
    """One simulated scanner (see the module's description).

    Attributes:
        name: its short name (``A``, ``B``).
        manufacturer, model, kernel: as its DICOM header states them.
        kvp: tube voltage it states (a label; the HU do not depend on it).
        contrast: contrast agent it states (a label).
        noise_hu: (low, high) of the noise SD in HU, drawn uniformly per scan.
        kernel_blur_mm: in-plane Gaussian SD (mm) of the kernel's blur beyond the voxel's own averaging (0: none).
        slices: slice thickness as a multiple of the z spacing (an integer >= 1).
    """

    name: str
    manufacturer: str
    model: str
    kernel: str
    kvp: float
    contrast: str
    noise_hu: tuple[float, float]
    kernel_blur_mm: float = 0.0
    slices: int = 1

    def __post_init__(self) -> None:
        if self.slices < 1 or self.kernel_blur_mm < 0 or not 0 <= self.noise_hu[0] <= self.noise_hu[1]:
            raise ValueError(f"scanner {self.name}: slices >= 1, kernel_blur_mm >= 0 and 0 <= noise low <= high")

    def slice_thickness_mm(self, spacing: Spacing3) -> float:
        """The slice thickness (mm) on a grid of voxel size ``spacing`` (z, y, x)."""
        return self.slices * float(spacing[0])

    def acquisition(self, spacing: Spacing3) -> dict[str, str | float]:
        """What its header states for a scan of voxel size ``spacing``, by :data:`pipeline.io.acquisition.FIELDS`
        key."""
        return {"manufacturer": self.manufacturer, "manufacturer_model": self.model,
                "convolution_kernel": self.kernel, "slice_thickness_mm": self.slice_thickness_mm(spacing),
                "kvp": self.kvp, "contrast_agent": self.contrast}


SCANNER_A = Scanner("A", "SimCT", "Alpha 64", "STANDARD", 120.0, "iodinated IV", (10.0, 20.0))
SCANNER_B = Scanner("B", "VoxelWorks", "Beta 16", "SOFT", 100.0, "iodinated IV", (25.0, 40.0), 5.0, 2)
SCANNERS = {s.name: s for s in (SCANNER_A, SCANNER_B)}
DEFAULT_SCANNER = SCANNER_A


def reconstruct(fine_hu: Array, shape: Shape3, spacing: Spacing3, fine: int, scanner: Scanner
                ) -> NDArray[np.floating]:
    """The voxel HU of a fine-grid volume (``fine`` samples per voxel and axis) without noise: the slice profile
    along z and the kernel in-plane (the module's description)."""
    if scanner.slices == 1 and scanner.kernel_blur_mm == 0.0:  # the default scanner: exactly the original rendering
        return fine_hu.reshape(shape[0], fine, shape[1], fine, shape[2], fine).mean(axis=(1, 3, 5))
    if (scanner.slices - 1) * fine % 2:
        raise ValueError(f"scanner {scanner.name}: {scanner.slices} slices need an even fine factor, got {fine}")
    planes = fine_hu.reshape(shape[0] * fine, shape[1], fine, shape[2], fine).mean(axis=(2, 4), dtype=np.float64)
    pad = (scanner.slices - 1) * fine // 2
    width = scanner.slices * fine
    padded = np.pad(planes, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    sums = np.concatenate([np.zeros((1, *padded.shape[1:])), np.cumsum(padded, axis=0)])
    starts = np.arange(shape[0]) * fine
    ct = (sums[starts + width] - sums[starts]) / width
    if scanner.kernel_blur_mm > 0.0:
        ct = gaussian_filter(ct, sigma=(0.0, scanner.kernel_blur_mm / spacing[1], scanner.kernel_blur_mm / spacing[2]),
                             mode="nearest")
    return ct


def with_noise(ct: NDArray[np.floating], rng: np.random.Generator, scanner: Scanner) -> NDArray[np.int16]:
    """``ct`` with the scanner's correlated noise (SD drawn from ``noise_hu``), rounded and clipped to int16 HU."""
    sigma = float(rng.uniform(*scanner.noise_hu))
    noise = gaussian_filter(rng.standard_normal(ct.shape, dtype=np.float32), sigma=NOISE_GRAIN_VOXELS)
    ct = ct + noise * (sigma / max(float(noise.std()), 1e-6))
    return np.clip(np.rint(ct), HU_MIN, HU_MAX).astype(np.int16)
