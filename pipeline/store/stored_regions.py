"""Review regions computed by the batch at a few standard budgets and stored beside the result, so the worklist's
first view at those budgets reads them instead of every case's maps.

One row per result and budget (``result_regions``): the budget (fraction of ROI voxels) the regions were found at —
each of the review settings' ``region_budgets`` and the run's budget, for every deployed result — the region settings
they were found with (connectivity, structure search radius, merging distance, minimum size) and the ranked regions
as JSON (one list per region, :data:`FIELDS` order). The regions come from
:func:`pipeline.metrics.regions.find_regions` on the maps the batch stores (float32 entropy, prediction, U_b), the
same call the worklist makes on those maps. A result or budget without a row (stores from before revision 0011 hold
the run's budget only) is computed from its maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pipeline.metrics.regions import Region
from pipeline.settings import ReviewSettings
from pipeline.store.schema import Base

FIELDS = ("rank", "class_index", "voxels", "volume_ml", "slices", "centroid", "mean_entropy", "max_entropy", "score")


class ResultRegions(Base):
    """The ranked review regions of one result at one budget."""

    __tablename__ = "result_regions"
    result_id: Mapped[int] = mapped_column(ForeignKey("case_results.id", ondelete="CASCADE"), primary_key=True)
    budget: Mapped[float] = mapped_column(Float, primary_key=True)
    connectivity: Mapped[int] = mapped_column(Integer)
    structure_search_mm: Mapped[float] = mapped_column(Float)
    merge_distance_mm: Mapped[float] = mapped_column(Float, default=0.0)
    min_region_ml: Mapped[float] = mapped_column(Float, default=0.0)
    regions: Mapped[list[list[Any]]] = mapped_column(JSON)


def regions_row(regions: Sequence[Region], budget: float, settings: ReviewSettings) -> dict[str, Any]:
    """The ``result_regions`` columns of ``regions`` found at ``budget`` with ``settings`` (the result id excluded)."""
    return {"budget": float(budget), "connectivity": settings.connectivity,
            "structure_search_mm": settings.structure_search_mm, "merge_distance_mm": settings.merge_distance_mm,
            "min_region_ml": settings.min_region_ml,
            "regions": [[getattr(r, name) if name not in ("slices", "centroid") else list(getattr(r, name))
                         for name in FIELDS] for r in regions]}


def _region(values: list[Any]) -> Region:
    fields = dict(zip(FIELDS, values, strict=True))
    return Region(rank=int(fields["rank"]), class_index=int(fields["class_index"]), voxels=int(fields["voxels"]),
                  volume_ml=float(fields["volume_ml"]), slices=(int(fields["slices"][0]), int(fields["slices"][1])),
                  centroid=(int(fields["centroid"][0]), int(fields["centroid"][1]), int(fields["centroid"][2])),
                  mean_entropy=float(fields["mean_entropy"]), max_entropy=float(fields["max_entropy"]),
                  score=float(fields["score"]))


def stored_regions(session: Session, result_ids: Iterable[int], fraction: float, settings: ReviewSettings
                   ) -> dict[int, tuple[Region, ...]]:
    """result id → its stored regions, for the results whose regions were stored at ``fraction`` with ``settings``'
    region rules (connectivity, search radius, merging distance, minimum size; the others are absent: compute them
    from the maps)."""
    ids = list(result_ids)
    if not ids:
        return {}
    rows = session.scalars(select(ResultRegions).where(
        ResultRegions.result_id.in_(ids), ResultRegions.budget == float(fraction),
        ResultRegions.connectivity == settings.connectivity,
        ResultRegions.structure_search_mm == settings.structure_search_mm,
        ResultRegions.merge_distance_mm == settings.merge_distance_mm,
        ResultRegions.min_region_ml == settings.min_region_ml))
    return {row.result_id: tuple(_region(values) for values in row.regions) for row in rows}
