"""The sweep's sub-configurations on real nnU-Net inference (the session's smoke-trained set): no extra forward pass,
each equal to a brute-force pooling of the members and views it names, and a measured cost per configuration."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import IDENTITY, grid_for, mirror_views
from pipeline.inference.model_set import ModelSet
from pipeline.inference.pooling import predict_grid
from pipeline.metrics.pooling import softmax
from pipeline.phantoms.ct import generate_phantom

# The documented view order: identity, the single-axis flips, the two-axis flips, all three axes.
VIEW_ORDER = [IDENTITY, (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


@pytest.fixture(scope="module")
def image() -> sitk.Image:
    phantom = generate_phantom(4343)
    ct = sitk.GetImageFromArray(phantom.ct)
    ct.SetSpacing(tuple(reversed(phantom.spacing)))
    return ct


def _chosen(name: str, folds: list[str], checkpoints: list[str]) -> tuple[list[str], list[tuple[int, ...]]]:
    """The members and views a sweep name means, read from the name alone (the oracle's own reading)."""
    match = re.fullmatch(r"(?:(DE|CE)(\d+))?\+?(?:TTA(\d+))?", name)
    assert match is not None, name
    group, k, views = match.group(1), int(match.group(2) or 1), int(match.group(3) or 1)
    members = checkpoints[-k:] if group == "CE" else folds[:k]
    return members, VIEW_ORDER[:views]


def test_every_sub_configuration_costs_no_extra_pass_and_equals_brute_force_pooling(
    model_set: ModelSet, image: sitk.Image
) -> None:
    counting = MemberPredictor(model_set)
    spec_grid = grid_for(model_set, counting.mirror_axes())
    grid = grid_for(model_set, counting.mirror_axes(), sweep=True)
    sweep = [c for c in grid if c.sweep]
    assert len(sweep) >= 8
    assert mirror_views() == tuple(VIEW_ORDER)

    began = time.perf_counter()
    prediction = predict_grid(counting, image, grid)
    maps = {}
    for name, probabilities in prediction:
        maps[name] = probabilities
    wall = time.perf_counter() - began

    spec_passes = set().union(*(c.passes for c in spec_grid))
    assert set(counting.forward_passes) == spec_passes, "the sweep runs exactly the spec grid's passes"
    assert set(counting.forward_passes.values()) == {1}, "each pass once"
    assert prediction.forward_passes == len(model_set.members) * 8

    folds = [m.name for m in model_set.members if m.name.startswith("fold_")]
    checkpoints = [m.name for m in model_set.members if not m.name.startswith("fold_")]
    case = counting.preprocess(image)
    oracle_logits = {}
    for configuration in sweep:
        members, views = _chosen(configuration.name, folds, checkpoints)
        pairs = [(m, v) for m in members for v in views]
        for pair in pairs:
            if pair not in oracle_logits:
                oracle_logits[pair] = counting.forward(case, *pair)
        brute = np.mean([softmax(oracle_logits[pair]) for pair in pairs], axis=0)
        assert np.allclose(maps[configuration.name], brute, atol=2e-6), configuration.name
        assert prediction.cost(configuration.name).forward_passes == len(pairs) == len(members) * len(views)

    for configuration in grid:
        cost = prediction.cost(configuration.name)
        assert cost.forward_passes == len(configuration.passes), configuration.name
        assert cost.device == "cpu"
        assert 0 < cost.seconds <= wall
    assert prediction.cost("DE+TTA+TS") == prediction.cost("DE+TTA"), "a +TS twin shares its pool and its cost"


def test_each_pass_is_timed_once_so_the_passes_add_up_to_no_more_than_the_wall_clock(
    model_set: ModelSet, image: sitk.Image
) -> None:
    predictor = MemberPredictor(model_set)
    grid = grid_for(model_set, predictor.mirror_axes(), sweep=True)
    began = time.perf_counter()
    prediction = predict_grid(predictor, image, grid, grid_mapping="per_pass")
    names = [name for name, _ in prediction]
    wall = time.perf_counter() - began
    everything = prediction.cost("DE+TTA")
    costs = {name: prediction.cost(name) for name in names}
    assert sum(cost.seconds for name, cost in costs.items() if name in ("DE+TTA", "CE+TTA")) <= 2 * wall
    assert everything.forward_passes == len([m for m in model_set.members if m.name.startswith("fold_")]) * 8
    assert costs["CE1"].forward_passes == 1 and costs["TTA2"].forward_passes == 2
