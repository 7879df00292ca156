"""The configuration grid: which (member, TTA view) forward passes each uncertainty configuration pools.

A view is a tuple of flipped axes of the configuration's patch (nnU-Net's mirror axes, after its transpose; which
data dimensions they are is :func:`pipeline.inference.engine.flip_dims`'s business); ``()`` is the identity. TTA uses
every combination of the axes the checkpoint allows (``inference_allowed_mirroring_axes``): 8 views for a 3-D model's
(0, 1, 2), 4 for a 2-D model's (0, 1). TS configurations pool the same passes as their uncalibrated twins and differ
only by the temperature applied afterwards.

The sweep (:func:`sweep_grid`, off by default; ``run --sweep``) adds sub-configurations that pool a subset of the
same passes, so they cost no forward pass of their own: TTA with the first k views of :func:`mirror_views`'s order
(identity; the single-axis flips (0,), (1,), (2,); the two-axis flips; all three axes), k in
:data:`SWEEP_VIEW_COUNTS`; DE with the first k fold members; CE with the last k checkpoints (the latest, best-trained
ones); and every member count with every view count. A sub-configuration that pools what a configuration of the
spec's grid pools (DE with every fold and 8 views is DE+TTA) is left out. Sweep configurations are uncalibrated and
store scalars and curves only (voxel maps only when asked: ``run --sweep-maps``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import InputError
from pipeline.inference.model_set import ModelSet

View = tuple[int, ...]
IDENTITY: View = ()
SWEEP_VIEW_COUNTS: tuple[int, ...] = (1, 2, 4, 8)


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
        sweep: a sub-configuration of the sweep (:func:`sweep_grid`): scalars and curves, maps only when asked.
    """

    name: str
    members: tuple[str, ...]
    views: tuple[View, ...]
    temperature_scaling: bool
    sweep: bool = False

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


def _sweep_name(group: str, members: int, views: int) -> str:
    stem = "" if group == "DE" and members == 1 else f"{group}{members}"
    tta = f"TTA{views}" if views > 1 else ""
    return "+".join(part for part in (stem, tta) if part) or "Base"


def sweep_grid(deep_ensemble: Sequence[str], checkpoint_ensemble: Sequence[str], views: Sequence[View],
               spec_grid: Sequence[Configuration], view_counts: Sequence[int] = SWEEP_VIEW_COUNTS
               ) -> tuple[Configuration, ...]:
    """The sweep's sub-configurations (see the module's description), named ``DE2+TTA4`` (the first 2 folds, the
    first 4 views), ``CE1`` (the last checkpoint, identity view), ``TTA2`` (Base with 2 views).

    Args:
        deep_ensemble: the fold members, in order (DE with k folds takes the first k).
        checkpoint_ensemble: the checkpoint members, oldest first (CE with k takes the last k).
        views: the TTA views in :func:`mirror_views`'s order (TTA with k views takes the first k).
        spec_grid: the spec's grid (:func:`default_grid`); what it already pools is left out.
        view_counts: the numbers of views swept (those above ``len(views)`` are left out).
    """
    taken = {c.pool_key for c in spec_grid}
    sweep = []
    for group, members in (("DE", tuple(deep_ensemble)), ("CE", tuple(checkpoint_ensemble))):
        for k in range(1, len(members) + 1):
            chosen = members[:k] if group == "DE" else members[len(members) - k:]
            for count in (n for n in view_counts if 1 <= n <= len(views)):
                configuration = Configuration(_sweep_name(group, k, count), chosen, tuple(views[:count]), False, True)
                if configuration.pool_key not in taken:
                    taken.add(configuration.pool_key)
                    sweep.append(configuration)
    return tuple(sweep)


def grid_for(model_set: ModelSet, mirror_axes: tuple[int, ...], sweep: bool = False) -> tuple[Configuration, ...]:
    """The spec's grid for a model set: Base = the first fold member, DE = the fold members, CE = the rest; with
    ``sweep``, followed by :func:`sweep_grid`'s sub-configurations.

    The TTA views are every combination of ``mirror_axes``: the checkpoint's
    (:meth:`pipeline.inference.engine.MemberPredictor.mirror_axes`), or () for no TTA.
    """
    folds = [m.name for m in model_set.members if m.name.startswith("fold_")]
    checkpoints = [m.name for m in model_set.members if not m.name.startswith("fold_")]
    if not folds:
        raise InputError(f"{model_set.folder}: the grid needs at least one fold member")
    views = mirror_views(mirror_axes)
    grid = default_grid(folds[0], folds, checkpoints, views)
    return grid + sweep_grid(folds, checkpoints, views, grid) if sweep else grid
