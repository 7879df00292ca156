"""Pooling of ensemble members (deep ensembles, checkpoint ensembles, TTA views) into one class distribution."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.settings import PoolingRule


def softmax(logits: NDArray[np.floating], temperature: float = 1.0) -> NDArray[np.floating]:
    """Softmax over axis 0 of logits shaped (C, ...), divided by ``temperature`` first; same dtype as the input."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    shifted = logits / np.asarray(temperature, dtype=logits.dtype)
    shifted -= shifted.max(axis=0, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=0, keepdims=True)
    return shifted


class MemberPool:
    """Running pool of member logits: add one member (or TTA view) at a time, never all in memory.

    ``prob_mean``: p̄ = mean_k softmax(z_k / T_m); ``logit_mean``: p̄ = softmax(mean_k z_k / T_m), where T_m is the
    per-member temperature (1 unless the ``per_member`` temperature mode is used). Accumulates in float32.
    """

    def __init__(self, rule: PoolingRule = "prob_mean", member_temperature: float = 1.0) -> None:
        if rule not in ("prob_mean", "logit_mean"):
            raise ValueError(f"rule must be 'prob_mean' or 'logit_mean', got {rule!r}")
        if not member_temperature > 0:
            raise ValueError(f"member_temperature must be > 0, got {member_temperature}")
        self.rule: PoolingRule = rule
        self.member_temperature = member_temperature
        self.count = 0
        self._total: NDArray[np.float32] | None = None

    def add(self, logits: NDArray[np.floating]) -> None:
        """Add one member's logits shaped (C, Z, Y, X); every member must have the same shape."""
        if logits.ndim < 2:
            raise ValueError(f"logits must be shaped (C, ...), got {logits.shape}")
        if self._total is not None and logits.shape != self._total.shape:
            raise ValueError(f"logits shape {logits.shape} differs from the pool's {self._total.shape}")
        member = logits.astype(np.float32, copy=True)
        if self.rule == "prob_mean":
            member = softmax(member, self.member_temperature)
        if self._total is None:
            self._total = member
        else:
            self._total += member
        self.count += 1

    def probabilities(self) -> NDArray[np.float32]:
        """The pooled class probabilities p̄, shaped (C, Z, Y, X), float32."""
        if self._total is None:
            raise ValueError("the pool is empty: add at least one member")
        mean = self._total / np.float32(self.count)
        if self.rule == "logit_mean":
            return softmax(mean, self.member_temperature)
        return mean


def pool_members(
    member_logits: Iterable[NDArray[np.floating]], rule: PoolingRule = "prob_mean", member_temperature: float = 1.0
) -> NDArray[np.float32]:
    """Pool member logits (each shaped (C, Z, Y, X)) into class probabilities with :class:`MemberPool`."""
    pool = MemberPool(rule, member_temperature)
    for logits in member_logits:
        pool.add(logits)
    return pool.probabilities()
