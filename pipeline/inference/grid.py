"""The configuration grid: which (member, TTA view) forward passes each uncertainty configuration pools.

A view is a tuple of flipped axes of the configuration's patch (nnU-Net's mirror axes, after its transpose; which
data dimensions they are is :func:`pipeline.inference.engine.flip_dims`'s business); ``()`` is the identity. TTA uses
every combination of the axes the checkpoint allows (``inference_allowed_mirroring_axes``): 8 views for a 3-D model's
(0, 1, 2), 4 for a 2-D model's (0, 1). TS configurations pool the same passes as their uncalibrated twins and differ
only by the temperature applied afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import InputError
from pipeline.inference.model_set import ModelSet

View = tuple[int, ...]
IDENTITY: View = ()


def mirror_views(axes: Sequence[int] = (0, 1, 2)) -> tuple[View, ...]:
    """Every subset of ``axes`` (identity first): 8 views for 3 axes, 4 for a 2-D model's 2."""
    return tuple(combo for k in range(len(axes) + 1) for combo in itertools.combinations(axes, k))


@dataclass(frozen=True)
class Configuration:
    """An uncertainty configuration: its members, whether it uses TTA, whether it applies TS.

    Attributes:
        name: e.g. ``DE+TTA+TS``.
        members: member names pooled.
        views: the views of each member pooled.
        temperature_scaling: whether a fitted temperature is applied after pooling.
    """

    name: str
    members: tuple[str, ...]
    views: tuple[View, ...]
    temperature_scaling: bool

    @property
    def passes(self) -> frozenset[tuple[str, View]]:
        """The (member, view) forward passes this configuration pools."""
        return frozenset(itertools.product(self.members, self.views))

    @property
    def pool_key(self) -> tuple[tuple[str, ...], tuple[View, ...]]:
        """Configurations with equal keys pool identical passes (a configuration and its +TS twin)."""
        return (self.members, self.views)


def default_grid(
    base: str, deep_ensemble: Sequence[str], checkpoint_ensemble: Sequence[str], views: Sequence[View]
) -> tuple[Configuration, ...]:
    """The spec's 12 configurations: Base, TTA, DE, DE+TTA, CE, CE+TTA, each without and with TS.

    Args:
        base: the single member of Base (fold 0, final checkpoint).
        deep_ensemble: the fold members of DE.
        checkpoint_ensemble: the checkpoint members of CE (one run); none leaves the CE rows out.
        views: the TTA views (identity first); with the identity alone the TTA rows are left out (a model
            trained without mirroring).
    """
    if not deep_ensemble:
        raise ValueError("the grid needs at least one deep-ensemble member")
    if IDENTITY not in views:
        raise ValueError("the TTA views must include the identity view ()")
    groups = [("Base", (base,)), ("DE", tuple(deep_ensemble))]
    if checkpoint_ensemble:
        groups.append(("CE", tuple(checkpoint_ensemble)))
    grid = []
    for group, members in groups:
        for tta in (False, True) if len(views) > 1 else (False,):
            chosen = tuple(views) if tta else (IDENTITY,)
            stem = ("TTA" if group == "Base" else f"{group}+TTA") if tta else group
            for scaled in (False, True):
                grid.append(Configuration(f"{stem}+TS" if scaled else stem, members, chosen, scaled))
    return tuple(grid)


def grid_for(model_set: ModelSet, mirror_axes: tuple[int, ...]) -> tuple[Configuration, ...]:
    """The spec's grid for a model set: Base = the first fold member, DE = the fold members, CE = the rest.

    The TTA views are every combination of ``mirror_axes``: the checkpoint's
    (:meth:`pipeline.inference.engine.MemberPredictor.mirror_axes`), or () for no TTA.
    """
    folds = [m.name for m in model_set.members if m.name.startswith("fold_")]
    checkpoints = [m.name for m in model_set.members if not m.name.startswith("fold_")]
    if not folds:
        raise InputError(f"{model_set.folder}: the grid needs at least one fold member")
    return default_grid(folds[0], folds, checkpoints, mirror_views(mirror_axes))
