"""Where a result's voxel maps go in the artifact store, and writing them (no inference import)."""

from __future__ import annotations

import numpy as np

from pipeline.batch.outcomes import Outcome
from pipeline.store.artifacts import ArtifactStore, safe_name


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
