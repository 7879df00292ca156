"""The trends' tolerance and action levels as an administrator sets them: one audited transaction per change.

Setting levels (``config.levels``) stores a row of ``trend_levels`` (:mod:`pipeline.store.trend_schema`) for a
quantity of :data:`pipeline.store.trends.QUANTITIES`, every configuration or one, the case or one structure (per-
structure quantities only), replacing the row that was there; clearing them (``config.levels_clear``) deletes it.
The audit row holds the bounds before and after. Only the admin role (or the command line) may do either; anyone
else is refused and audited as ``denied``. Bounds are checked by :class:`pipeline.metrics.levels.Levels` (finite,
each low below its high, the action band outside the tolerance band) before anything is written.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError
from pipeline.metrics.levels import Levels
from pipeline.review import workflow
from pipeline.review.base import Principal, ServiceBase
from pipeline.review.workflow import Action, Actor
from pipeline.store.trend_schema import EVERY, TrendLevel
from pipeline.store.trends import quantity

SET, CLEAR = "config.levels", "config.levels_clear"
MAX_CONFIGURATION, MAX_STRUCTURE = 64, 100  # the columns' lengths


def level_key(name: str, configuration: str = EVERY, structure: str = EVERY) -> tuple[str, str, str]:
    """The checked key of a levels row (InputError naming what is wrong)."""
    try:
        item = quantity(name)
    except KeyError as error:
        raise InputError(f"unknown trend quantity {name[:64]!r}") from error
    if len(configuration) > MAX_CONFIGURATION or len(structure) > MAX_STRUCTURE:
        raise InputError(f"a configuration has at most {MAX_CONFIGURATION} characters and a structure at most "
                         f"{MAX_STRUCTURE}")
    if structure and not item.per_structure:
        raise InputError(f"{item.label} is one value per case: give no structure")
    return name, configuration, structure


def _object_id(name: str, configuration: str, structure: str) -> str:
    """The audit row's object id: ``quantity/configuration/structure``."""
    return f"{name}/{configuration}/{structure}"[:200]


def _bounds(row: TrendLevel | None) -> dict[str, Any] | None:
    return None if row is None else asdict(row.levels())


class LevelOperations(ServiceBase):
    """Set and clear trend levels (see the module's description)."""

    def set_levels(self, principal: Principal, name: str, levels: Levels | dict[str, float | None], *,
                   configuration: str = EVERY, structure: str = EVERY, ip: str | None = None) -> Levels:
        """Store ``levels`` (or the bounds that make them) for the key; the stored levels."""

        def body(session: Session, actor: Actor) -> Levels:
            workflow.require(actor.role, Action.SET_LEVELS, actor.username)
            key = level_key(name, configuration, structure)
            try:
                checked = levels if isinstance(levels, Levels) else Levels(**levels)
            except (TypeError, ValueError) as error:
                raise InputError(f"levels of {'/'.join(key)}: {error}") from error
            row = session.get(TrendLevel, key)
            before = _bounds(row)
            if row is None:
                row = TrendLevel(quantity=key[0], configuration=key[1], structure=key[2])
                session.add(row)
            for bound, value in asdict(checked).items():
                setattr(row, bound, None if value is None else float(value))
            row.updated_at = self._clock()
            self._audit(session, actor, SET, "ok", "trend_level", "/".join(key), before, asdict(checked), ip)
            return checked

        return self._run(principal, SET, "trend_level", _object_id(name, configuration, structure), ip, body)

    def clear_levels(self, principal: Principal, name: str, *, configuration: str = EVERY, structure: str = EVERY,
                     ip: str | None = None) -> None:
        """Delete the levels of the key (NotFoundError when none is stored)."""

        def body(session: Session, actor: Actor) -> None:
            workflow.require(actor.role, Action.SET_LEVELS, actor.username)
            key = level_key(name, configuration, structure)
            row = session.get(TrendLevel, key)
            if row is None:
                raise NotFoundError(f"no levels are stored for {'/'.join(key)}")
            before = _bounds(row)
            session.delete(row)
            self._audit(session, actor, CLEAR, "ok", "trend_level", "/".join(key), before, None, ip)

        return self._run(principal, CLEAR, "trend_level", _object_id(name, configuration, structure), ip, body)
