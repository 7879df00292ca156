"""The ``per_member`` temperature mode's stored passes: what rebuilds a TS configuration's calibrated map without
inference, and the checks that keep a temperature under the mode it was fitted with.

Under ``per_member`` the +TS configuration's map is p_cal(T) = pool_k softmax(z_k / T) (``prob_mean``; ``logit_mean``:
softmax(mean_k z_k / T)) over the (member, view) passes it pools, each pass's logits z_k mapped to the CT grid first:
the ``per_pass`` grid mapping, which the mode requires (pooling on the network's grid would need the plans' resampling
inside every step of the fit). The batch of a ``per_member`` run stores each pass's CT-grid logits (float32, kind
``pass_logits``, the member and view in the map's attributes); the protocol fits T on them and evaluates p_cal(T)
rebuilt from them, which is what :func:`pipeline.inference.pooling.predict_grid` yields for the same
``member_temperature`` (the same pool, fed in the same order).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError
from pipeline.metrics.pooling import MemberPool
from pipeline.metrics.settings import MetricSettings
from pipeline.store.artifacts import ArtifactStore, safe_name
from pipeline.store.schema import Artifact, Configuration, TemperatureFit

PASS_KIND = "pass_logits"
Pass = tuple[str, tuple[int, ...]]


def check_mode(settings: MetricSettings, fits: Mapping[str, Sequence[TemperatureFit]]) -> None:
    """Refuse (InputError) ``per_member`` without the ``per_pass`` grid mapping, and deployed fits made under the
    other temperature mode: a per-member temperature is never applied after pooling, nor the other way round."""
    mode = settings.temperature_mode
    if mode == "per_member" and settings.grid_mapping != "per_pass":
        raise InputError("temperature_mode per_member needs grid_mapping per_pass in the metric settings: the "
                         "members are scaled on the CT grid, where the protocol can rebuild them")
    for name, found in fits.items():
        other = sorted({fit.temperature_mode for fit in found} - {mode})
        if other:
            raise InputError(f"the deployed temperatures of {name} were fitted with temperature_mode {other[0]}, "
                             f"these settings say {mode}: run the protocol on a cohort processed with these "
                             "settings, or use the fits' mode")


def pass_path(prefix: str, member: str, view: tuple[int, ...]) -> str:
    """Where a pass's logits go under a processing's ``prefix``."""
    flips = "".join(str(axis) for axis in view) or "none"
    return f"{prefix}/passes/{safe_name(member)}_flip{flips}.zarr"


class PassWriter:
    """Writes each pass's CT-grid logits (C, Z, Y, X) under a processing's ``prefix`` as inference yields it (the
    ``on_pass`` of :func:`pipeline.inference.pooling.predict_grid`); keeps the artifact rows and the seconds spent."""

    def __init__(self, store: ArtifactStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix
        self.rows: list[dict[str, object]] = []
        self.seconds = 0.0

    def __call__(self, member: str, view: tuple[int, ...], logits: NDArray[np.float32]) -> None:
        began = time.perf_counter()
        path = self.store.write(pass_path(self.prefix, member, view), logits.astype(np.float32, copy=False),
                                {"member": member, "view": list(view)})
        self.rows.append({"kind": PASS_KIND, "path": path, "dtype": "float32", "shape": list(logits.shape),
                          "budget": None, "configuration_id": None})
        self.seconds += time.perf_counter() - began


def stored_passes(session: Session, store: ArtifactStore, processing_id: int, case: str) -> dict[Pass, str]:
    """The stored passes of a processing: (member, view) -> path. NotFoundError when it stored none."""
    paths = session.scalars(select(Artifact.path).where(Artifact.processing_id == processing_id,
                                                        Artifact.kind == PASS_KIND)).all()
    if not paths:
        raise NotFoundError(f"{case}: no stored member passes; rerun the batch with temperature_mode per_member")
    found: dict[Pass, str] = {}
    for path in paths:
        attributes = store.attributes(path)
        view = attributes["view"]
        assert isinstance(view, list)
        found[(str(attributes["member"]), tuple(int(axis) for axis in view))] = path
    return found


def configuration_passes(configuration: Configuration, passes: Mapping[Pass, str], case: str) -> list[str]:
    """The paths of the passes ``configuration`` pools, in the predictor's order (member, then view)."""
    wanted = sorted(((index, tuple(int(a) for a in view)), (member, tuple(int(a) for a in view)))
                    for index, member in enumerate(configuration.members) for view in configuration.views)
    missing = [pair for _, pair in wanted if pair not in passes]
    if missing:
        raise NotFoundError(f"{case}: the stored passes lack {missing} of {configuration.name}; rerun the batch")
    return [passes[pair] for _, pair in wanted]


def member_logits(store: ArtifactStore, paths: Sequence[str], flat: NDArray[np.intp]) -> NDArray[np.float32]:
    """The passes' logits at the flat voxel indices ``flat``: (K, C, n) float32."""
    picked = []
    for path in paths:
        logits = store.read(path)
        picked.append(logits.reshape(logits.shape[0], -1)[:, flat])
    return np.stack(picked).astype(np.float32, copy=False)


def calibrated_map(store: ArtifactStore, paths: Sequence[str], settings: MetricSettings, temperature: float
                   ) -> NDArray[np.float32]:
    """p_cal(T) (C, Z, Y, X) float32: the passes pooled with ``settings.pooling`` at member temperature T."""
    pool = MemberPool(settings.pooling, temperature)
    for path in paths:
        pool.add(store.read(path).astype(np.float32, copy=False))
    return pool.probabilities()
