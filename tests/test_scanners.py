"""The phantoms' simulated scanners: the default renders the phantoms the demo models were trained on bit for bit;
the second sees the same anatomy with the documented noise SD, slice thickness and kernel blur, measured."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from pipeline.io.acquisition import KEYS, Acquisition
from pipeline.phantoms.ct import generate_phantom
from pipeline.phantoms.scanners import DEFAULT_SCANNER, SCANNER_A, SCANNER_B, SCANNERS, Scanner, reconstruct

SHAPE, SPACING, FINE = (16, 12, 12), (12.0, 7.0, 7.0), 2
#: sha256 (first 16 hex digits) of ct, labels and truth of phantom 9000, as rendered before scanners existed
PHANTOM_9000 = "7ae4a580900253f6"


def test_the_default_scanner_renders_the_original_phantoms_bit_for_bit() -> None:
    phantom = generate_phantom(9000)
    digest = hashlib.sha256(phantom.ct.tobytes() + phantom.labels.tobytes() + phantom.truth.tobytes()).hexdigest()

    assert DEFAULT_SCANNER is SCANNER_A and phantom.scanner is SCANNER_A
    assert digest[:16] == PHANTOM_9000
    assert np.array_equal(generate_phantom(9000, scanner=SCANNER_A).ct, phantom.ct)


def test_the_second_scanner_sees_the_same_anatomy_seeded() -> None:
    a, b, again = (generate_phantom(7, scanner=s) for s in (SCANNER_A, SCANNER_B, SCANNER_B))

    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.truth, b.truth)
    assert np.array_equal(b.ct, again.ct), "seeded"
    assert not np.array_equal(a.ct, b.ct)


@pytest.mark.parametrize("scanner", list(SCANNERS.values()), ids=list(SCANNERS))
def test_the_noise_sd_is_the_documented_one(scanner: Scanner) -> None:
    noisy = generate_phantom(3, scanner=scanner).ct.astype(np.float64)
    clean = generate_phantom(3, scanner=replace(scanner, noise_hu=(0.0, 0.0))).ct.astype(np.float64)
    unclipped = (clean > -900) & (noisy > -1024) & (noisy < 3071)

    sd = float((noisy - clean)[unclipped].std())

    low, high = scanner.noise_hu
    assert low - 1.0 < sd < high + 1.0, f"{scanner.name}: noise SD {sd:.1f} HU, documented {low:g}-{high:g}"


def _response(scanner: Scanner, where: tuple[slice, slice, slice]) -> np.ndarray:
    fine = np.zeros(tuple(n * FINE for n in SHAPE), np.float32)
    fine[where] = 1000.0
    return np.asarray(reconstruct(fine, SHAPE, SPACING, FINE, scanner))


@pytest.mark.parametrize("scanner", list(SCANNERS.values()), ids=list(SCANNERS))
def test_the_slice_thickness_is_the_measured_profile_width(scanner: Scanner) -> None:
    profile = _response(scanner, (slice(16, 17), slice(None), slice(None)))[:, 6, 6]  # a thin plate at z = 16 fine

    full_width_half_maximum = float((profile >= profile.max() / 2).sum()) * SPACING[0]

    assert full_width_half_maximum == scanner.slice_thickness_mm(SPACING)
    assert profile.sum() == pytest.approx(1000.0 / FINE), "the profile keeps the plate's dose"


def test_the_kernel_blur_widens_the_in_plane_response() -> None:
    def sd_mm(scanner: Scanner) -> float:
        line = _response(scanner, (slice(None), slice(None), slice(12, 13)))[8, 6, :]  # a thin line at x = 12 fine
        x = np.arange(line.size) * SPACING[2]
        mean = float((x * line).sum() / line.sum())
        return float(np.sqrt(((x - mean) ** 2 * line).sum() / line.sum()))

    assert sd_mm(SCANNER_A) == pytest.approx(0.0)
    assert sd_mm(SCANNER_B) == pytest.approx(SCANNER_B.kernel_blur_mm, rel=0.15)


def test_each_scanner_states_its_acquisition() -> None:
    states = {s.name: Acquisition.of(generate_phantom(1, scanner=s).acquisition()) for s in SCANNERS.values()}

    assert all(set(dict(a.values)) <= set(KEYS) for a in states.values())
    assert states["A"].get("slice_thickness_mm") == 12.0 and states["B"].get("slice_thickness_mm") == 24.0
    assert states["A"].scanner() == "SimCT Alpha 64" and states["B"].scanner() == "VoxelWorks Beta 16"
    with pytest.raises(ValueError, match="slices >= 1"):
        Scanner("C", "m", "n", "k", 120.0, "none", (10.0, 5.0))
