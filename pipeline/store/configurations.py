"""Finding a configuration in the store: by name within a model set, and a TS configuration's uncalibrated twin.

Configuration names repeat across model sets (every model set has a ``DE``), so a name alone never selects results:
:func:`resolve_configuration` picks the configuration of one model set — the one named (by its name or the start of
its identity) or, by default, the newest model set with a stored result of that configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError
from pipeline.store.schema import CaseResult, Configuration, ModelSet


def resolve_configuration(session: Session, name: str, model_set: str | None = None) -> Configuration:
    """The configuration ``name`` of ``model_set`` (its name or identity, else the start of its identity), or of the
    newest model set that stored a result of it.

    Raises NotFoundError (listing what is stored) when there is none, InputError when ``model_set`` names several.
    """
    query = (select(Configuration, ModelSet).join(ModelSet, ModelSet.id == Configuration.model_set_id)
             .where(Configuration.name == name,
                    select(CaseResult.id).where(CaseResult.configuration_id == Configuration.id).exists())
             .order_by(ModelSet.id.desc()))
    found = session.execute(query).all()
    if model_set:
        exact = [(c, m) for c, m in found if model_set in (m.name, m.identity)]
        found = exact or [(c, m) for c, m in found if m.identity.startswith(model_set)]
        if len({m.id for _, m in found}) > 1:
            raise InputError(f"model set {model_set!r} matches {len(found)} model sets: "
                             f"{', '.join(f'{m.name} ({m.identity})' for _, m in found)}; give its identity")
    if not found:
        stored = sorted(set(session.scalars(select(Configuration.name).join(
            CaseResult, CaseResult.configuration_id == Configuration.id))))
        where = f" of model set {model_set!r}" if model_set else ""
        raise NotFoundError(f"no stored result of configuration {name!r}{where} "
                            f"(stored: {', '.join(stored) or 'none'})")
    return found[0][0]


def twin_of(configuration: Configuration, siblings: Sequence[Configuration]) -> Configuration:
    """The uncalibrated configuration pooling the same members and views as ``configuration`` (itself when it is
    uncalibrated) among ``siblings`` (its model set's configurations): whose stored probabilities a TS configuration
    rescales."""
    if not configuration.temperature_scaling:
        return configuration
    for other in siblings:
        same = other.model_set_id == configuration.model_set_id and other.members == configuration.members
        if same and other.views == configuration.views and not other.temperature_scaling:
            return other
    raise NotFoundError(f"{configuration.name}: no uncalibrated twin in its model set")
