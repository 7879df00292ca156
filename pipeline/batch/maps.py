"""Where a result's voxel maps go in the artifact store, writing them, and the review regions found on them at the
run's budget (no inference import)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.batch.outcomes import Outcome
from pipeline.metrics.regions import find_regions
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactStore, safe_name
from pipeline.store.stored_regions import regions_row


def result_prefix(case: str, model_identity: str, configuration: str, fit_id: int | None) -> str:
    """The artifact folder of one result: ``<case>/<model>/<configuration>[@fit<id>]``."""
    suffix = f"@fit{fit_id}" if fit_id is not None else ""
    return f"{safe_name(case)}/{model_identity}/{safe_name(configuration)}{suffix}"


def map_artifacts(store: ArtifactStore, prefix: str, outcome: Outcome) -> list[dict[str, object]]:
    """Write the maps of one outcome; return their ``artifacts`` rows."""
    maps = outcome.result.maps
    assert maps is not None
    arrays = {"entropy": maps.entropy.astype(np.float32), "prediction": maps.prediction,
              "budget_mask": maps.budget_mask.astype(np.uint8)}
    if outcome.has_reference:
        arrays["error"] = maps.error.astype(np.uint8)
    rows = []
    for kind, array in arrays.items():
        path = store.write(f"{prefix}/{kind}.zarr", array)
        rows.append({"kind": kind, "path": path, "dtype": str(array.dtype), "shape": list(array.shape),
                     "budget": maps.budget if kind == "budget_mask" else None})
    return rows


def result_regions(outcome: Outcome, spacing_zyx: tuple[float, float, float],
                   settings: ReviewSettings | None = None) -> list[dict[str, Any]]:
    """The ``result_regions`` rows of one outcome: :func:`~pipeline.metrics.regions.find_regions` at each of the
    review settings' ``region_budgets`` (and at the run's budget) that the outcome's ranking reaches, on the maps as
    :func:`map_artifacts` stores them (float32 entropy, prediction), so the worklist reading the stored maps at
    those budgets finds the same regions."""
    maps = outcome.result.maps
    assert maps is not None
    settings = settings or ReviewSettings()
    entropy = maps.entropy.astype(np.float32, copy=False)
    rows = []
    for budget in sorted({*settings.region_budgets, maps.budget}):
        mask = maps.mask_at(budget)
        if mask is None:
            continue
        found = find_regions(mask, entropy, maps.prediction, spacing_zyx, settings)
        rows.append(regions_row(found.regions, budget, settings))
    return rows
