"""Running pools of the configuration grid: every forward pass feeds each configuration that uses it, and the pooled
maps come out on the CT grid one configuration at a time.

Where the pools live follows the spec's ``grid_mapping`` option: ``pooled`` (default) pools softmax probabilities on
the network's grid, in torch on the predictor's device, and maps each pool to the CT grid once, when its turn comes;
``per_pass`` maps every pass's logits to the CT grid first (nnU-Net's rule for a single prediction) and pools there.

Cost per configuration (:meth:`GridPrediction.cost`): configurations share passes, so a configuration's seconds are
what it would cost alone: the case's preprocessing, plus the measured seconds of each of its passes (weights loading
included for a member's first pass; under ``per_pass`` the pass's mapping too), plus its own pool's time (adding the
passes, the mean, the mapping to the CT grid). Its forward passes are the passes it pools. On CUDA the clock is read
after a synchronisation, so a pass's seconds are its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from numpy.typing import NDArray

from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import Configuration, View
from pipeline.metrics.pooling import MemberPool
from pipeline.metrics.settings import GridMapping, PoolingRule


class NetworkPool:
    """Running pool of member logits (C, z, y, x) on the network's grid, in torch on the logits' device.

    The rules of :class:`pipeline.metrics.pooling.MemberPool`: ``prob_mean`` p̄ = mean_k softmax(z_k / T_m),
    ``logit_mean`` p̄ = softmax(mean_k z_k / T_m); accumulates in float32.
    """

    def __init__(self, rule: PoolingRule = "prob_mean", member_temperature: float = 1.0) -> None:
        if rule not in ("prob_mean", "logit_mean"):
            raise ValueError(f"rule must be 'prob_mean' or 'logit_mean', got {rule!r}")
        if not member_temperature > 0:
            raise ValueError(f"member_temperature must be > 0, got {member_temperature}")
        self.rule: PoolingRule = rule
        self.member_temperature = member_temperature
        self.count = 0
        self._total: torch.Tensor | None = None

    def add(self, logits: torch.Tensor) -> None:
        """Add one member's logits; every member must have the same shape."""
        if self._total is not None and logits.shape != self._total.shape:
            raise ValueError(f"logits shape {tuple(logits.shape)} differs from the pool's {tuple(self._total.shape)}")
        member = logits.float()
        if self.rule == "prob_mean":
            member = torch.softmax(member / self.member_temperature, dim=0)
        if self._total is None:
            self._total = member.clone() if member is logits else member
        else:
            self._total += member
        self.count += 1

    def probabilities(self) -> torch.Tensor:
        """The pooled class probabilities p̄ (C, z, y, x), float32, on the logits' device."""
        if self._total is None:
            raise ValueError("the pool is empty: add at least one member")
        mean = self._total / self.count
        if self.rule == "logit_mean":
            return torch.softmax(mean / self.member_temperature, dim=0)
        return mean


@dataclass(frozen=True)
class Cost:
    """What one configuration costs on one case, as if run alone (see the module's description)."""

    forward_passes: int
    seconds: float
    device: str


@dataclass
class GridPrediction:
    """One CT's grid after its forward passes; iterate it (once) for (configuration name, probabilities).

    Each item's probabilities are (C, Z, Y, X) float32 on the CT grid. A configuration and its +TS twin come one
    after the other with the same array (the temperature is applied at evaluation), unless the +TS configuration has
    a member temperature (``per_member`` mode): then it is a pool of its own. A pool is mapped only when its
    turn comes and the iterator keeps no reference to it afterwards, so a caller that drops each map before asking
    for the next holds one CT-grid map at a time.

    Attributes:
        spacing: the CT's voxel size (z, y, x) in mm.
        forward_passes: the (member, view) passes run.
        seconds_mapping: time spent so far making the streamed maps: the mappings under ``pooled``; under
            ``per_pass`` only the pools' final mean (its mappings ran with the passes).
        device: where the passes ran (``cpu``, or ``cuda: <GPU name>``).
    """

    spacing: tuple[float, float, float]
    forward_passes: int
    _groups: list[tuple[tuple[str, ...], Callable[[], NDArray[np.float32]]]]
    seconds_mapping: float = 0.0
    device: str = "cpu"
    _clock: _Clock | None = field(default=None, repr=False)
    _streamed: bool = field(default=False, repr=False)

    def cost(self, name: str) -> Cost:
        """The cost of configuration ``name`` on this case; complete once its map has been streamed."""
        if self._clock is None:
            raise ValueError("this prediction measured no cost")
        group, passes = self._clock.configurations[name]
        seconds = (self._clock.preprocessing + sum(self._clock.passes[pair] for pair in passes)
                   + self._clock.pools[group])
        return Cost(len(passes), seconds, self.device)

    def __iter__(self) -> Iterator[tuple[str, NDArray[np.float32]]]:
        if self._streamed:
            raise RuntimeError("a grid prediction streams its configurations once")
        self._streamed = True
        return self._stream()

    def _stream(self) -> Iterator[tuple[str, NDArray[np.float32]]]:
        group = -1
        while self._groups:
            names, finish = self._groups.pop(0)
            group += 1
            start = time.perf_counter()
            probabilities = finish()
            del finish
            seconds = time.perf_counter() - start
            self.seconds_mapping += seconds
            if self._clock is not None:
                self._clock.pools[group] += seconds
            for name in names:
                yield name, probabilities
            del probabilities


@dataclass
class _Clock:
    """Measured seconds of one case: preprocessing, each pass, each pool; each configuration's (pool, passes)."""

    preprocessing: float
    configurations: dict[str, tuple[int, frozenset[tuple[str, View]]]]
    passes: dict[tuple[str, View], float] = field(default_factory=dict)
    pools: list[float] = field(default_factory=list)


def _synchronised(device: torch.device) -> float:
    """The clock, after the device's queued work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda: <GPU name>``: what a result's seconds were measured on."""
    return f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


def _pool_groups(
    configurations: Sequence[Configuration], member_temperature: dict[str, float]
) -> tuple[list[tuple[tuple[str, ...], float]], dict[tuple[str, View], list[int]]]:
    """Configurations that pool the same passes at the same member temperature share one pool: the groups (names,
    member temperature) in order of first appearance, and for each pass the groups that use it."""
    index: dict[tuple[object, ...], int] = {}
    groups: list[tuple[tuple[str, ...], float]] = []
    users: dict[tuple[str, View], list[int]] = {}
    for configuration in configurations:
        temperature = member_temperature.get(configuration.name, 1.0)
        key = (*configuration.pool_key, temperature)
        if key not in index:
            index[key] = len(groups)
            groups.append(((), temperature))
        names, _ = groups[index[key]]
        groups[index[key]] = ((*names, configuration.name), temperature)
        for pair in configuration.passes:
            if index[key] not in users.setdefault(pair, []):
                users[pair].append(index[key])
    return groups, users


def predict_grid(
    predictor: MemberPredictor,
    image: sitk.Image,
    configurations: Sequence[Configuration],
    rule: PoolingRule = "prob_mean",
    member_temperature: dict[str, float] | None = None,
    grid_mapping: GridMapping = "pooled",
    on_pass: Callable[[str, View, NDArray[np.float32]], None] | None = None,
) -> GridPrediction:
    """Run every (member, view) pass of the grid once on one CT; the pooled maps then stream from the result.

    Args:
        predictor: the members.
        image: the CT.
        configurations: the grid (e.g. :func:`pipeline.inference.grid.default_grid`).
        rule: member pooling rule.
        member_temperature: per configuration name, a temperature applied to each member before pooling (the
            ``per_member`` temperature mode); configurations not named pool unscaled members.
        grid_mapping: ``pooled`` (one mapping per pool, on the predictor's device) or ``per_pass`` (one mapping per
            pass, nnU-Net's NumPy resampling; every pool held on the CT grid until streamed).
        on_pass: ``per_pass`` only: called with each pass's (member, view, logits (C, Z, Y, X) float32 on the CT
            grid) before it is pooled, e.g. to store what pooling at another member temperature needs.
    """
    if grid_mapping not in ("pooled", "per_pass"):
        raise ValueError(f"grid_mapping must be 'pooled' or 'per_pass', got {grid_mapping!r}")
    if on_pass is not None and grid_mapping != "per_pass":
        raise ValueError("on_pass needs grid_mapping='per_pass': only then are the passes on the CT grid")
    groups, users = _pool_groups(configurations, member_temperature or {})
    began = _synchronised(predictor.device)
    case = predictor.preprocess(image)
    group_of = {name: index for index, (names, _) in enumerate(groups) for name in names}
    clock = _Clock(_synchronised(predictor.device) - began,
                   {c.name: (group_of[c.name], c.passes) for c in configurations}, pools=[0.0] * len(groups))
    count = 0
    finishers: list[Callable[[], NDArray[np.float32]]] = []
    pools: list[NetworkPool] | list[MemberPool]
    if grid_mapping == "pooled":
        pools = [NetworkPool(rule, temperature) for _, temperature in groups]
        stream: Iterator[tuple[str, View, Any]] = predictor.network_passes(case, list(users))
    else:
        pools = [MemberPool(rule, temperature) for _, temperature in groups]
        stream = predictor.passes(case, list(users))
    began = _synchronised(predictor.device)
    for member, view, logits in stream:
        clock.passes[(member, view)] = _synchronised(predictor.device) - began
        count += 1
        if on_pass is not None:
            on_pass(member, view, logits)
        for group in users[(member, view)]:
            began = time.perf_counter()
            pools[group].add(logits)
            clock.pools[group] += _synchronised(predictor.device) - began
        began = _synchronised(predictor.device)
    if grid_mapping == "pooled":
        finishers = [lambda pool=pool: predictor.to_ct_grid(pool.probabilities(), case) for pool in pools]
    else:
        finishers = [pool.probabilities for pool in pools]
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    return GridPrediction(
        spacing=(spacing[0], spacing[1], spacing[2]),
        forward_passes=count,
        _groups=[(names, finish) for (names, _), finish in zip(groups, finishers, strict=True)],
        device=device_name(predictor.device),
        _clock=clock,
    )
