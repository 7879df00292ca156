"""The trend levels table: the tolerance and action bounds an administrator set for a trend quantity
(:mod:`pipeline.store.trends`), for every configuration or one, for the whole case or one structure.

A row is keyed by (quantity, configuration, structure); ``''`` means "every configuration" / "the case, or every
structure". Bounds are NULL where open; :class:`pipeline.metrics.levels.Levels` checks them before they are stored
(:mod:`pipeline.review.levels`, audited as ``config.levels``). Migration ``0010_tolerances.py`` creates it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.metrics.levels import Levels
from pipeline.store.schema import Base, utcnow

EVERY = ""  # the configuration or structure of a row that applies to all of them


class TrendLevel(Base):
    """The levels of one quantity for one configuration (or every one) and one structure (or the case / every one)."""

    __tablename__ = "trend_levels"
    quantity: Mapped[str] = mapped_column(String(64), primary_key=True)
    configuration: Mapped[str] = mapped_column(String(64), primary_key=True)
    structure: Mapped[str] = mapped_column(String(100), primary_key=True)
    tolerance_low: Mapped[float | None] = mapped_column(Float)
    tolerance_high: Mapped[float | None] = mapped_column(Float)
    action_low: Mapped[float | None] = mapped_column(Float)
    action_high: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def levels(self) -> Levels:
        """The row's bounds."""
        return Levels(self.tolerance_low, self.tolerance_high, self.action_low, self.action_high)
