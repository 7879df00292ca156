"""Compiled kernels (numba) for the two steps numpy cannot do in a few streaming passes.

- :func:`within_radius`: which voxels lie within r mm of a seed, by an exact thresholded Euclidean distance
  transform (Felzenszwalb-Huttenlocher's separable squared transform in float64, anisotropic spacing, each term
  rounded and summed in SciPy's order). Oracle in the tests:
  ``scipy.ndimage.distance_transform_edt(~seed, sampling) <= r``.
- :func:`block_occupancy`: which coarse blocks of a mask hold a voxel (for the ROI's component boxes).
- :func:`stable_descending_order`: a stable LSD radix argsort of non-negative scores, highest first, ties in index
  order. Oracle in the tests: ``np.argsort(-scores, kind="stable")``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

_INF = math.inf
_DIGIT_BITS = 16
_DIGITS = 1 << _DIGIT_BITS


@numba.njit(cache=True, nogil=True)
def _lower_envelope(f, h, out, vertices, bounds):  # type: ignore[no-untyped-def]
    """1-D squared distance transform of ``f`` (inf = no source) with spacing ``h``, into ``out``.

    out[q] = min_p ((h·(q - p))² + f[p]), each term rounded as SciPy's transform rounds it.
    """
    n = f.shape[0]
    h2 = h * h
    k = -1
    for q in range(n):
        fq = f[q]
        if fq == _INF:
            continue
        if k < 0:
            k = 0
            vertices[0] = q
            bounds[0] = -_INF
            continue
        s = 0.0
        while k >= 0:
            p = vertices[k]
            s = ((fq + h2 * q * q) - (f[p] + h2 * p * p)) / (2.0 * h2 * (q - p))
            if s <= bounds[k]:
                k -= 1
            else:
                break
        k += 1
        vertices[k] = q
        bounds[k] = s if k > 0 else -_INF
    if k < 0:
        out[:n] = _INF
        return
    bounds[k + 1] = _INF
    j = 0
    for q in range(n):
        while bounds[j + 1] < q:
            j += 1
        best = _INF
        for i in range(max(0, j - 1), min(k, j + 1) + 1):
            d = h * (q - vertices[i])
            best = min(best, d * d + f[vertices[i]])
        out[q] = best


@numba.njit(cache=True, nogil=True)
def _within_kernel(seed, hz, hy, hx, radius):  # type: ignore[no-untyped-def]
    """Squared distances summed in SciPy's order, ((z·hz)² + (y·hy)²) + (x·hx)²: passes along z, y, then x."""
    depth, height, width = seed.shape
    r2 = radius * radius
    reach_x = math.floor(radius / hx)
    reach_y = math.floor(radius / hy)
    squared = np.full((depth, height, width), _INF)
    plane_used = np.zeros(height, np.bool_)
    for z in range(depth):
        for y in range(height):
            hit = 0
            for x in range(width):
                hit |= seed[z, y, x]
            if hit:
                plane_used[y] = True
    last = np.empty(width, np.int64)
    span = np.full((depth, 4), -1, np.int64)
    for y in range(height):
        if not plane_used[y]:
            continue
        last[:] = -1
        for z in range(depth):
            for x in range(width):
                if seed[z, y, x]:
                    last[x] = z
                d = hz * (z - last[x])
                squared[z, y, x] = _INF if last[x] < 0 else d * d
        last[:] = -1
        for z in range(depth - 1, -1, -1):
            for x in range(width):
                if seed[z, y, x]:
                    last[x] = z
                if last[x] >= 0:
                    d = hz * (last[x] - z)
                    squared[z, y, x] = min(squared[z, y, x], d * d)
                if squared[z, y, x] > r2:
                    squared[z, y, x] = _INF
                else:
                    if span[z, 0] < 0:
                        span[z, 0] = y
                        span[z, 2] = x
                    span[z, 1] = y
                    span[z, 2] = min(span[z, 2], x)
                    span[z, 3] = max(span[z, 3], x)
    n = max(depth, height, width)
    plane = np.empty((width, n))
    result = np.empty(n)
    vertices = np.empty(n, np.int64)
    bounds = np.empty(n + 1)
    row_span = np.full((depth, height, 2), -1, np.int64)
    for z in range(depth):
        if span[z, 0] < 0:
            continue
        ya, yb, xa, xb = span[z, 0], span[z, 1] + 1, span[z, 2], span[z, 3] + 1
        y0 = max(0, ya - reach_y)
        y1 = min(height, yb + reach_y)
        for x in range(xa, xb):
            for y in range(y0, ya):
                plane[x, y - y0] = _INF
            for y in range(yb, y1):
                plane[x, y - y0] = _INF
        for y in range(ya, yb):
            for x in range(xa, xb):
                plane[x, y - y0] = squared[z, y, x]
        for x in range(xa, xb):
            _lower_envelope(plane[x, : y1 - y0], hy, result, vertices, bounds)
            for y in range(y0, y1):
                value = result[y - y0]
                if value <= r2:
                    squared[z, y, x] = value
                    if row_span[z, y, 0] < 0:
                        row_span[z, y, 0] = x
                    row_span[z, y, 1] = x
                else:
                    squared[z, y, x] = _INF
    inside = np.zeros((depth, height, width), np.bool_)
    for z in range(depth):
        for y in range(height):
            if row_span[z, y, 0] < 0:
                continue
            x0 = max(0, row_span[z, y, 0] - reach_x)
            x1 = min(width, row_span[z, y, 1] + reach_x + 1)
            _lower_envelope(squared[z, y, x0:x1], hx, result, vertices, bounds)
            for x in range(x0, x1):
                inside[z, y, x] = math.sqrt(result[x - x0]) <= radius
    return inside


def within_radius(seed: NDArray[np.bool_], spacing: tuple[float, float, float], radius_mm: float) -> NDArray[np.bool_]:
    """Boolean mask (Z, Y, X): Euclidean distance (mm, ``spacing`` (z, y, x)) to the nearest ``seed`` voxel <= r.

    Equals ``scipy.ndimage.distance_transform_edt(~seed, sampling=spacing) <= radius_mm`` wherever ``seed`` holds
    a voxel; memory: 9 bytes per voxel of ``seed``.
    """
    hz, hy, hx = (float(s) for s in spacing)
    return _within_kernel(np.asarray(seed, dtype=np.bool_).view(np.uint8), hz, hy, hx, float(radius_mm))


@numba.njit(cache=True, nogil=True)
def _occupancy_kernel(seed, block, occupied):  # type: ignore[no-untyped-def]
    depth, height, width = seed.shape
    for z in range(depth):
        for y in range(height):
            hit = 0
            for x in range(width):
                hit |= seed[z, y, x]
            if hit == 0:
                continue
            for x in range(width):
                if seed[z, y, x]:
                    occupied[z // block, y // block, x // block] = True


def block_occupancy(seed: NDArray[np.bool_], block: int) -> NDArray[np.bool_]:
    """Which ``block``³ blocks of ``seed`` (Z, Y, X) hold a seed voxel: shape ceil((Z, Y, X) / block)."""
    shape = tuple(-(-n // block) for n in seed.shape)
    occupied = np.zeros(shape, dtype=np.bool_)
    _occupancy_kernel(np.asarray(seed, dtype=np.bool_).view(np.uint8), block, occupied)
    return occupied


@numba.njit(cache=True, nogil=True)
def _radix_argsort(keys, order, n_bits):  # type: ignore[no-untyped-def]
    """Stable ascending argsort of unsigned integer ``keys`` (``n_bits`` significant), permuting ``order``."""
    n = keys.size
    spare_order = np.empty_like(order)
    current = keys.copy()
    spare = np.empty_like(current)
    mask = _DIGITS - 1
    for shift in range(0, n_bits, _DIGIT_BITS):
        counts = np.zeros(_DIGITS + 1, np.int64)
        for i in range(n):
            counts[((current[i] >> shift) & mask) + 1] += 1
        if counts.max() == n:
            continue
        for d in range(_DIGITS):
            counts[d + 1] += counts[d]
        for i in range(n):
            digit = (current[i] >> shift) & mask
            position = counts[digit]
            counts[digit] = position + 1
            spare[position] = current[i]
            spare_order[position] = order[i]
        current, spare = spare, current
        order, spare_order = spare_order, order
    return order


def _descending_keys(bits: NDArray[np.unsignedinteger], width: int) -> NDArray[np.unsignedinteger]:
    """Unsigned keys whose ascending order is the descending order of the IEEE floats with these bit patterns."""
    sign = bits >> np.asarray(width - 1, dtype=bits.dtype)
    magnitude_mask = ~(np.asarray(1, dtype=bits.dtype) << (width - 1))
    flip = np.where(sign.astype(bool), np.asarray(0, dtype=bits.dtype), magnitude_mask)
    return bits ^ flip


def stable_descending_order(scores: NDArray[np.floating]) -> NDArray[np.signedinteger]:
    """Indices sorting finite ``scores`` (n,) from highest to lowest; ties keep ascending index order.

    float32 or float64 (other dtypes are widened to float64). The IEEE bit patterns, with the sign handled, sort
    like the values (-0.0 is taken as 0.0); a stable radix sort (16-bit digits) of keys that reverse that order
    gives the result, as int32 indices below 2^31 elements (int64 above).
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    order = np.arange(scores.size, dtype=np.int32 if scores.size < 2**31 else np.int64)
    if scores.dtype == np.float32:
        keys = _descending_keys((scores + np.float32(0)).view(np.uint32), 32)
        return _radix_argsort(keys, order, 32)
    keys = _descending_keys((scores.astype(np.float64) + 0.0).view(np.uint64), 64)
    return _radix_argsort(keys, order, 64)


@numba.njit(cache=True, nogil=True)
def _auroc_pair_kernel(ranked_scores, ranked_codes):  # type: ignore[no-untyped-def]
    """Mann-Whitney sums for two subsets from scores ranked highest first; code = 2·[second subset] + [positive]."""
    twice_u = np.zeros(2, np.int64)
    n_pos = np.zeros(2, np.int64)
    n_neg = np.zeros(2, np.int64)
    group_pos = np.zeros(2, np.int64)
    group_neg = np.zeros(2, np.int64)
    group_value = np.zeros(2, ranked_scores.dtype)
    for i in range(ranked_scores.size - 1, -1, -1):
        s = ranked_codes[i] >> 1
        positive = ranked_codes[i] & 1
        value = ranked_scores[i]
        if value != group_value[s]:
            twice_u[s] += group_pos[s] * (2 * n_neg[s] + group_neg[s])
            n_pos[s] += group_pos[s]
            n_neg[s] += group_neg[s]
            group_pos[s] = 0
            group_neg[s] = 0
            group_value[s] = value
        group_pos[s] += positive
        group_neg[s] += 1 - positive
    for s in range(2):
        twice_u[s] += group_pos[s] * (2 * n_neg[s] + group_neg[s])
        n_pos[s] += group_pos[s]
        n_neg[s] += group_neg[s]
    return twice_u, n_pos, n_neg


def ranked_auroc_pair(
    order: NDArray[np.signedinteger],
    scores: NDArray[np.floating],
    positive: NDArray[np.bool_],
    first: NDArray[np.bool_],
) -> tuple[float, float]:
    """AUROC of ``scores`` for ``positive`` within the subset ``first`` and within its complement, in one pass.

    ``order`` ranks all n voxels by score (any stable descending ranking); ties count one half (average ranks);
    exact integer Mann-Whitney U up to the final division; NaN for a subset lacking positives or negatives.
    """
    codes = (~first).astype(np.uint8)
    codes <<= 1
    codes |= positive
    twice_u, n_pos, n_neg = _auroc_pair_kernel(scores[order], codes[order])
    pair = [
        float(twice_u[s]) / (2.0 * float(n_pos[s]) * float(n_neg[s])) if n_pos[s] and n_neg[s] else math.nan
        for s in range(2)
    ]
    return pair[0], pair[1]


SEED_UNION, SEED_PREDICTION, SEED_REFERENCE = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _scan_kernel(  # type: ignore[no-untyped-def]
    probs, labels, seed_rule, tolerance, seed, prediction, prediction_counts, reference_counts
):
    n_classes, depth, height, width = probs.shape
    write_prediction = prediction.size > 0
    best = np.empty(width, probs.dtype)
    total = np.empty(width, probs.dtype)
    arg = np.empty(width, np.uint8)
    for z in range(depth):
        for y in range(height):
            negative = False
            for x in range(width):
                value = probs[0, z, y, x]
                best[x] = value
                total[x] = value
                arg[x] = 0
                negative |= not value >= 0
            for c in range(1, n_classes):
                for x in range(width):
                    value = probs[c, z, y, x]
                    total[x] += value
                    larger = value > best[x]
                    best[x] = value if larger else best[x]
                    arg[x] = c if larger else arg[x]
                    negative |= not value >= 0
            unnormalised = False
            for x in range(width):
                unnormalised |= not abs(total[x] - 1) <= tolerance
            if negative:
                return z, 1
            if unnormalised:
                return z, 2
            if seed_rule == SEED_UNION:
                for x in range(width):
                    seed[z, y, x] = arg[x] > 0 or labels[z, y, x] > 0
            elif seed_rule == SEED_PREDICTION:
                for x in range(width):
                    seed[z, y, x] = arg[x] > 0
                for x in range(width):
                    reference_counts[labels[z, y, x]] += 1
            else:
                for x in range(width):
                    seed[z, y, x] = labels[z, y, x] > 0
                for x in range(width):
                    prediction_counts[arg[x]] += 1
            if write_prediction:
                for x in range(width):
                    prediction[z, y, x] = arg[x]
    return -1, 0


def scan_volume(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    seed_rule: int,
    tolerance: float,
    with_prediction: bool,
) -> tuple[NDArray[np.bool_], NDArray[np.uint8] | None, NDArray[np.int64], NDArray[np.int64], tuple[int, int]]:
    """One fused pass over (C, Z, Y, X) probabilities and (Z, Y, X) labels.

    Checks every voxel (p >= 0 and finite, |Σ_c p - 1| <= ``tolerance`` in the input's precision), takes the
    argmax (first class on ties), writes the ROI seed (``SEED_*`` rule) and, optionally, the prediction map.
    Outside the ROI the seed rule leaves one side unknown, so it counts the reference classes (``SEED_PREDICTION``)
    or the predicted classes (``SEED_REFERENCE``); labels must already be in 0..C-1. Stops at the first bad voxel: the
    last item is (z of that voxel, reason 1 = negative/NaN, 2 = sum), or (-1, 0) when all is well.
    """
    spatial = probs.shape[1:]
    n_classes = probs.shape[0]
    seed = np.zeros(spatial, dtype=np.bool_)
    prediction = np.zeros(spatial if with_prediction else (0, 0, 0), dtype=np.uint8)
    prediction_counts = np.zeros(n_classes, dtype=np.int64)
    reference_counts = np.zeros(n_classes, dtype=np.int64)
    where, reason = _scan_kernel(
        probs, labels, seed_rule, tolerance, seed, prediction, prediction_counts, reference_counts
    )
    return seed, prediction if with_prediction else None, prediction_counts, reference_counts, (int(where), int(reason))


@numba.njit(cache=True, nogil=True)
def _reliability_kernel(confidence, correct, n_bins, count, sum_confidence, sum_correct):  # type: ignore[no-untyped-def]
    for i in range(confidence.size):
        value = np.float64(confidence[i])
        m = math.ceil(value * n_bins) - 1
        m = min(max(m, 0), n_bins - 1)
        if m > 0 and value <= m / n_bins:
            m -= 1
        elif m < n_bins - 1 and value > (m + 1) / n_bins:
            m += 1
        count[m] += 1
        sum_confidence[m] += value
        if correct[i]:
            sum_correct[m] += 1


def reliability_sums(
    confidence: NDArray[np.floating], correct: NDArray[np.bool_], n_bins: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """Per-bin count, Σ confidence (float64) and Σ correct of equal-width bins on (0, 1], right-closed.

    Bin m holds (m/M, (m+1)/M] with the edges m/M correctly rounded in float64; a confidence of 0 goes to bin 0.
    """
    count = np.zeros(n_bins, np.int64)
    sum_confidence = np.zeros(n_bins, np.float64)
    sum_correct = np.zeros(n_bins, np.int64)
    _reliability_kernel(confidence, correct.astype(np.bool_, copy=False), n_bins, count, sum_confidence, sum_correct)
    return count, sum_confidence, sum_correct


@numba.njit(cache=True, nogil=True)
def _pooled_nll_kernel(log_probs, labels, inverse_temperature):  # type: ignore[no-untyped-def]
    n_classes, n = log_probs.shape
    total = 0.0
    for i in range(n):
        top = -math.inf
        for c in range(n_classes):
            top = max(top, log_probs[c, i] * inverse_temperature)
        acc = 0.0
        for c in range(n_classes):
            acc += math.exp(log_probs[c, i] * inverse_temperature - top)
        total += top + math.log(acc) - log_probs[labels[i], i] * inverse_temperature
    return total / n


def pooled_nll(log_probs: NDArray[np.float64], labels: NDArray[np.intp], temperature: float) -> float:
    """Mean NLL of ``labels`` under softmax(ln p̄ / T) over voxels, in one pass (float64, max-shifted logsumexp).

    Args:
        log_probs: ln p̄ shaped (C, n), float64, finite. labels: class index per voxel, shape (n,).
        temperature: T > 0.
    """
    return float(_pooled_nll_kernel(np.ascontiguousarray(log_probs), labels, 1.0 / temperature))
