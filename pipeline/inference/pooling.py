"""Running pools of the configuration grid: every forward pass feeds each configuration that uses it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import Configuration, View
from pipeline.metrics.pooling import MemberPool
from pipeline.metrics.settings import PoolingRule


@dataclass(frozen=True)
class GridPrediction:
    """Pooled class probabilities (C, Z, Y, X) on the CT grid per configuration name.

    A configuration and its +TS twin share one array; the temperature is applied at evaluation.
    """

    probabilities: dict[str, NDArray[np.float32]]
    spacing: tuple[float, float, float]
    forward_passes: int


def predict_grid(
    predictor: MemberPredictor,
    image: sitk.Image,
    configurations: Sequence[Configuration],
    rule: PoolingRule = "prob_mean",
    member_temperature: dict[str, float] | None = None,
) -> GridPrediction:
    """Pooled probabilities of every configuration for one CT, with each (member, view) pass computed once.

    Args:
        predictor: the members.
        image: the CT.
        configurations: the grid (e.g. :func:`pipeline.inference.grid.default_grid`).
        rule: member pooling rule.
        member_temperature: per configuration name, a temperature applied to each member before pooling (the
            ``per_member`` temperature mode); configurations not named pool unscaled members.
    """
    temperatures = member_temperature or {}
    pools: dict[tuple[object, ...], MemberPool] = {}
    names: dict[str, tuple[object, ...]] = {}
    for configuration in configurations:
        temperature = temperatures.get(configuration.name, 1.0)
        key = (*configuration.pool_key, temperature)
        pools.setdefault(key, MemberPool(rule, temperature))
        names[configuration.name] = key
    users: dict[tuple[str, View], list[MemberPool]] = {}
    for configuration in configurations:
        for pair in configuration.passes:
            pool = pools[names[configuration.name]]
            if pool not in users.setdefault(pair, []):
                users[pair].append(pool)
    case = predictor.preprocess(image)
    count = 0
    for member, view, logits in predictor.passes(case, list(users)):
        count += 1
        for pool in users[(member, view)]:
            pool.add(logits)
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    pooled = {key: pool.probabilities() for key, pool in pools.items()}
    return GridPrediction(
        probabilities={name: pooled[key] for name, key in names.items()},
        spacing=(spacing[0], spacing[1], spacing[2]),
        forward_passes=count,
    )
